"""Submitted scripts through real workers: `manage.py runstudio_worker` (django-tasks-db's
db_worker plus liveness) subprocesses on the test database, the script's SDK calling the live
server. On SQLite the test database is a file (tests/conftest.py) that the workers open
through RUNSTUDIO_SQLITE_PATH; on PostgreSQL they get its DATABASE_URL."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runs import execution, selectors, services
from runs.models import Run, RunStatus, StatusEvent, Worker
from runs.sdk import (
    ActivityFailedException,
    Experiment,
    ScriptRunConfig,
    Workspace,
)
from runs.sdk import (
    Run as SdkRun,
)
from tests import processes
from tests.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

HEARTBEAT = 1  # seconds, in the workers and the scripts they start


class Workers(processes.Workers):
    def start(
        self,
        queue: str = "local",
        *,
        batch: bool = False,
        workspace: str | None = None,
        key: str | None = None,
    ) -> subprocess.Popen:
        """A worker for `local` (no workspace), or for the workspace's target `queue` with its
        worker key (passed as RUNSTUDIO_WORKER_KEY, as `runstudio worker` does)."""
        args = ["-w", workspace, "-c", queue] if workspace else ["--queue-name", queue]
        return super().start(*args, key=key, batch=batch)


@pytest.fixture
def workers(sdk_server, settings, tmp_path):
    settings.RUNSTUDIO_HEARTBEAT_INTERVAL = HEARTBEAT
    # The worker's files land where this test's storage is (tests/conftest.py).
    files_dir = Path(settings.STORAGES["default"]["OPTIONS"]["location"])
    log_dir = tmp_path / "worker-logs"
    log_dir.mkdir()
    pool = Workers(sdk_server.url, files_dir.parent, log_dir, heartbeat=HEARTBEAT)
    yield pool
    pool.stop()


@pytest.fixture
def source(tmp_path):
    """A source directory; `source.write(name, code)` adds a script to it."""
    folder = tmp_path / "src"
    folder.mkdir()

    class Source:
        path = folder

        def write(self, name: str, code: str) -> Path:
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(code))
            return target

    return Source()


@pytest.fixture
def exp(sdk_server):
    return Experiment(Workspace(sdk_server.workspace), "jobs")


def driver_log(run_id: str, cast) -> str:
    response = cast.reader.client.get(
        f"/api/v1/runs/{run_id}/files/logs/70_driver_log.txt", {"offset": 0}
    )
    return response.content.decode() if response.status_code == 200 else ""


def status_of(run_id: str) -> str:
    return Run.objects.values_list("status", flat=True).get(run_id=run_id)


def test_a_submitted_script_runs_on_a_worker_and_its_output_is_live(
    workers, source, exp, cast, capsys
):
    source.write(
        "train.py",
        """
        import argparse, time
        from runs.sdk import Run
        parser = argparse.ArgumentParser()
        parser.add_argument("--lr", type=float)
        args = parser.parse_args()
        run = Run.get_context()
        print(f"started {run.id} lr={args.lr}", flush=True)
        run.log("lr", args.lr)
        # Wait for the test to see this line while the run is Running.
        deadline = time.time() + 20
        while "release" not in run.get_tags() and time.time() < deadline:
            time.sleep(0.2)
        with open("outputs/model.txt", "w") as f:
            f.write("weights")
        print("done")
        """,
    )
    source.write("data/big.bin", "x" * 10_000)
    source.write(".runstudioignore", "data/\n")
    run = exp.submit(
        ScriptRunConfig(
            source_directory=source.path,
            script="train.py",
            arguments=["--lr", 0.01],
            compute_target="local",
        )
    )
    assert run.get_status() == "Queued"
    workers.start("local")

    log = wait_for(
        lambda: "started" in (text := driver_log(run.id, cast)) and text,
        timeout=15,
        what="the first line in the driver log",
    )
    assert f"started {run.id} lr=0.01" in log
    assert status_of(run.id) == "Running"  # live: the script is still waiting
    run.tag("release")

    details = run.wait_for_completion(show_output=True)
    shown = capsys.readouterr().out
    assert details["status"] == "Completed", workers.logs()
    assert f"RunId: {run.id}" in shown and "Execution Summary" in shown
    assert "started" in shown and "done" in shown
    assert run.get_metrics() == {"lr": [0.01]}
    names = set(run.get_file_names())
    assert {
        "snapshot/train.py",
        "snapshot/.runstudioignore",
        "outputs/model.txt",
        "logs/65_job_prep.txt",
        "logs/70_driver_log.txt",
        "logs/75_job_post.txt",
        "logs/process_info.json",
        "logs/process_status.json",
    } <= names
    assert not any(n.startswith("snapshot/data/") for n in names)  # ignored
    statuses = list(
        StatusEvent.objects.filter(run__run_id=run.id).values_list("to_status", flat=True)
    )
    assert statuses == ["Queued", "Preparing", "Running", "Finalizing", "Completed"]
    # The script's token was revoked when the run ended.
    token_names = Run.objects.get(run_id=run.id).submitter.api_tokens.filter(name=f"run {run.id}")
    assert token_names.count() == 1 and token_names.get().revoked_at is not None


def test_a_failing_script_ends_failed_with_its_stderr_tail(workers, source, sdk_server, cast):
    source.write(
        "fail.py",
        """
        import sys
        print("about to fail")
        print("ValueError: the learning rate is negative", file=sys.stderr)
        sys.exit(3)
        """,
    )
    cli = [sys.executable, "-m", "runs.sdk.cli"]
    submitted = subprocess.run(
        [*cli, "run", "submit-script", "-e", "jobs", "-c", "local", "-d", str(source.path)]
        + ["fail.py", "--", "--lr", "-1"],
        capture_output=True,
        text=True,
        env={**os.environ, **sdk_server.env},
        check=False,
    )
    assert submitted.returncode == 0, submitted.stderr
    run_id = json.loads(submitted.stdout)["run_id"]
    workers.start("local")
    monitored = subprocess.run(
        [*cli, "run", "monitor-logs", "-r", run_id],
        capture_output=True,
        text=True,
        env={**os.environ, **sdk_server.env},
        timeout=30,
        check=False,
    )
    assert monitored.returncode == 1
    assert "about to fail" in monitored.stdout and "Status: Failed" in monitored.stdout
    run = Run.objects.get(run_id=run_id)
    assert run.status == "Failed"
    assert run.error_code == "ScriptExitCode"
    assert "exited with code 3" in run.error_message
    assert "the learning rate is negative" in run.error_message

    sdk_run = SdkRun.get(Workspace(sdk_server.workspace), run_id)
    with pytest.raises(ActivityFailedException, match="learning rate is negative"):
        sdk_run.wait_for_completion()
    assert sdk_run.wait_for_completion(raise_on_error=False)["status"] == "Failed"


def test_a_sleeping_script_is_canceled_and_its_process_is_gone(workers, source, exp, cast):
    source.write(
        "sleep.py",
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL, after the grace, ends it
        print("sleeping", flush=True)
        time.sleep(120)
        """,
    )
    run = exp.submit(ScriptRunConfig(source_directory=source.path, script="sleep.py"))
    workers.start("local")
    wait_for(lambda: "sleeping" in driver_log(run.id, cast), timeout=15, what="the script to start")
    info = json.loads(
        cast.reader.client.get(f"/api/v1/runs/{run.id}/files/logs/process_info.json").getvalue()
    )
    os.kill(info["pid"], 0)  # alive

    run.cancel()
    assert status_of(run.id) == "CancelRequested"
    wait_for(lambda: status_of(run.id) == "Canceled", timeout=15, what="the cancel")
    with pytest.raises(ProcessLookupError):
        os.kill(info["pid"], 0)
    status = json.loads(
        cast.reader.client.get(f"/api/v1/runs/{run.id}/files/logs/process_status.json").getvalue()
    )
    assert status["status"] == "canceled" and status["signal"] == signal.SIGKILL
    assert "Run canceled" in driver_log(run.id, cast)


def test_a_run_canceled_while_queued_never_starts(workers, source, exp, cast):
    source.write("never.py", "print('should not run')\n")
    run = exp.submit(ScriptRunConfig(source_directory=source.path, script="never.py"))
    run.cancel()
    assert status_of(run.id) == "CancelRequested"
    worker = workers.start("local", batch=True)
    assert worker.wait(timeout=15) == 0
    assert status_of(run.id) == "Canceled"
    assert driver_log(run.id, cast) == ""


def test_a_killed_workers_run_fails_by_heartbeat(workers, source, exp, cast, settings):
    source.write("long.py", "import time\nprint('working', flush=True)\ntime.sleep(120)\n")
    run = exp.submit(ScriptRunConfig(source_directory=source.path, script="long.py"))
    worker = workers.start("local")
    wait_for(lambda: "working" in driver_log(run.id, cast), timeout=15, what="the script to start")
    pid = json.loads(
        cast.reader.client.get(f"/api/v1/runs/{run.id}/files/logs/process_info.json").getvalue()
    )["pid"]

    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=5)
    # The script dies with its worker (PR_SET_PDEATHSIG), and nobody heartbeats the run.
    wait_for(lambda: _gone(pid), timeout=15, what="the script to die with its worker")
    settings.RUNSTUDIO_HEARTBEAT_TIMEOUT = 60
    assert services.runs_reap_stale() == []  # heartbeated within the timeout: not yet
    settings.RUNSTUDIO_HEARTBEAT_TIMEOUT = 1
    reaped = wait_for(services.runs_reap_stale, timeout=5, what="the reaper")
    assert [r.run_id for r in reaped] == [run.id]
    stored = Run.objects.get(run_id=run.id)
    assert stored.status == "Failed" and stored.error_code == "HeartbeatTimeout"
    assert stored.error_message.startswith("No heartbeat since 20")
    assert "the process or its worker died" in stored.error_message
    dead = Worker.objects.get(pid=worker.pid)
    assert not selectors.worker_is_alive(dead)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_children_submitted_with_another_target_run_there(workers, source, exp, cast):
    created = cast.owner.client.post(
        "/api/v1/workspaces/lab/compute", {"name": "gpu-cluster", "capacity": 2}, format="json"
    )
    assert created.status_code == 201
    source.write(
        "parent.py",
        """
        from runs.sdk import Run, ScriptRunConfig
        run = Run.get_context()
        # By name: the script's token is scoped to its run, and the compute targets of the
        # workspace are outside that scope.
        target = "gpu-cluster"
        for fruit in ["Apple", "Bad"]:
            run.log("Status", f"Launching {fruit}")
            run.submit_child(ScriptRunConfig(source_directory=".", script="child.py",
                                             arguments=["--fruit", fruit], compute_target=target))
        for child in run.get_children():
            child.wait_for_completion(raise_on_error=False)
        print("children done")
        """,
    )
    source.write(
        "child.py",
        """
        import sys
        from runs.sdk import Run
        run = Run.get_context()
        fruit = sys.argv[2]
        print(f"child {fruit} of {run.parent.id}")
        run.log("fruit", fruit)
        sys.exit(1 if fruit == "Bad" else 0)
        """,
    )
    key = cast.owner.client.post("/api/v1/workspaces/lab/compute/gpu-cluster/worker-key").json()
    parent = exp.submit(ScriptRunConfig(source_directory=source.path, script="parent.py"))
    workers.start("local")
    workers.start("gpu-cluster", workspace="lab", key=key["worker_key"])
    details = parent.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Completed", workers.logs()
    children = Run.objects.filter(parent__run_id=parent.id).order_by("id")
    assert [c.compute_target for c in children] == ["gpu-cluster", "gpu-cluster"]
    assert [c.status for c in children] == ["Completed", "Failed"]
    for child in children:
        info = json.loads(
            cast.reader.client.get(
                f"/api/v1/runs/{child.run_id}/files/logs/process_info.json"
            ).getvalue()
        )
        worker = Worker.objects.get(worker_id=info["worker_id"])
        assert (worker.queue_name, worker.workspace) == (key["queue_name"], cast.workspace)
    assert "child Apple of " + parent.id in driver_log(children[0].run_id, cast)


def test_two_workers_on_one_queue_never_run_the_same_run_twice(workers, source, exp, cast):
    pool = cast.owner.client.post(
        "/api/v1/workspaces/lab/compute", {"name": "pool", "capacity": 10}, format="json"
    ).json()
    key = cast.owner.client.post("/api/v1/workspaces/lab/compute/pool/worker-key").json()
    source.write("job.py", "import os, time\nprint('ran in', os.getpid())\ntime.sleep(0.3)\n")
    runs = [
        exp.submit(
            ScriptRunConfig(source_directory=source.path, script="job.py", compute_target="pool")
        )
        for _ in range(6)
    ]
    first, second = (
        workers.start("pool", batch=True, workspace="lab", key=key["worker_key"]) for _ in range(2)
    )
    assert first.wait(timeout=40) == 0 and second.wait(timeout=40) == 0, workers.logs()
    for run in runs:
        assert status_of(run.id) == "Completed"
        assert driver_log(run.id, cast).count("ran in") == 1
        claims = StatusEvent.objects.filter(run__run_id=run.id, to_status="Preparing").count()
        assert claims == 1
    from django_tasks_db.models import DBTaskResult

    tasks = DBTaskResult.objects.filter(queue_name=pool["queue_name"])
    assert tasks.count() == 6 and all(len(t.worker_ids) == 1 for t in tasks)


def test_a_claimed_run_cannot_be_claimed_again(make_run):
    run = make_run(status=RunStatus.QUEUED, compute_target="local")
    claimed, outcome = execution.claim(run_pk=run.pk, queue_name="local")
    assert claimed is not None and claimed.status == "Preparing"
    assert execution.claim(run_pk=run.pk, queue_name="local") == (None, execution.SKIPPED)


def test_a_target_at_capacity_defers_the_next_run(make_run, cast):
    target = services.compute_target_create(workspace=cast.workspace, name="one", capacity=1)
    queue = selectors.target_queue_name(target)
    first = make_run(status=RunStatus.QUEUED, compute_target="one")
    second = make_run(status=RunStatus.QUEUED, compute_target="one")
    assert execution.claim(run_pk=first.pk, queue_name=queue)[1] == "claimed"
    assert execution.claim(run_pk=second.pk, queue_name=queue) == (None, execution.DEFERRED)
    second.refresh_from_db()
    assert second.status == "Queued"


def test_a_worker_stopped_inside_a_transaction_is_recorded_stopped():
    """SIGTERM ends db_worker by a SystemExit raised wherever its main thread is, possibly in
    its claim transaction; the worker's row must still be marked stopped for everyone else."""
    import threading

    from django.db import connection, transaction

    from runs.management.commands.runstudio_worker import _record_stop

    services.worker_register(worker_id="w-term", queue_name="local")
    atomic = transaction.atomic()
    atomic.__enter__()  # the claim transaction the signal interrupted, left open
    Worker.objects.filter(worker_id="w-term").update(runs_executed=1)
    try:
        _record_stop("w-term")
    finally:
        atomic.__exit__(SystemExit, SystemExit(0), None)

    seen = []

    def read() -> None:  # another process's view: a connection of its own
        seen.append(Worker.objects.get(worker_id="w-term").stopped_at)
        connection.close()

    reader = threading.Thread(target=read)
    reader.start()
    reader.join()
    assert seen[0] is not None
