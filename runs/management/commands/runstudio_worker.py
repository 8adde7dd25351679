"""`manage.py runstudio_worker -w <workspace> -c <target> [--key KEY]`: django-tasks-db's
`db_worker` for one workspace's compute target, plus liveness. What `runstudio worker` runs.

The worker checks the target's worker key (--key, else RUNSTUDIO_WORKER_KEY) before it takes
anything, derives the target's queue itself (selectors.target_queue_name) and records the
workspace on its `Worker` row; a wrong, missing or rotated key is a one-line error. Without
-w/-c it serves only the server's own queues: `--queue-name local` (every workspace's `local`
target) or the alerts queue, which `runstudio serve` starts.

It registers a `Worker` row, and a background thread stamps it every
RUNSTUDIO_HEARTBEAT_INTERVAL seconds and runs the reaper (services.runs_reap_stale) every
RUNSTUDIO_REAPER_INTERVAL seconds, so any live worker also keeps dead runs from staying
Running. The row is marked stopped when the worker exits. Every db_worker option works.
"""

import os
import secrets
import signal
import threading

from django.conf import settings
from django.core.management.base import CommandError
from django.db import close_old_connections, connection
from django_tasks_db.management.commands import db_worker

from runs import sandbox, selectors, services, serving
from runs.errors import ServiceError
from runs.models import ComputeTarget, Workspace


def worker_id_for(queue_name: str) -> str:
    hostname, pid = selectors.worker_identity()
    return f"{hostname[:40]}-{pid}-{secrets.token_hex(2)}"


class _Liveness(threading.Thread):
    def __init__(
        self, *, worker_id: str, queue_name: str, target: ComputeTarget | None = None
    ) -> None:
        super().__init__(name="runstudio-worker-liveness", daemon=True)
        self.worker_id, self.queue_name, self.target = worker_id, queue_name, target
        self.stop = threading.Event()

    def _key_revoked(self) -> bool:
        """An owner replaced the key this worker started with (or deleted the target): the
        worker asks itself to stop (SIGTERM: it finishes its current run first)."""
        if self.target is None or selectors.compute_target_key_current(target=self.target):
            return False
        print(
            f"The worker key of compute target {self.target.name!r} was replaced or the target "
            "deleted: stopping after the current run. Start again with the new key.",
            flush=True,
        )
        os.kill(os.getpid(), signal.SIGTERM)
        return True

    def run(self) -> None:
        beat = max(0.2, float(settings.RUNSTUDIO_HEARTBEAT_INTERVAL))
        reap_every = max(0.2, float(settings.RUNSTUDIO_REAPER_INTERVAL))
        since_reap = reap_every  # reap once at start: a restarted worker cleans up first
        while not self.stop.is_set():
            try:
                close_old_connections()
                services.worker_heartbeat(worker_id=self.worker_id, queue_name=self.queue_name)
                if self._key_revoked():
                    return
                if since_reap >= reap_every:
                    since_reap = 0.0
                    for run in services.runs_reap_stale():
                        print(f"reaper: {run.run_id} → {run.status}", flush=True)
            except Exception as e:  # the database may be briefly away; try again next beat
                print(f"worker liveness: {type(e).__name__}: {e}", flush=True)
            finally:
                connection.close()
            self.stop.wait(beat)
            since_reap += beat


class Command(db_worker.Command):
    help = "Run a django-tasks-db worker that also records its liveness and reaps dead runs."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.set_defaults(worker_id=None)  # db_worker's is random; ours says where it runs
        parser.add_argument("-w", "--workspace", help="the workspace whose target to serve")
        parser.add_argument("-c", "--compute-target", help="the compute target to serve")
        parser.add_argument(
            "--key", help="the target's worker key (default: $RUNSTUDIO_WORKER_KEY)"
        )

    def _queue(self, options) -> tuple[str, Workspace | None]:
        """The one queue this worker may take, and the workspace it serves (None: the server's
        own queues). Anything else is refused before the worker touches a task."""
        self.served: ComputeTarget | None = None
        name, workspace = options.pop("compute_target"), options.pop("workspace")
        key = options.pop("key") or os.environ.get("RUNSTUDIO_WORKER_KEY", "")
        if (name and name != selectors.LOCAL) or workspace:
            if not (name and workspace):
                raise CommandError(
                    "A worker serves one workspace's compute target: pass both -w WORKSPACE "
                    "and -c TARGET (and --key or RUNSTUDIO_WORKER_KEY)."
                )
            try:
                target = selectors.compute_target_for_worker(
                    workspace=workspace, name=name, key=key
                )
            except ServiceError as e:
                raise CommandError(e.message) from None
            self.served = target
            return selectors.target_queue_name(target), target.workspace
        queue_name = selectors.LOCAL if name else options["queue_name"]
        if queue_name not in (selectors.LOCAL, settings.RUNSTUDIO_ALERTS_QUEUE):
            raise CommandError(
                f"Queue {queue_name!r} is not one of the server's own queues ('local', "
                f"{settings.RUNSTUDIO_ALERTS_QUEUE!r}). To serve a compute target: "
                "runstudio worker -w WORKSPACE -c TARGET --key WORKER_KEY (an owner makes the "
                "key: runstudio compute worker-key -w WORKSPACE -c TARGET)."
            )
        return queue_name, None

    def _sandbox(self, queue_name: str) -> bool:
        """Says at start whether scripts run sandboxed (runs/sandbox.py); under
        RUNSTUDIO_SANDBOX=required a worker that cannot sandbox does not start."""
        if queue_name == settings.RUNSTUDIO_ALERTS_QUEUE:
            return False  # it sends notifications; it never runs a script
        print(sandbox.sandbox_banner(), flush=True)
        status = sandbox.sandbox_status()
        if not status.isolated and sandbox.sandbox_mode() == sandbox.REQUIRED:
            raise CommandError(
                f"RUNSTUDIO_SANDBOX=required, but {status.reason}. Install it and start the "
                "worker again."
            )
        return status.isolated

    def handle(self, *args, **options):
        queue_name, workspace = self._queue(options)
        options["queue_name"] = queue_name
        worker_id = options["worker_id"] = options["worker_id"] or worker_id_for(queue_name)
        isolated = self._sandbox(queue_name)
        if warning := serving.bucket_warning() or serving.storage_mismatch():
            print(warning, flush=True)
        if queue_name != settings.RUNSTUDIO_ALERTS_QUEUE:
            print(f"scripts call back {settings.RUNSTUDIO_SERVER_URL}", flush=True)
            if warning := serving.callback_warning():
                print(warning, flush=True)
        services.worker_register(
            worker_id=worker_id, queue_name=queue_name, workspace=workspace, isolated=isolated
        )
        liveness = _Liveness(worker_id=worker_id, queue_name=queue_name, target=self.served)
        liveness.start()
        try:
            return super().handle(*args, **options)
        finally:
            liveness.stop.set()
            liveness.join(timeout=5)
            _record_stop(worker_id)


def _record_stop(worker_id: str) -> None:
    """Marks the worker's row stopped, on a connection of its own. A SIGTERM ends db_worker by
    a SystemExit raised wherever the main thread is, possibly inside its claim transaction:
    this thread's connection may then sit in a block that never commits (SQLite: holding the
    database's lock), and an UPDATE on it would be rolled back when the process exits. Closing
    it releases the lock; a fresh thread has a fresh connection."""
    connection.close()
    failed: list[BaseException] = []

    def stop() -> None:
        try:
            services.worker_stop(worker_id=worker_id)
        except BaseException as e:  # raised again below, in the thread that exits
            failed.append(e)
        finally:
            connection.close()

    stopper = threading.Thread(target=stop, name="runstudio-worker-stop")
    stopper.start()
    stopper.join(timeout=30)
    if failed:
        raise failed[0]
