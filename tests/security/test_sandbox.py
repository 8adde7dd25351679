"""Submitted code is sandboxed (issue 7, item 1).

The attack this stops: a script submitted to `local` read `/proc/<parent>/environ`, found the
data directory, opened `db.sqlite3` and printed other workspaces' runs and the secret key.
Here real `runstudio_worker` processes run real scripts in real bubblewrap against a live
server; each script tries the attack and prints what it got, and the tests read its driver
log. The run-scoped token is tried both from inside a script and directly through the API.
"""

import io
import json
import secrets
import subprocess
import zipfile
from io import BytesIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection
from rest_framework.test import APIClient

from runs import sandbox, services, storage
from runs.models import ApiToken, Run, Worker
from runs.models import Workspace as WorkspaceModel
from runs.sdk import Experiment, Workspace
from tests import processes
from tests.processes import ROOT, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CANARY_NAME = "SANDBOX_TEST_CANARY"


class Workers(processes.Workers):
    """`runstudio_worker` processes for `local`, with a canary in their environment."""

    def __init__(self, server_url: str, data_dir: Path, log_dir: Path) -> None:
        super().__init__(server_url, data_dir, log_dir)  # its secret_key file is created here
        self.canary = "canary-" + secrets.token_hex(8)

    def env(self, key: str | None = None, **extra: str) -> dict[str, str]:
        return super().env(key, **{CANARY_NAME: self.canary, **extra})

    def start(self, *, batch: bool = False, **extra: str) -> subprocess.Popen:
        return super().start("--queue-name", "local", batch=batch, **extra)


@pytest.fixture
def workers(sdk_server, tmp_path):
    status = sandbox.sandbox_status()
    assert status.isolated, f"these tests need a working bubblewrap: {status.reason}"
    log_dir = tmp_path / "worker-logs"
    log_dir.mkdir()
    pool = Workers(sdk_server.url, tmp_path, log_dir)
    yield pool
    pool.stop()


@pytest.fixture
def exp(sdk_server):
    return Experiment(Workspace(sdk_server.workspace), "jobs")


def driver_log(run_id: str, cast) -> str:
    response = cast.owner.client.get(
        f"/api/v1/runs/{run_id}/files/logs/70_driver_log.txt", {"offset": 0}
    )
    return response.content.decode() if response.status_code == 200 else ""


def finished(run_id: str) -> Run | None:
    run = Run.objects.get(run_id=run_id)
    return run if run.is_terminal else None


def submit_zip(cast, files: dict[str, str], script: str, arguments: list[str] = ()) -> str:
    """Submits a snapshot zip of `files` as the contributor; returns the run id."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    archive.seek(0)
    archive.name = "snapshot.zip"
    response = cast.contributor.client.post(
        "/api/v1/workspaces/lab/experiments/jobs/submit",
        {
            "config": json.dumps(
                {"script": script, "arguments": list(arguments), "compute_target": "local"}
            ),
            "snapshot": archive,
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    return response.json()["run_id"]


ATTACK = r"""
import json, os, socket, sys
targets = json.loads(sys.argv[1])

def probe(name, attempt):
    try:
        value = attempt()
    except BaseException as e:
        reason = " ".join(str(e).split())[:120]
        print(f"PROBE {name}: blocked ({type(e).__name__}: {reason})", flush=True)
    else:
        print(f"PROBE {name}: LEAKED {value!r}"[:3000], flush=True)

def read(path, size=4096):
    with open(path, "rb") as f:
        return f.read(size)

def read_db(path):
    data = read(path)
    if not data.startswith(b"SQLite format 3"):
        raise ValueError("not the database")
    return data[:16]

def scan_proc():
    # Any process's environment that is not this script's own, or the worker's command.
    own = {f"{k}={v}".encode() for k, v in os.environ.items()}
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            environ = read(f"/proc/{pid}/environ", 1 << 20)
            found += [v for v in environ.split(b"\0") if v and v not in own]
        except OSError:
            pass
        try:
            if b"runstudio_worker" in read(f"/proc/{pid}/cmdline", 1 << 20):
                found.append(b"the worker's command line")
        except OSError:
            pass
    if not found:
        raise LookupError("no other process's environment or the worker's is visible")
    return found

def db_server():
    import psycopg
    return psycopg.connect(host=targets["db_host"], port=targets["db_port"],
                           user=targets["db_user"], dbname=targets["db_name"], connect_timeout=5)

def own_symlink():
    os.symlink(targets["db"], "db-link")
    return read_db("db-link")

if targets["db_host"]:
    probe("database-server", db_server)
else:
    probe("database-file", lambda: read_db(targets["db"]))
    probe("database-folder", lambda: os.listdir(os.path.dirname(targets["db"])))
probe("secret-key-file", lambda: read(targets["secret_key_file"]))
probe("server-secret-key-file", lambda: read(targets["server_secret_key_file"]))
probe("data-dir", lambda: os.listdir(targets["data_dir"]))
probe("other-run-file", lambda: read(targets["other_run_file"]))
probe("run-files-folder", lambda: os.listdir(targets["files_dir"]))
probe("settings-module", lambda: read(targets["settings_file"]))
probe("parent-environ", lambda: read(f"/proc/{os.getppid()}/environ"))
probe("init-environ", lambda: read("/proc/1/environ"))
probe("worker-environ", lambda: read(f"/proc/{targets['worker_pid']}/environ"))
probe("any-process-environ", scan_proc)
probe("canary-variable", lambda: os.environ[targets["canary_name"]])
probe("database-variable", lambda: os.environ.get("RUNSTUDIO_SQLITE_PATH")
      or os.environ["DATABASE_URL"])
probe("settings-variable", lambda: os.environ["DJANGO_SETTINGS_MODULE"])
probe("own-symlink", own_symlink)
print("uid", os.getuid(), "cwd", os.getcwd(), flush=True)
with open("outputs/written.txt", "w") as f:
    f.write("the working directory is writable")
# Links the root worker would follow when it uploads ./outputs after the script.
os.symlink(targets["db"], "outputs/db-link")
os.symlink(targets["other_run_file"], "outputs/other-link")
os.symlink(os.path.dirname(targets["other_run_file"]), "outputs/other-folder")
"""


def test_a_submitted_script_reads_nothing_of_the_server(workers, cast, make_run):
    other = make_run(experiment="private")
    services.run_file_write(
        run=other, path="outputs/secret.txt", stream=BytesIO(b"another run's secret")
    )
    other_file = default_storage.path(storage.storage_name(other, "outputs/secret.txt"))
    assert Path(other_file).read_bytes() == b"another run's secret"
    db = connection.settings_dict
    worker = workers.start()
    targets = {
        "db": str(db["NAME"]),
        "db_host": db["HOST"] if connection.vendor != "sqlite" else "",
        "db_port": str(db["PORT"] or ""),
        "db_user": db["USER"] or "",
        "db_name": db["NAME"],
        "secret_key_file": str(workers.data_dir / "secret_key"),
        "server_secret_key_file": str(Path(settings.DATA_DIR) / "secret_key"),
        "data_dir": str(workers.data_dir),
        "other_run_file": other_file,
        "files_dir": str(Path(other_file).parents[2]),
        "settings_file": str(ROOT / "studio" / "settings.py"),
        "worker_pid": worker.pid,
        "canary_name": CANARY_NAME,
    }
    # A symlink in the snapshot itself is refused at submission (tests/security/
    # test_files_integrity.py); the script plants its own in its working directory.
    run_id = submit_zip(
        cast,
        {"attack.py": ATTACK},
        script="attack.py",
        arguments=[json.dumps(targets)],
    )
    run = wait_for(lambda: finished(run_id), what="the attack run", timeout=60)

    log = driver_log(run_id, cast)
    assert run.status == "Completed", (run.error_message, log, workers.logs())
    probes = [line for line in log.splitlines() if line.startswith("PROBE ")]
    names = {line.split(":")[0].removeprefix("PROBE ") for line in probes}
    assert len(names) == (16 if connection.vendor == "sqlite" else 15), log
    leaked = [line for line in probes if ": blocked (" not in line]
    assert leaked == [], "\n".join(leaked)
    if connection.vendor != "sqlite":  # reachable over the shared network, but not without it
        assert "password" in next(p for p in probes if "database-server" in p)
    secret_key = (workers.data_dir / "secret_key").read_text().strip()
    for secret in (secret_key, settings.SECRET_KEY, workers.canary, "another run's secret"):
        assert secret not in log
    uid, _ = sandbox.run_as()
    assert f"uid {uid} cwd {sandbox.WORKDIR}" in log
    assert cast.owner.client.get(f"/api/v1/runs/{run_id}/files/outputs/written.txt").getvalue() == (
        b"the working directory is writable"
    )
    uploaded = {
        f["path"] for f in cast.owner.client.get(f"/api/v1/runs/{run_id}/files").json()["files"]
    }
    assert {p for p in uploaded if p.startswith("outputs/")} == {"outputs/written.txt"}
    assert Worker.objects.get(pid=worker.pid).isolated is True
    assert "sandbox: on" in workers.logs()


# --- the run-scoped token, through the API --------------------------------------------------


def scoped_client(run, user) -> APIClient:
    _, key = services.token_create(user=user, name=f"run {run.run_id}", run=run)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_run_scoped_token_logs_to_its_run_and_creates_and_uses_children(cast, make_run):
    run = make_run()
    client = scoped_client(run, cast.contributor.user)
    base = f"/api/v1/runs/{run.run_id}"

    assert client.get(base).status_code == 200
    logged = client.post(
        f"{base}/metrics/batch", {"metrics": [{"name": "loss", "values": [0.5]}]}, format="json"
    )
    assert logged.status_code in (200, 201), logged.content
    assert client.patch(f"{base}/tags", {"set": {"k": "v"}}, format="json").status_code == 200
    created = client.post(f"{base}/children", {"count": 1}, format="json")
    assert created.status_code == 201, created.content
    child = created.json()["results"][0]["run_id"]
    assert client.get(f"/api/v1/runs/{child}").status_code == 200
    grandchild = client.post(f"/api/v1/runs/{child}/children", {"count": 1}, format="json")
    assert grandchild.status_code == 201
    grandchild_id = grandchild.json()["results"][0]["run_id"]
    tagged = client.patch(
        f"/api/v1/runs/{grandchild_id}/tags", {"set": {"deep": "1"}}, format="json"
    )
    assert tagged.status_code == 200
    uploaded = client.put(
        f"/api/v1/runs/{child}/files/outputs/a.txt", b"abc", content_type="text/plain"
    )
    assert uploaded.status_code in (200, 201), uploaded.content
    listed = client.get(f"{base}/children", {"recursive": "1"}).json()["results"]
    assert {c["run_id"] for c in listed} == {child, grandchild_id}


def test_a_run_scoped_token_reads_its_parent_but_cannot_change_it(cast, make_run):
    parent = make_run()
    run = make_run(parent=parent)
    client = scoped_client(run, cast.contributor.user)

    assert client.get(f"/api/v1/runs/{parent.run_id}").status_code == 200
    changed = client.patch(f"/api/v1/runs/{parent.run_id}/tags", {"set": {"x": "1"}}, format="json")
    assert changed.status_code == 404
    sibling = client.post(f"/api/v1/runs/{parent.run_id}/children", {"count": 1}, format="json")
    assert sibling.status_code == 404
    assert not parent.tags.exists() and parent.children.count() == 1


def test_a_run_scoped_token_gets_the_outsiders_404_everywhere_else(cast, make_run):
    run, other = make_run(), make_run(experiment="other")
    client = scoped_client(run, cast.owner.user)  # even an owner's run token
    outsider = cast.outsider.client

    for method, url, body in [
        ("get", f"/api/v1/runs/{other.run_id}", None),
        ("patch", f"/api/v1/runs/{other.run_id}/tags", {"set": {"x": "1"}}),
        ("post", f"/api/v1/runs/{other.run_id}/children", {"count": 1}),
        ("get", f"/api/v1/runs/{other.run_id}/files", None),
        ("get", f"/api/v1/runs/{other.run_id}/metrics", None),
        ("post", f"/api/v1/runs/{other.run_id}/cancel", {}),
        ("get", "/api/v1/workspaces/lab", None),
        ("get", "/api/v1/workspaces/lab/runs", None),
        ("get", "/api/v1/workspaces/lab/experiments", None),
        ("get", "/api/v1/workspaces/lab/members", None),
        ("get", "/api/v1/workspaces/lab/compute", None),
        ("get", "/api/v1/workspaces/lab/alert-rules", None),
        ("post", "/api/v1/workspaces/lab/experiments/exp/runs", {}),
    ]:
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code == 404, (method, url, response.content)
        assert getattr(outsider, method)(url, body, format="json").status_code == 404, url
    for method, url in [
        ("get", "/api/v1/workspaces"),
        ("post", "/api/v1/workspaces"),
        ("get", "/api/v1/me"),
        ("get", "/api/v1/auth/tokens"),
    ]:
        assert getattr(client, method)(url, {"name": "mine"}, format="json").status_code == 404
    assert not other.tags.exists() and not other.children.exists()


def test_a_run_scoped_token_cannot_see_or_revoke_its_users_tokens(cast, make_run):
    run = make_run()
    client = scoped_client(run, cast.contributor.user)
    main = ApiToken.objects.filter(user=cast.contributor.user, run__isnull=True).get()

    assert client.get("/api/v1/auth/tokens").status_code == 404
    assert client.delete(f"/api/v1/auth/tokens/{main.pk}").status_code == 404
    main.refresh_from_db()
    assert main.revoked_at is None
    assert cast.contributor.client.get("/api/v1/auth/tokens").status_code == 200


def _snapshot(files: dict[str, str]) -> io.BytesIO:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    archive.seek(0)
    archive.name = "snapshot.zip"
    return archive


def test_a_run_scoped_token_submits_children_of_its_run_and_nothing_else(cast, make_run):
    run, other = make_run(experiment="jobs"), make_run(experiment="jobs")
    client = scoped_client(run, cast.contributor.user)

    def submit(parent: str | None):
        config = {"script": "train.py", "compute_target": "local"}
        if parent:
            config["parent_run_id"] = parent
        return client.post(
            "/api/v1/workspaces/lab/experiments/jobs/submit",
            {"config": json.dumps(config), "snapshot": _snapshot({"train.py": "print(1)"})},
            format="multipart",
        )

    child = submit(run.run_id)
    assert child.status_code == 201, child.content
    assert child.json()["parent_id"] == run.run_id
    assert submit(None).status_code == 404  # a new top-level run: outside the scope
    assert submit(other.run_id).status_code == 404
    assert not other.children.exists()
    assert Run.objects.filter(parent__isnull=True).count() == 2  # run and other, nothing new


# --- the token a worker hands a script, end to end -------------------------------------------

TOKEN_SCRIPT = r"""
import json, os, sys, urllib.error, urllib.request
from runs.sdk import Run, ScriptRunConfig
other = sys.argv[1]
run = Run.get_context()
run.log("loss", 0.25)
with run.child_run("inline") as child:
    child.log("inner", 1)
submitted = run.submit_child(ScriptRunConfig(source_directory=".", script="child.py"))
print("CHILDREN", sorted(c.id for c in run.get_children()), flush=True)

def status(method, path, body=None):
    request = urllib.request.Request(
        os.environ["RUNSTUDIO_URL"] + "/api/v1" + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Token " + os.environ["RUNSTUDIO_TOKEN"],
                 "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code

ws = os.environ["RUNSTUDIO_WORKSPACE"]
print("STATUS", json.dumps({
    "own": status("GET", f"/runs/{run.id}"),
    "other": status("GET", f"/runs/{other}"),
    "other-tags": status("PATCH", f"/runs/{other}/tags", {"set": {"pwned": "1"}}),
    "run-list": status("GET", f"/workspaces/{ws}/runs"),
    "workspace-list": status("GET", "/workspaces"),
    "token-list": status("GET", "/auth/tokens"),
    "workspace-create": status("POST", "/workspaces", {"name": "pwned"}),
}), flush=True)
print("TOKEN", os.environ["RUNSTUDIO_TOKEN"], flush=True)
"""


def test_the_scripts_token_reaches_its_run_tree_only_and_is_revoked_after(workers, cast, make_run):
    other = make_run(experiment="private")
    workers.start()
    run_id = submit_zip(
        cast,
        {"main.py": TOKEN_SCRIPT, "child.py": "print('child ran')\n"},
        script="main.py",
        arguments=[other.run_id],
    )
    run = wait_for(lambda: finished(run_id), what="the run", timeout=60)
    log = driver_log(run_id, cast)
    assert run.status == "Completed", (run.error_message, log, workers.logs())

    statuses = json.loads(log.split("STATUS ", 1)[1].splitlines()[0])
    assert statuses == {
        "own": 200,
        "other": 404,
        "other-tags": 404,
        "run-list": 404,
        "workspace-list": 404,
        "token-list": 404,
        "workspace-create": 404,
    }
    children = Run.objects.filter(parent=run).order_by("id")
    assert [c.run_type for c in children] == ["child", "script"]
    assert children[0].metric_series.filter(name="inner").exists()
    assert run.metric_series.filter(name="loss").exists()
    submitted = wait_for(lambda: finished(children[1].run_id), what="the child", timeout=60)
    assert submitted.status == "Completed"
    assert "child ran" in driver_log(submitted.run_id, cast)
    assert not other.tags.exists() and not WorkspaceModel.objects.filter(name="pwned").exists()

    token = ApiToken.objects.get(run=run)
    assert token.revoked_at is not None
    key = log.split("TOKEN ", 1)[1].split()[0]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get(f"/api/v1/runs/{run_id}").status_code == 401


# --- where bubblewrap is missing ---------------------------------------------------------------


def test_without_bubblewrap_a_multi_user_server_fails_runs_instead_of_running_them_bare(
    workers, cast
):
    worker = workers.start(RUNSTUDIO_BWRAP="/nonexistent/bwrap")
    run_id = submit_zip(
        cast, {"bare.py": "open('/tmp/ran-unsandboxed', 'w')\nprint('ran')\n"}, script="bare.py"
    )
    run = wait_for(lambda: finished(run_id), what="the refused run", timeout=60)

    assert run.status == "Failed" and run.error_code == "SandboxUnavailable"
    assert "more than one user" in run.error_message and "bubblewrap" in run.error_message
    assert "ran" not in driver_log(run_id, cast)
    banner = workers.logs()
    assert "NOT ISOLATED" in banner and "apt-get install -y bubblewrap" in banner
    assert "submitted runs FAIL here" in banner
    assert Worker.objects.get(pid=worker.pid).isolated is False


def test_a_worker_that_requires_the_sandbox_does_not_start_without_bubblewrap(workers):
    worker = workers.start(RUNSTUDIO_BWRAP="/nonexistent/bwrap", RUNSTUDIO_SANDBOX="required")
    assert worker.wait(timeout=30) != 0
    output = workers.logs()
    assert "RUNSTUDIO_SANDBOX=required" in output
    assert "apt-get install -y bubblewrap" in output
    assert not Worker.objects.filter(pid=worker.pid).exists()


def test_a_run_scoped_token_counts_only_where_its_scope_is_enforced(cast, make_run):
    run = make_run()
    token, key = services.token_create(user=cast.contributor.user, name="run", run=run)

    assert services.token_authenticate(key=key) is None  # any door that does not check scope
    assert services.token_authenticate(key=key, run_scoped=True) == token


# --- signals across the sandbox's edge ---------------------------------------------------------


def test_a_canceled_sandboxed_script_gets_sigterm_and_its_grace(workers, cast):
    script = (
        "import signal, sys, time\n"
        "def stop(*_):\n"
        "    print('got SIGTERM, saving', flush=True)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('waiting', flush=True)\n"
        "time.sleep(120)\n"
    )
    workers.start()
    run_id = submit_zip(cast, {"wait.py": script}, script="wait.py")
    wait_for(lambda: "waiting" in driver_log(run_id, cast), what="the script to start")

    assert cast.contributor.client.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
    run = wait_for(lambda: finished(run_id), what="the cancel")
    assert run.status == "Canceled"
    # bwrap itself would have died of the SIGTERM and taken the script down without it.
    assert "got SIGTERM, saving" in driver_log(run_id, cast)


def test_a_sandboxed_script_killed_by_a_signal_says_so(workers, cast):
    workers.start()
    run_id = submit_zip(
        cast, {"die.py": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"}, "die.py"
    )
    run = wait_for(lambda: finished(run_id), what="the run")
    assert run.status == "Failed" and run.error_code == "ScriptExitCode"
    assert run.error_message.startswith("The script was killed by signal 9.")
