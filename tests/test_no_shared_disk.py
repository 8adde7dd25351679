"""No shared disk (issue 11, item 3): the team setup end to end, with real processes.

Two app processes (`runstudio serve`, as the README starts them), each on a "host" of its own,
share one PostgreSQL database and one bucket on a real SeaweedFS (tests/seaweed.py) and
nothing else. A worker (`runstudio worker -w … -c … --key …`) runs on a third "host" with only
the database URL and the bucket's variables. Each host is a bubblewrap mount namespace in which
the other hosts' folders (and the object store's own) are empty: a process that reached for a
file on another host's disk would find nothing, so the flow below can only work through the
database and the bucket.

The flow: the SDK logs to A and to B and each run reads back from the other process; a script
submitted through B is fetched from the bucket by the worker, runs sandboxed, streams its log,
logs metrics, uploads outputs; process A shows it all live (log tail while it runs, metrics,
the run page, the live log fragment, outputs, Download all) to a browser session signed in
through B. Afterwards no file of any run is on any host's disk: the hosts' folders hold their
static files and nothing else.

PostgreSQL only: SQLite is one file on one host, so there is no team setup to test on it.
"""

import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings
from django.db import connection

from runs import services
from runs.services import alerts
from studio import settings as settings_module
from tests.conftest import PASSWORD
from tests.processes import ROOT, database_env, free_port, wait_for
from tests.test_alerts import Hook

pytestmark = pytest.mark.django_db(transaction=True)

RUNSTUDIO = str(Path(sys.executable).parent / "runstudio")
EXPERIMENT = "no-shared-disk"
TARGET = "gpu-a"

# The submitted script: prints, logs metrics, then waits (polling its own tags through the
# studio) until the test has seen it live, and only then writes its output and ends.
TRAIN = """\
import time
from pathlib import Path

from runs.sdk import Run

run = Run.get_context()
print("hello from the sandbox", flush=True)
for step in range(3):
    run.log("acc", 0.5 + step / 10, step=step)
    print(f"step {step}", flush=True)
run.flush()
print("metrics sent", flush=True)
deadline = time.monotonic() + 60
while "go" not in run.get_tags() and time.monotonic() < deadline:
    time.sleep(0.2)
Path("outputs/model.txt").write_text("weights")
print("done", flush=True)
"""

# What the SDK logs from a client machine to one app process.
LOG_FROM_SDK = """\
import sys
from pathlib import Path

from runs.sdk import Experiment, Workspace

Path("notes.txt").write_text("notes via " + sys.argv[1])
exp = Experiment(workspace=Workspace.from_config(), name=sys.argv[2])
with exp.start_logging(display_name="logged via " + sys.argv[1]) as run:
    for step in range(5):
        run.log("loss", 1.0 / (step + 1), step=step)
    run.upload_file(name="outputs/notes.txt", path_or_stream="notes.txt")
    print(run.id)
"""


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


@pytest.fixture(scope="session")
def static_build(tmp_path_factory) -> Path:
    """One build of the static files (what `runstudio serve` makes at a host's first start),
    copied to every app host: each would otherwise build the same files at once, which is
    most of a start under load and not what these tests are about."""
    data = tmp_path_factory.mktemp("static-build")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTUDIO_")}
    env |= {
        "DJANGO_SETTINGS_MODULE": "studio.settings",
        "RUNSTUDIO_DATA_DIR": str(data),
        "RUNSTUDIO_STATIC_FINDERS": "0",
    }
    code = "import django; django.setup(); from runs import serving; serving.static_build()"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)  # noqa: S603
    return data / "static"


class Host:
    """A machine of its own: `folder` is its disk; in its processes' mount namespace every
    other host's folder (everything under `hidden`, but `folder`) is an empty tmpfs."""

    def __init__(
        self, name: str, folder: Path, hidden: list[Path], logs: Path, static: Path | None = None
    ) -> None:
        self.name, self.folder, self.hidden, self.logs = name, folder, hidden, logs
        self.data = folder / "data"
        self.data.mkdir(parents=True)
        if static is not None:  # as after an earlier start (see static_build)
            shutil.copytree(static, self.data / "static")
        self.processes: list[subprocess.Popen] = []

    def env(self, base: dict[str, str], **extra: str) -> dict[str, str]:
        env = {**base, "RUNSTUDIO_DATA_DIR": str(self.data), "HOME": str(self.folder)}
        return env | extra

    def start(self, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        wrapped = ["bwrap", "--dev-bind", "/", "/", "--die-with-parent"]
        for path in self.hidden:
            wrapped += ["--tmpfs", str(path)]
        wrapped += ["--bind", str(self.folder), str(self.folder), "--chdir", str(self.folder)]
        log = open(self.logs / f"{self.name}-{len(self.processes)}.log", "w")  # noqa: SIM115
        process = subprocess.Popen(  # noqa: S603 - our own commands
            [*wrapped, "--", *command], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self.processes.append(process)
        return process

    def log(self) -> str:
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.logs.glob(f"{self.name}-*"))
        )

    def terminate(self) -> None:
        """SIGTERM to the command inside (bwrap's child), so it stops as a person's Ctrl+C
        stops it; bwrap then exits with it (and kills it, --die-with-parent, if it must)."""
        for process in self.processes:
            for child in _children(process.pid):
                os.kill(child, signal.SIGTERM)

    def wait(self) -> None:
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def files(self) -> list[str]:
        """Every file on this host's disk, relative to its folder."""
        found = []
        for folder, _, names in os.walk(self.folder):
            for name in names:
                found.append(Path(folder, name).relative_to(self.folder).as_posix())
        return sorted(found)


class Studio:
    """A signed-in requests session for the API (a token) or the pages (a browser's cookies)."""

    def __init__(self, token: str | None = None) -> None:
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Token {token}"

    def sign_in(self, url: str, username: str) -> None:
        self.http.get(f"{url}/accounts/login/", timeout=10)
        answer = self.http.post(
            f"{url}/accounts/login/",
            data={
                "username": username,
                "password": PASSWORD,
                "csrfmiddlewaretoken": self.http.cookies["csrftoken"],
            },
            headers={"Referer": f"{url}/accounts/login/"},
            allow_redirects=False,
            timeout=30,
        )
        assert answer.status_code == 302, answer.text[:2000]
        assert "sessionid" in self.http.cookies

    def get(self, url: str, **params) -> requests.Response:
        answer = self.http.get(url, params=params, timeout=30, allow_redirects=False)
        assert answer.status_code == 200, (url, answer.status_code, answer.text[:2000])
        return answer

    def json(self, url: str, **params):
        return self.get(url, **params).json()


def stop(hosts) -> None:
    for host in hosts:
        host.terminate()
    for host in hosts:
        host.wait()


def _served(url: str, host: Host, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if requests.get(f"{url}/accounts/login/", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert process.poll() is None, host.log()
        assert time.monotonic() < deadline, "not serving after 90 s:\n" + host.log()
        time.sleep(0.2)


@pytest.fixture
def team(cast, seaweedfs, static_build, tmp_path, settings):
    """Hosts a and b serving (no local workers) and host w running a worker for the
    workspace's `gpu-a`, all started at once. They share the test database's URL and the
    bucket; the app hosts also one secret key."""
    if connection.vendor != "postgresql":
        pytest.skip("the team setup runs on PostgreSQL (SQLite is one file on one host)")
    hosts_root, logs = tmp_path / "hosts", tmp_path / "logs"
    logs.mkdir()
    # Everything a host must not see: the other hosts, the bucket's own disk, this test's
    # folder and the test process's data directory.
    hidden = [tmp_path, seaweedfs.directory, Path(django_settings.DATA_DIR)]
    hosts = {
        name: Host(name, hosts_root / name, hidden, logs, static_build if name != "w" else None)
        for name in ("a", "b", "w")
    }
    prefix = f"team-{secrets.token_hex(4)}"
    base = database_env(tmp_path)  # the test database; RUNSTUDIO_DATA_DIR is set per host
    base |= seaweedfs.env(f"s3://runstudio-test/{prefix}")
    base |= {"RUNSTUDIO_DB_CONN_MAX_AGE": "0", "RUNSTUDIO_HEARTBEAT_INTERVAL": "1"}
    key = secrets.token_urlsafe(50)
    target = services.compute_target_create(workspace=cast.workspace, name=TARGET)
    worker_key = services.compute_target_worker_key_rotate(target=target)
    urls = {}
    for name in ("a", "b"):
        port = free_port()
        urls[name] = f"http://127.0.0.1:{port}"
        hosts[name].start(
            [RUNSTUDIO, "serve", "--port", str(port), "--local-workers", "0"],
            hosts[name].env(base, RUNSTUDIO_SECRET_KEY=key),
        )
    # The worker host: the database, the bucket and the target's key; no app host's secret
    # key. Its scripts call B back.
    work_dir = hosts["w"].folder / "work"
    work_dir.mkdir()
    hosts["w"].start(
        [RUNSTUDIO, "worker", "-w", "lab", "-c", TARGET, "--key", worker_key],
        hosts["w"].env(
            base,
            RUNSTUDIO_SERVER_URL=urls["b"],
            RUNSTUDIO_WORK_DIR=str(work_dir),
            RUNSTUDIO_SANDBOX="required",
            RUNSTUDIO_REAPER_INTERVAL="3600",
        ),
    )
    # Passwords the app processes can check (the suite's fast hasher is not in their list).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    cast.reader.user.set_password(PASSWORD)
    cast.reader.user.save()
    try:
        for name in ("a", "b"):
            _served(urls[name], hosts[name], hosts[name].processes[0])
        yield hosts, urls, prefix, work_dir
    finally:
        stop(hosts.values())


def _sdk(url: str, token: str, folder: Path, *args: str, code: str = LOG_FROM_SDK) -> str:
    """Runs SDK code (or with code="", the CLI) as a client machine does: RUNSTUDIO_*
    variables, its own folder, nothing of the servers'; returns what it printed."""
    return _finished(_sdk_start(url, token, folder, *args, code=code))


def _sdk_start(
    url: str, token: str, folder: Path, *args: str, code: str = LOG_FROM_SDK
) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNSTUDIO_", "AWS_"))}
    env.pop("DATABASE_URL", None)
    env |= {
        "RUNSTUDIO_URL": url,
        "RUNSTUDIO_TOKEN": token,
        "RUNSTUDIO_WORKSPACE": "lab",
        "RUNSTUDIO_HOME": str(folder / "home"),
    }
    return subprocess.Popen(  # noqa: S603 - our own SDK and CLI
        [sys.executable, "-c", code, *args] if code else [RUNSTUDIO, *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finished(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, out + err
    return out.strip()


def _bucket_keys(seaweedfs, prefix: str, run_id: str) -> set[str]:
    listing = seaweedfs.client().list_objects_v2(
        Bucket="runstudio-test", Prefix=f"{prefix}/runs/{run_id}/"
    )
    return {item["Key"].removeprefix(f"{prefix}/runs/{run_id}/") for item in listing["Contents"]}


def test_two_app_hosts_and_a_worker_host_sharing_only_the_database_and_a_bucket_run_it_all(
    team, cast, seaweedfs, tmp_path
):
    hosts, urls, prefix, work_dir = team
    a, b = urls["a"], urls["b"]
    api = Studio(cast.contributor.token)

    # The SDK logs to A and to B (two clients at once); each run, its metrics and its file
    # read back from the other app host.
    clients = {
        name: _sdk_start(
            urls[name], cast.contributor.token, tmp_path / f"client-{name}", name, EXPERIMENT
        )
        for name in ("a", "b")
    }
    logged = {name: _finished(process) for name, process in clients.items()}
    for name, other in (("a", b), ("b", a)):
        run_id = logged[name]
        run = api.json(f"{other}/api/v1/runs/{run_id}")
        assert (run["status"], run["display_name"]) == ("Completed", f"logged via {name}")
        metrics = api.json(f"{other}/api/v1/runs/{run_id}/metrics/values")["metrics"]
        assert metrics["loss"] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
        notes = api.get(f"{other}/api/v1/runs/{run_id}/files/outputs/notes.txt")
        assert notes.content == f"notes via {name}".encode()

    # A script submitted through B (the CLI, from a client folder), with an alert rule that
    # posts its end to a webhook: the app hosts run no `local` workers, yet send alerts.
    worker = hosts["w"]
    hook = Hook()
    alerts.alert_rule_create(
        workspace=cast.workspace,
        user=cast.owner.user,
        name="ends",
        statuses=["Completed"],
        channel="webhook",
        webhook_url=hook.url,
        experiment=EXPERIMENT,
    )
    source = tmp_path / "client" / "project"
    source.mkdir(parents=True)
    (source / "train.py").write_text(TRAIN)
    submitted = _sdk(
        b,
        cast.contributor.token,
        tmp_path / "client",
        "run",
        "submit-script",
        "-e",
        EXPERIMENT,
        "-c",
        TARGET,
        "-d",
        str(source),
        "train.py",
        code="",
    )
    run_id = json.loads(submitted)["run_id"]
    run_url = f"{a}/api/v1/runs/{run_id}"

    # Live on A while the script waits: status, the driver log's tail, metrics, the sandbox.
    def running():
        return api.json(run_url)["status"] == "Running"

    wait_for(running, timeout=45, what="the run to start on the worker host\n" + worker.log())
    log_url = f"{run_url}/files/logs/70_driver_log.txt"

    def log_shows(text: str):
        answer = api.http.get(log_url, timeout=10)
        return answer.status_code == 200 and text in answer.text and answer

    tail = wait_for(lambda: log_shows("metrics sent"), timeout=30, what="the live log on A")
    assert "hello from the sandbox" in tail.text and "done" not in tail.text
    offset = int(tail.headers["X-File-Size"])
    metrics = api.json(f"{run_url}/metrics/values")["metrics"]
    assert metrics["acc"] == [0.5, 0.6, 0.7]
    info = json.loads(api.get(f"{run_url}/files/logs/process_info.json").content)
    assert info["sandbox"] == "bubblewrap" and info["cwd"] == "/workdir"
    assert api.json(run_url)["status"] == "Running"

    # The pages of A, to a browser signed in through B (one secret key: B's session is A's).
    browser = Studio()
    browser.sign_in(b, cast.reader.user.username)
    page_url = f"{a}/w/lab/runs/{run_id}/"
    page = browser.get(page_url, tab="outputs", file="logs/70_driver_log.txt", tail="1").text
    assert "step 2" in page and "hello from the sandbox" in page
    rows = browser.get(page_url, fragment="log", file="logs/70_driver_log.txt", offset="0").text
    assert "step 1" in rows

    # Let it finish (a tag set through A); the rest of the log arrives after the offset.
    go = api.http.patch(f"{run_url}/tags", json={"set": {"go": None}}, timeout=10)
    assert go.status_code == 200, go.text
    wait_for(
        lambda: api.json(run_url)["status"] in ("Completed", "Failed"),
        timeout=30,
        what="the run to end\n" + worker.log(),
    )
    run = api.json(run_url)
    assert run["status"] == "Completed", (run, worker.log())
    rest = api.get(log_url, offset=str(offset)).text
    assert "done" in rest and "step 2" not in rest
    assert api.get(f"{run_url}/files/outputs/model.txt").content == b"weights"
    page = browser.get(page_url).text
    assert "Completed" in page and "acc" in page
    live = browser.get(page_url, fragment="live", tab="outputs").text
    assert "model.txt" in live
    download = browser.get(f"{page_url}download/")
    names = set(zipfile.ZipFile(io.BytesIO(download.content)).namelist())
    assert {"snapshot/train.py", "outputs/model.txt", "logs/70_driver_log.txt"} <= names

    def alerted():
        return [r for r in hook.requests if json.loads(r["body"]).get("run_id") == run_id]

    try:
        wait_for(alerted, timeout=30, what="the webhook of the run's end")
    finally:
        hook.close()

    # Every run's files are in the bucket …
    assert {"snapshot/train.py", "outputs/model.txt"} <= _bucket_keys(seaweedfs, prefix, run_id)
    for name, logged_id in logged.items():
        assert "outputs/notes.txt" in _bucket_keys(seaweedfs, prefix, logged_id), name

    # … and none on any host's disk: each holds its static files, a key it made itself (the
    # worker's, unused), and the worker's working folder is empty again.
    run_ids = [run_id, *logged.values()]
    stop(hosts.values())
    for host in hosts.values():
        files = host.files()
        assert not [f for f in files if any(r in f for r in run_ids)], (host.name, files)
        stray = [f for f in files if not f.startswith("data/static/") and f != "data/secret_key"]
        assert stray == [], (host.name, stray)
    assert not list(work_dir.iterdir())
    assert any(f.startswith("data/static/") for f in hosts["a"].files())  # the walk sees files


def test_two_app_hosts_started_together_on_an_empty_database_both_serve(
    seaweedfs, static_build, tmp_path
):
    """The first start of a team: both hosts find the database empty at the same moment. One
    migrates while the other waits (an advisory lock) instead of both running `migrate`, which
    failed half-way on the slower one."""
    if connection.vendor != "postgresql":
        pytest.skip("the team setup runs on PostgreSQL (SQLite is one file on one host)")
    name = f"rs_fresh_{secrets.token_hex(4)}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    logs = tmp_path / "logs"
    logs.mkdir()
    hosts = [Host(h, tmp_path / "hosts" / h, [tmp_path], logs, static_build) for h in "ab"]
    env = database_env(tmp_path)
    env["DATABASE_URL"] = env["DATABASE_URL"].rsplit("/", 1)[0] + f"/{name}"
    env |= seaweedfs.env(f"s3://runstudio-test/fresh-{name}")
    env |= {"RUNSTUDIO_DB_CONN_MAX_AGE": "0", "RUNSTUDIO_SECRET_KEY": secrets.token_urlsafe(50)}
    try:
        urls = []
        for host in hosts:
            port = free_port()
            urls.append(f"http://127.0.0.1:{port}")
            command = [RUNSTUDIO, "serve", "--port", str(port), "--local-workers", "0"]
            host.start(command, host.env(env))
        for url, host in zip(urls, hosts, strict=True):
            _served(url, host, host.processes[0])
            assert requests.get(f"{url}/api/v1/me", timeout=10).status_code == 401
        said = [host.log() for host in hosts]
        # Exactly one of them set the database up; neither failed.
        assert sum("Setting up the database (migrate)" in text for text in said) == 1, said
        assert not any("Traceback" in text for text in said), said
    finally:
        stop(hosts)
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_serve_warns_when_run_files_are_in_a_bucket_but_each_host_would_make_its_own_key(
    settings, seaweedfs, monkeypatch
):
    from runs import serving

    monkeypatch.delenv("RUNSTUDIO_SECRET_KEY", raising=False)
    assert serving.secret_key_warning() is None  # a files folder: one host, or a shared disk
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": settings_module.files_storage("s3://runstudio-test/warn"),
    }
    warning = serving.secret_key_warning()
    assert "RUNSTUDIO_SECRET_KEY" in warning and "every app host" in warning
    monkeypatch.setenv("RUNSTUDIO_SECRET_KEY", "one key for every host")
    assert serving.secret_key_warning() is None


def test_a_bucket_prefix_named_like_a_folder_hides_nothing_from_the_sandbox(
    settings, seaweedfs, monkeypatch, tmp_path
):
    """With run files in a bucket, the storage's `location` is a key prefix, not a folder: the
    sandbox took s3://…/runs for ./runs and covered the `runs` package (which scripts import
    for the SDK) when the worker started in the checkout."""
    from runs import sandbox

    if not sandbox.sandbox_status().isolated:
        pytest.skip(sandbox.sandbox_status().reason)
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": settings_module.files_storage("s3://runstudio-test/runs"),
    }
    monkeypatch.chdir(ROOT)  # a worker started in the checkout, next to ./runs
    workdir = tmp_path / "work"
    workdir.mkdir()
    sandbox.sandbox_prepare_workdir(workdir=workdir)
    command = [sys.executable, "-c", "import runs.sdk; print('sdk ok')"]
    env = sandbox.sandbox_environment(run_vars={}, home=sandbox.SCRATCH, tmpdir=sandbox.SCRATCH)
    wrapped = sandbox.sandbox_command(command=command, workdir=workdir, env=env)
    try:
        done = subprocess.run(  # noqa: S603 - bwrap around our own interpreter
            wrapped.argv,
            env=wrapped.env,
            pass_fds=wrapped.pass_fds,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        wrapped.close()
    assert done.stdout.strip() == "sdk ok", done.stderr


def test_a_host_whose_run_file_storage_is_not_the_others_is_told_so_at_start(
    settings, seaweedfs, monkeypatch, make_run
):
    """A worker host started without RUNSTUDIO_FILES_URL would look for snapshots, and write
    logs and outputs, on its own disk; `runstudio worker` and `runstudio serve` say so."""
    from runs import serving

    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    local = settings.STORAGES["default"]
    bucket = settings_module.files_storage(f"s3://runstudio-test/hosts-{secrets.token_hex(4)}")
    settings.STORAGES = {**settings.STORAGES, "default": bucket}
    run = make_run()
    services.run_file_write(run=run, path="outputs/model.txt", stream=io.BytesIO(b"weights"))
    assert serving.storage_mismatch() is None  # a host on the same bucket

    settings.STORAGES = {**settings.STORAGES, "default": local}  # a host without the bucket
    warning = serving.storage_mismatch()
    assert run.run_id in warning and "RUNSTUDIO_FILES_URL" in warning
