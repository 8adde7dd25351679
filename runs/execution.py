"""Executes one submitted run on this worker process.

Queued → Preparing (claim the run atomically, mint the script's token, unpack the snapshot into
a temporary working directory; `logs/65_job_prep.txt`) → Running (the script in its own process
group; its stdout and stderr appended to `logs/70_driver_log.txt` about every second;
`logs/process_info.json`, `logs/process_status.json`) → Finalizing (upload `./outputs`;
`logs/75_job_post.txt`) → Completed / Failed / Canceled.

The worker is a Django process: it writes statuses and files through the services, never over
HTTP. The script is not: it runs in the sandbox (runs/sandbox.py: bubblewrap, an allow-listed
environment, the snapshot and a scratch folder, never the server's files), and its SDK talks to
settings.RUNSTUDIO_SERVER_URL with a token scoped to the run (ApiToken.run: the run and its
descendants only), revoked when the run ends.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from io import BytesIO
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone

from runs import sandbox, selectors, snapshot, storage
from runs.child_processes import signal_on_parent_death
from runs.errors import Conflict, ServiceError
from runs.models import ApiToken, ComputeTarget, Run, RunStatus
from runs.services.accounts import token_create, token_revoke
from runs.services.compute import worker_heartbeat, worker_set_current_run
from runs.services.files import run_file_write, run_files_compact
from runs.services.runs import run_heartbeat, run_set_status

PREP_LOG = "logs/65_job_prep.txt"
DRIVER_LOG = "logs/70_driver_log.txt"
RELEASE_LOG = "logs/75_job_post.txt"
PROCESS_INFO = "logs/process_info.json"
PROCESS_STATUS = "logs/process_status.json"

LOG_FLUSH_SECONDS = 1.0  # the driver log is appended this often while the script runs
STATUS_POLL_SECONDS = 1.0  # how often the worker looks for a cancel request
STDERR_TAIL_BYTES = 4000  # the end of stderr that becomes a failed run's error message

COMPLETED, FAILED, CANCELED = "completed", "failed", "canceled"
SKIPPED, DEFERRED = "skipped", "deferred"
REFUSED = "refused"  # the task sat on a queue that is not the run's target's

# The run properties run_submit writes and the worker reads: the script's path in the snapshot
# and its arguments (a JSON list of strings).
SCRIPT_PROPERTY = "runstudio.script"
ARGUMENTS_PROPERTY = "runstudio.arguments"


def execute(*, run_pk: int, worker_id: str, queue_name: str) -> str:
    """Claims and executes the run; returns one of the outcome names above."""
    run, outcome = claim(run_pk=run_pk, queue_name=queue_name)
    if run is None:
        return outcome
    return _Execution(run, worker_id=worker_id, queue_name=queue_name).run()


def claim(*, run_pk: int, queue_name: str) -> tuple[Run | None, str]:
    """Queued → Preparing, atomically: of two workers holding the same run, only one sees it
    Queued (the row is locked, and on SQLite the whole write transaction is serialised).

    The target row is locked too, so capacity is counted by one claimer at a time. A task on a
    queue that is not the run's own target's (enqueued there by hand, say on another
    workspace's `gpu-a`) is refused without touching the run: a run executes only on a worker
    of its own workspace's target."""
    with transaction.atomic():
        run = Run.objects.filter(pk=run_pk).first()
        if run is None:
            return None, SKIPPED
        if run.compute_target == selectors.LOCAL:
            selectors.compute_target_ensure_local(workspace=run.workspace)
        target = (
            ComputeTarget.objects.select_for_update()
            .filter(workspace_id=run.workspace_id, name=run.compute_target)
            .first()
        )
        own_queue = selectors.target_queue_name(target) if target is not None else selectors.LOCAL
        if queue_name != own_queue:
            return None, REFUSED
        run = Run.objects.select_for_update().get(pk=run_pk)
        if run.status == RunStatus.CANCEL_REQUESTED and run.heartbeat_at is None:
            run_set_status(
                run=run, status=RunStatus.CANCELED, reason="canceled before a worker started it"
            )
            return None, CANCELED
        if run.status != RunStatus.QUEUED:
            return None, SKIPPED
        if target is None:
            run_set_status(
                run=run,
                status=RunStatus.FAILED,
                error_code="ComputeTargetNotFound",
                error_message=f"Compute target {run.compute_target!r} was deleted.",
            )
            return None, FAILED
        busy = (
            Run.objects.filter(workspace_id=run.workspace_id, compute_target=run.compute_target)
            .filter(status__in=selectors.EXECUTING_STATUSES)
            .count()
            + Run.objects.filter(
                workspace_id=run.workspace_id,
                compute_target=run.compute_target,
                status=RunStatus.CANCEL_REQUESTED,
                heartbeat_at__isnull=False,
            ).count()
        )
        if busy >= target.capacity:
            return None, DEFERRED
        run = run_set_status(run=run, status=RunStatus.PREPARING, reason="claimed")
        run_heartbeat(run=run)
    return run, "claimed"


class _Pipe(threading.Thread):
    """Reads one of the script's output pipes into a shared buffer as bytes arrive."""

    def __init__(self, stream, sink: "_Output", keep_tail: bool) -> None:
        super().__init__(daemon=True)
        self.stream, self.sink, self.keep_tail = stream, sink, keep_tail

    def run(self) -> None:
        fd = self.stream.fileno()
        while chunk := os.read(fd, 65536):
            self.sink.add(chunk, tail=self.keep_tail)
        self.stream.close()


class _Output:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: list[bytes] = []
        self.stderr_tail = b""

    def add(self, chunk: bytes, *, tail: bool) -> None:
        with self.lock:
            self.pending.append(chunk)
            if tail:
                self.stderr_tail = (self.stderr_tail + chunk)[-STDERR_TAIL_BYTES:]

    def take(self) -> bytes:
        with self.lock:
            data = b"".join(self.pending)
            self.pending.clear()
        return data


class _Execution:
    def __init__(self, run: Run, *, worker_id: str, queue_name: str) -> None:
        self.run_obj = run
        self.worker_id = worker_id
        self.queue_name = queue_name
        self.workdir: Path | None = None
        self.token: ApiToken | None = None
        self.proc: subprocess.Popen | None = None
        self.output = _Output()
        self.last_beat = time.monotonic()
        self.sandboxed = False  # the script runs in bubblewrap (runs/sandbox.py)

    # -- logging helpers --------------------------------------------------------------------

    def append(self, path: str, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        if data:
            run_file_write(run=self.run_obj, path=path, stream=BytesIO(data), append=True)

    def note(self, path: str, text: str) -> None:
        stamp = timezone.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.append(path, f"[{stamp}] {text}\n")

    def write_json(self, path: str, value: dict) -> None:
        data = json.dumps(value, indent=2, default=str).encode()
        run_file_write(run=self.run_obj, path=path, stream=BytesIO(data))

    def set_status(self, status: str, **kwargs) -> bool:
        """Moves the run on; False when it is already final (e.g. the script ended it itself)."""
        try:
            self.run_obj = run_set_status(run=self.run_obj, status=status, **kwargs)
        except Conflict:
            self.run_obj.refresh_from_db()
            return False
        return True

    def current_status(self) -> str:
        return Run.objects.filter(pk=self.run_obj.pk).values_list("status", flat=True).get()

    def beat(self, force: bool = False) -> None:
        if force or time.monotonic() - self.last_beat >= settings.RUNSTUDIO_HEARTBEAT_INTERVAL:
            self.last_beat = time.monotonic()
            run_heartbeat(run=self.run_obj)
            worker_heartbeat(worker_id=self.worker_id, queue_name=self.queue_name)

    # -- the phases ---------------------------------------------------------------------------

    def run(self) -> str:
        run = self.run_obj
        worker_set_current_run(worker_id=self.worker_id, queue_name=self.queue_name, run=run)
        try:
            return self._run()
        except BaseException as e:  # the worker itself failed, or was told to stop
            self._kill_group()
            message = (
                f"{type(e).__name__}: {e}"
                if isinstance(e, Exception)
                else ("The worker was stopped while the run was executing.")
            )
            try:
                self.note(RELEASE_LOG, f"Execution failed: {message}")
                self.set_status(
                    RunStatus.FAILED, error_code="ExecutionError", error_message=message
                )
            except Exception:  # noqa: S110 - the reaper fails the run if even this fails
                pass
            if not isinstance(e, Exception):
                raise
            return FAILED
        finally:
            self._release()
            try:
                worker_set_current_run(
                    worker_id=self.worker_id, queue_name=self.queue_name, run=None
                )
            except Exception:  # noqa: S110 - liveness bookkeeping must not hide the outcome
                pass

    def _run(self) -> str:
        run = self.run_obj
        self.note(PREP_LOG, f"Run {run.run_id} claimed by worker {self.worker_id}.")
        if run.submitter_id is None:
            self.set_status(
                RunStatus.FAILED,
                error_code="NoSubmitter",
                error_message="The user who submitted this run no longer exists.",
            )
            return FAILED
        refusal = sandbox.sandbox_refusal()
        if refusal:
            self.note(PREP_LOG, refusal)
            self.set_status(
                RunStatus.FAILED, error_code="SandboxUnavailable", error_message=refusal
            )
            return FAILED
        status = sandbox.sandbox_status()
        self.sandboxed = status.isolated
        self.workdir = Path(
            tempfile.mkdtemp(prefix="runstudio-run-", dir=settings.RUNSTUDIO_WORK_DIR)
        )
        count = snapshot.snapshot_unpack(run=run, destination=self.workdir)
        (self.workdir / "outputs").mkdir(exist_ok=True)  # uploaded to the run when it ends
        self.note(PREP_LOG, f"Unpacked {count} snapshot file(s) into {self.workdir}.")
        if self.sandboxed:
            sandbox.sandbox_prepare_workdir(workdir=self.workdir)
            self.note(PREP_LOG, f"Sandbox: {status.reason}; working directory {sandbox.WORKDIR}.")
        else:
            self.note(PREP_LOG, f"NOT ISOLATED: {status.reason}. The script runs unsandboxed.")
        self.token, key = token_create(user=run.submitter, name=f"run {run.run_id}"[:100], run=run)
        self.note(
            PREP_LOG,
            f"Minted a token for {run.submitter} scoped to this run and its children "
            "(revoked when the run ends).",
        )
        if self.current_status() == RunStatus.CANCEL_REQUESTED:
            self.note(PREP_LOG, "Cancel requested before the script started.")
            self.set_status(RunStatus.CANCELED, reason="canceled while preparing")
            return CANCELED
        script, arguments = self._command()
        if not (self.workdir / script).is_file():
            self.set_status(
                RunStatus.FAILED,
                error_code="ScriptNotFound",
                error_message=f"The script {script!r} is not in the snapshot.",
            )
            return FAILED
        if not self.set_status(RunStatus.RUNNING):
            return self._final_outcome()
        self.note(PREP_LOG, f"Starting: python {script} {' '.join(arguments)}".rstrip())
        code, canceled = self._execute(script, arguments, key)
        if canceled:
            self.append(DRIVER_LOG, "\nRun canceled: the script's process group was stopped.\n")
            self.set_status(RunStatus.CANCELED, reason="canceled while running")
            return CANCELED
        if not self.set_status(RunStatus.FINALIZING):
            return self._final_outcome()
        self._upload_outputs()
        if code == 0:
            self.set_status(RunStatus.COMPLETED)
        else:
            tail = self.output.stderr_tail.decode("utf-8", errors="replace").strip()
            sig = sandbox.exit_signal(code, sandboxed=self.sandboxed)
            how = f"was killed by signal {sig}" if sig else f"exited with code {code}"
            message = f"The script {how}." + (f"\n{tail}" if tail else "")
            self.set_status(RunStatus.FAILED, error_code="ScriptExitCode", error_message=message)
        return self._final_outcome()

    def _final_outcome(self) -> str:
        status = self.current_status()
        if status == RunStatus.CANCEL_REQUESTED:  # asked during Finalizing: honour it
            self.set_status(RunStatus.CANCELED, reason="canceled while finalizing")
            return CANCELED
        return {RunStatus.COMPLETED: COMPLETED, RunStatus.CANCELED: CANCELED}.get(status, FAILED)

    def _command(self) -> tuple[str, list[str]]:
        props = dict(self.run_obj.properties.values_list("key", "value"))
        script = props.get(SCRIPT_PROPERTY, "")
        arguments = json.loads(props.get(ARGUMENTS_PROPERTY) or "[]")
        return script, [str(a) for a in arguments]

    def _environment(self, key: str) -> dict[str, str]:
        """An allow-list (runs/sandbox.py): nothing of the worker's own environment — its
        database URL, keys, paths — reaches the script."""
        run = self.run_obj
        workdir = sandbox.WORKDIR if self.sandboxed else str(self.workdir)
        return sandbox.sandbox_environment(
            run_vars={
                "RUNSTUDIO_URL": settings.RUNSTUDIO_SERVER_URL,
                "RUNSTUDIO_TOKEN": key,
                "RUNSTUDIO_WORKSPACE": run.workspace.name,
                "RUNSTUDIO_RUN_ID": run.run_id,
                "RUNSTUDIO_EXPERIMENT": run.experiment.name,
                "RUNSTUDIO_HEARTBEAT_INTERVAL": str(settings.RUNSTUDIO_HEARTBEAT_INTERVAL),
                "RUNSTUDIO_HOME": f"{workdir}/.runstudio-home",
            },
            home=sandbox.SCRATCH if self.sandboxed else workdir,
            tmpdir=sandbox.SCRATCH if self.sandboxed else None,
        )

    def _execute(self, script: str, arguments: list[str], key: str) -> tuple[int, bool]:
        """Runs the script to its end or to a cancel; returns (exit code, canceled)."""
        command = [sys.executable, script, *arguments]
        env, argv, pass_fds, wrapped = self._environment(key), command, (), None
        if self.sandboxed:
            wrapped = sandbox.sandbox_command(command=command, workdir=self.workdir, env=env)
            argv, pass_fds = wrapped.argv, wrapped.pass_fds
        try:
            self.proc = subprocess.Popen(  # noqa: S603 - the command is the submitted script
                argv,
                cwd=self.workdir,
                env=env,
                pass_fds=pass_fds,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: a cancel stops all of it
                # The script is killed when the worker dies.
                preexec_fn=signal_on_parent_death(signal.SIGKILL),  # noqa: PLW1509 - prctl only
            )
        finally:
            if wrapped is not None:
                wrapped.close()
        started = timezone.now()
        info = {
            "pid": self.proc.pid,
            "pgid": self.proc.pid,
            "command": command,
            "cwd": sandbox.WORKDIR if self.sandboxed else str(self.workdir),
            "sandbox": "bubblewrap" if self.sandboxed else None,
            "hostname": selectors.worker_identity()[0],
            "worker_id": self.worker_id,
            "started_at": started,
        }
        self.write_json(PROCESS_INFO, info)
        self.write_json(PROCESS_STATUS, {"status": "running", "pid": self.proc.pid})
        pipes = [
            _Pipe(self.proc.stdout, self.output, keep_tail=False),
            _Pipe(self.proc.stderr, self.output, keep_tail=True),
        ]
        for pipe in pipes:
            pipe.start()
        canceled = False
        last_flush = last_poll = time.monotonic()
        while self.proc.poll() is None:
            time.sleep(0.05)
            now = time.monotonic()
            if now - last_flush >= LOG_FLUSH_SECONDS:
                last_flush = now
                self.append(DRIVER_LOG, self.output.take())
            if now - last_poll >= STATUS_POLL_SECONDS:
                last_poll = now
                close_old_connections()
                if self.current_status() == RunStatus.CANCEL_REQUESTED:
                    canceled = True
                    self._stop_group()
                    break
                self.beat()
        code = self.proc.wait()
        self._kill_group()  # whatever the script left behind in its group goes with it
        for pipe in pipes:
            pipe.join(timeout=5)
        self.append(DRIVER_LOG, self.output.take())
        self.write_json(
            PROCESS_STATUS,
            {
                "status": "canceled" if canceled else "exited",
                "pid": self.proc.pid,
                "exit_code": code,
                "signal": sandbox.exit_signal(code, sandboxed=self.sandboxed),
                "started_at": started,
                "ended_at": timezone.now(),
            },
        )
        return code, canceled

    def _stop_group(self) -> None:
        """SIGTERM the script's group, then SIGKILL after RUNSTUDIO_CANCEL_GRACE seconds."""
        assert self.proc is not None
        self.note(PREP_LOG, "Cancel requested: sending SIGTERM to the script's process group.")
        if not (self.sandboxed and sandbox.sandbox_signal(pid=self.proc.pid, sig=signal.SIGTERM)):
            self._signal_group(signal.SIGTERM)
        deadline = time.monotonic() + settings.RUNSTUDIO_CANCEL_GRACE
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.proc.poll() is None:
            self.note(PREP_LOG, "The script outlived the grace period: SIGKILL.")
        self._kill_group()

    def _signal_group(self, sig: int) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def _kill_group(self) -> None:
        self._signal_group(signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def _upload_outputs(self) -> None:
        assert self.workdir is not None
        outputs = self.workdir / "outputs"
        # The script made this tree: a symlink in it may point at the server's own files, so
        # only regular files reached through real folders are uploaded (rglob does not enter
        # symlinked folders; local_open_regular refuses a link anywhere on the way).
        real = outputs.is_dir() and not outputs.is_symlink()
        files = sorted(p for p in outputs.rglob("*") if p.is_file() and not p.is_symlink())
        files = files if real else []
        for path in files:
            name = "outputs/" + path.relative_to(outputs).as_posix()
            try:
                with storage.local_open_regular(root=str(self.workdir), path=name) as f:
                    run_file_write(run=self.run_obj, path=name, stream=f)
            except (OSError, ServiceError) as e:
                self.note(RELEASE_LOG, f"Could not upload {name}: {e}")
        self.note(RELEASE_LOG, f"Uploaded {len(files)} file(s) from ./outputs.")

    def _release(self) -> None:
        if self.token is not None:
            token_revoke(token=self.token)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        try:
            status = self.current_status()
            self.note(RELEASE_LOG, f"Released: token revoked, working directory removed; {status}.")
        except Exception:  # noqa: S110 - best effort; the database may be what failed
            pass
        try:  # on object storage, each live log's parts become one object now that it is done
            run_files_compact(run=self.run_obj)
        except Exception:  # noqa: S110 - the parts still read correctly; compaction only tidies
            pass
