"""Outages with real processes (issue 8, items 4, 5 and 7): a server subprocess on its own
SQLite file is killed and restarted; training scripts run as subprocesses; what they could not
send is spooled and sent by `runstudio sync` (or the next SDK start) exactly once, in order,
with the run's final status and real end time. A script killed with SIGKILL has its run
reaped; a script that was only stopped (SIGSTOP) gets its final status back."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from runs.sdk.client import Client
from tests.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PASSWORD = "spool-test-password-1"
EXIT_TIMEOUT = 2  # RUNSTUDIO_EXIT_TIMEOUT for the scripts: seconds of silence before spooling


def _time(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Server:
    """gunicorn on a data directory of its own; killed with SIGKILL, restarted on the same
    database and port."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("RUNSTUDIO_", "DATABASE_"))
        }
        self.env.update(
            RUNSTUDIO_DATA_DIR=str(data_dir),
            DJANGO_SETTINGS_MODULE="studio.settings",
            RUNSTUDIO_HEARTBEAT_INTERVAL="1",
            RUNSTUDIO_HEARTBEAT_TIMEOUT="3",
            RUNSTUDIO_REAPER_INTERVAL="0.5",
        )

    def django(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [PY, "-m", "django", *args], env=self.env, capture_output=True, text=True, **kwargs
        )

    def start(self) -> None:
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 (closed with the process)
        self.process = subprocess.Popen(
            [PY, "-m", "gunicorn", "studio.wsgi:application", "--bind", f"127.0.0.1:{self.port}"]
            + ["--workers", "1", "--threads", "4", "--worker-class", "gthread"]
            + ["--no-control-socket"],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=log,
            start_new_session=True,  # its worker dies with it when the group is killed
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.url}/api/v1/", timeout=10)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise AssertionError((self.data_dir / "server.log").read_text()[-3000:])

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A migrated database, user alice made with `runstudio user create`, signed in with
    `runstudio login`, workspace "lab", and a project folder attached to it."""
    base = tmp_path_factory.mktemp("spool")
    server = Server(base / "data")
    server.data_dir.mkdir()
    done = server.django("migrate", "--noinput")
    assert done.returncode == 0, done.stderr
    home, project = base / "home", base / "project"
    project.mkdir()
    env = {**server.env, "RUNSTUDIO_HOME": str(home), "RUNSTUDIO_PASSWORD": PASSWORD}
    env["RUNSTUDIO_EXIT_TIMEOUT"] = str(EXIT_TIMEOUT)

    def cli(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [PY, "-m", "runs.sdk.cli", *args],
            env=env,
            cwd=project,  # not the repository: the CLI works from any folder
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )

    made = cli("user", "create", "--username", "alice", "--password-stdin", input=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["username"] == "alice"
    server.start()
    for step in (
        ("login", "--url", server.url, "--username", "alice"),
        ("workspace", "create", "lab"),
        ("folder", "attach", "-w", "lab"),
    ):
        done = cli(*step)
        assert done.returncode == 0, done.stderr
    token = json.loads((home / "credentials.json").read_text())["tokens"][server.url]
    yield server, cli, env, project, Client(server.url, token)
    server.kill()


def _script(project: Path, env: dict, body: str, **kwargs) -> subprocess.Popen:
    path = project / f"train_{time.monotonic_ns()}.py"
    path.write_text(textwrap.dedent(body))
    return subprocess.Popen(
        [PY, str(path)],
        env=env,
        cwd=project,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _history(client: Client, run_id: str, name: str) -> tuple[list, list]:
    steps, values, after = [], [], -1
    while True:
        page = client.get(
            f"/runs/{run_id}/metrics/history",
            params={"name": name, "after_seq": after, "limit": 100_000},
        )
        steps += page["points"]["step"]
        values += page["points"]["value"]
        if page["next_after_seq"] is None:
            return steps, values
        after = page["next_after_seq"]


OUTAGE_SCRIPT = """
    import sys
    from runs.sdk import Experiment, Workspace

    run = Experiment(Workspace.from_config(), "outage").start_logging()
    for i in range(3000):
        run.log("loss", float(i), step=i)
    run.flush()
    print(run.id, flush=True)
    sys.stdin.readline()  # the test kills the server, then lets the script end
    for i in range(3000, 50000):
        run.log("loss", float(i), step=i)
        run.log("acc", i / 50000)
    run.tag("phase", "after the outage")
    run.add_properties({"seed": "7"})
    with open("note.txt", "w") as f:
        f.write("written while the server was down")
    run.upload_file("outputs/note.txt", "note.txt")
    sys.exit(3)
"""


def test_a_script_outliving_the_server_spools_everything_and_sync_sends_it_once(setup):
    server, cli, env, project, client = setup
    script = _script(project, env, OUTAGE_SCRIPT)
    run_id = script.stdout.readline().strip()
    assert run_id, script.stderr.read()

    server.kill()
    released = time.time()
    script.stdin.write("\n")
    script.stdin.flush()
    out, err = script.communicate(timeout=60)
    ended = time.time()

    assert script.returncode == 3  # the script's own exit status
    assert ended - released < EXIT_TIMEOUT + 10  # bounded, not minutes
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert 2 <= len(lines) <= 3, err
    assert "cannot reach the Runstudio server" in lines[0] and "retrying" in lines[0]
    assert "runstudio sync" in lines[-1] and "saved 94000 metric points" in lines[-1]
    spool = project / ".runstudio" / "spool"
    [entry] = [p for p in spool.iterdir() if not p.name.startswith(".")]
    backup = spool.parent / "backup"
    shutil.copytree(entry, backup)

    time.sleep(2)  # the run ended before the server came back: its end time must say so
    server.start()
    # As `runstudio serve` does, a worker starts with the server and reaps at once: the run has
    # been silent longer than the heartbeat timeout, so it is presumed dead before sync runs.
    worker = _worker(server)
    try:
        _wait_for(lambda: client.get(f"/runs/{run_id}")["status"] == "Failed")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    synced_at = time.time()
    done = cli("sync")
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)
    assert result["run_id"] == run_id and result["sent"] and result["points_sent"] == 94000
    assert list(spool.iterdir()) == []  # sent entries go, and no staging is left behind

    def check() -> None:
        steps, values = _history(client, run_id, "loss")
        assert steps == list(range(50000)) and values == [float(i) for i in range(50000)]
        assert _history(client, run_id, "acc")[1] == [i / 50000 for i in range(3000, 50000)]
        details = client.get(f"/runs/{run_id}")
        assert details["status"] == "Completed" and details["error"] is None
        assert released - 1 < _time(details["ended_at"]) < min(ended, synced_at) + 0.5
        assert details["tags"] == {"phase": "after the outage"}
        assert details["properties"] == {"seed": "7"}
        note = client.request("GET", f"/runs/{run_id}/files/outputs/note.txt")
        assert note.content == b"written while the server was down"

    check()
    again = cli("sync")  # nothing left to send
    assert again.returncode == 0 and json.loads(again.stdout) == []
    shutil.copytree(backup, entry)  # the same entry sent a second time, from the start
    resent = cli("sync")
    assert resent.returncode == 0, resent.stderr
    check()  # still every point once, the same status and end time


OFFLINE_SCRIPT = """
    from runs.sdk import Experiment, Workspace

    with Experiment(Workspace.from_config(), "offline").start_logging() as run:
        print(run.id, flush=True)
        for i in range(1000):
            run.log("loss", 1.0 / (i + 1), step=i)
        run.tag("where", "train")
"""


def test_a_script_started_without_a_server_runs_offline_and_the_next_start_sends_it(setup):
    server, cli, env, project, client = setup
    server.kill()
    started = time.time()
    script = _script(project, env, OFFLINE_SCRIPT)
    out, err = script.communicate(timeout=60)
    assert script.returncode == 0, err
    run_id = out.strip()
    assert run_id.startswith("lab~offline_")  # chosen by the SDK, in the server's form
    lines = err.strip().splitlines()
    assert "Traceback" not in err and 2 <= len(lines) <= 3, err
    assert f"run {run_id} starts offline" in lines[0]
    assert "runstudio sync" in lines[-1]

    server.start()
    # The next SDK start that reaches the server sends the spool in the background.
    later = _script(
        project,
        {**env, "RUNSTUDIO_EXIT_TIMEOUT": "60"},  # the exit hook lets the sending finish
        """
        from runs.sdk import Experiment, Workspace
        with Experiment(Workspace.from_config(), "offline").start_logging() as run:
            run.log("loss", 0.0)
        """,
    )
    _, later_err = later.communicate(timeout=60)
    assert later.returncode == 0, later_err
    assert "sent 1 spooled run(s)" in later_err

    details = client.get(f"/runs/{run_id}")
    assert details["status"] == "Completed" and details["experiment"] == "offline"
    assert started - 1 < _time(details["started_at"]) < _time(details["ended_at"]) < time.time()
    assert details["tags"] == {"where": "train"}
    steps, values = _history(client, run_id, "loss")
    assert steps == list(range(1000)) and values == [1.0 / (i + 1) for i in range(1000)]


def test_a_server_down_at_the_start_of_a_cli_command_is_one_line_saying_what_to_do(setup):
    server, cli, env, project, client = setup
    server.kill()
    done = cli("run", "list")
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert "cannot reach the Runstudio server" in line and "connection refused" in line
    assert "runstudio serve" in line
    server.start()


LIVE_SCRIPT = """
    import time
    from runs.sdk import Experiment, Workspace

    run = Experiment(Workspace.from_config(), "liveness").start_logging()
    print(run.id, flush=True)
    i = 0
    while True:
        run.log("step", i)
        i += 1
        if input() == "end":
            break
"""


def _worker(server: Server) -> subprocess.Popen:
    """`runstudio worker`'s process: its liveness thread runs the reaper."""
    return subprocess.Popen(
        [PY, "-m", "django", "runstudio_worker", "--queue-name", "local", "--no-reload"]
        + ["--interval", "0.5", "--no-startup-delay"],
        env=server.env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_an_interactive_run_killed_with_sigkill_is_reaped_naming_its_last_heartbeat(setup):
    server, cli, env, project, client = setup
    script = _script(project, {**env, "RUNSTUDIO_HEARTBEAT_INTERVAL": "1"}, LIVE_SCRIPT)
    run_id = script.stdout.readline().strip()
    script.kill()  # SIGKILL: no exit hook runs
    script.wait()
    worker = _worker(server)
    try:
        details = _wait_for(
            lambda: (d := client.get(f"/runs/{run_id}"))["status"] != "Running" and d
        )
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    assert details["status"] == "Failed"
    assert details["error"]["code"] == "HeartbeatTimeout"
    assert details["error"]["message"].startswith("No heartbeat since ")


def test_a_run_that_was_only_slow_is_told_once_and_its_final_status_replaces_the_failure(setup):
    server, cli, env, project, client = setup
    script = _script(project, {**env, "RUNSTUDIO_HEARTBEAT_INTERVAL": "1"}, LIVE_SCRIPT)
    run_id = script.stdout.readline().strip()
    script.stdin.write("go\n")
    script.stdin.flush()
    time.sleep(1.5)
    script.send_signal(signal.SIGSTOP)  # a process that stalls: no heartbeats for a while
    worker = _worker(server)
    try:
        _wait_for(lambda: client.get(f"/runs/{run_id}")["status"] == "Failed")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    script.send_signal(signal.SIGCONT)
    time.sleep(2.5)  # its next heartbeats get a 409
    out, err = script.communicate("go\ngo\nend\n", timeout=60)
    assert script.returncode == 0, err
    warnings = [line for line in err.splitlines() if "stopped taking heartbeats" in line]
    assert len(warnings) == 1, err  # said once, not at every heartbeat
    assert "Failed" in warnings[0] and "No heartbeat since" in warnings[0]
    details = client.get(f"/runs/{run_id}")
    assert details["status"] == "Completed" and details["error"] is None
    assert _history(client, run_id, "step")[1] == [0.0, 1.0, 2.0, 3.0]
