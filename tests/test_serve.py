"""`runstudio serve` as a user starts it (issue 8, items 2 and 3): real processes on a fresh data
directory, then a restart on the same one.

It says "serving at" only once it answers, and what to do next; a restart neither migrates nor
rebuilds static files; static files have hashed names and are cached for good; the server is
three processes (itself with the worker threads, gunicorn's arbiter and one web worker on
SQLite); its local and alerts workers register and, when it stops, stop."""

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from runs import serving
from tests.processes import free_port


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry))
    return found


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


class Serve:
    def __init__(self, data_dir: Path, **extra_env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            "PATH": "/usr/bin:/bin",
            "RUNSTUDIO_DATA_DIR": str(data_dir),
            "RUNSTUDIO_HOME": str(data_dir.parent / "home"),
            **extra_env,
        }
        runstudio = os.path.join(os.path.dirname(sys.executable), "runstudio")
        self.process = subprocess.Popen(
            [runstudio, "serve", "--port", str(self.port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []

    def until_serving(self, timeout: float = 90) -> str:
        """Reads the output up to the "serving at" line and checks the URL answers right then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            assert line, "serve exited before serving:\n" + "".join(self.lines)
            self.lines.append(line)
            if line.startswith("Runstudio is serving at"):
                # No retry: when it says so, it answers.
                assert requests.get(f"{self.url}/accounts/login/", timeout=5).status_code == 200
                for _ in range(6):  # what to do next
                    self.lines.append(self.process.stdout.readline())
                return "".join(self.lines)
        raise AssertionError("no 'serving at' line:\n" + "".join(self.lines))

    def stop(self) -> str:
        tree = _tree(self.process.pid)
        self.process.terminate()
        rest, _ = self.process.communicate(timeout=60)
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{p}").exists() for p in tree) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in tree if Path(f"/proc/{p}").exists()], "processes left behind"
        return "".join(self.lines) + rest


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    return path


def _workers(data_dir: Path) -> list[tuple[str, bool]]:
    with sqlite3.connect(data_dir / "db.sqlite3") as db:
        rows = db.execute("SELECT queue_name, stopped_at IS NULL FROM runs_worker ORDER BY id")
        return [(queue, bool(live)) for queue, live in rows]


def test_serve_says_it_serves_only_when_it_answers_then_restarts_without_redoing_setup(data_dir):
    server = Serve(data_dir)
    try:
        first = server.until_serving()
        assert "Setting up the database" in first
        assert "Building static files" in first
        assert f"Runstudio is serving at {server.url}/" in first
        # A fresh database has no user: creating one comes first, then signing in, logging.
        assert "create a user   runstudio user create --username" in first
        assert f"sign in         {server.url}/accounts/login/" in first
        assert "log a run       runstudio login --url" in first
        # Itself (with the worker threads), gunicorn's arbiter, one web worker on SQLite.
        assert len(_tree(server.process.pid)) == 2
        deadline = time.monotonic() + 10
        while len(_workers(data_dir)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(_workers(data_dir)) == [("_alerts", True), ("local", True), ("local", True)]
    finally:
        server.stop()
    assert all(not live for _, live in _workers(data_dir)), "a worker was not marked stopped"

    again = Serve(data_dir)
    try:
        second = again.until_serving()
    finally:
        again.stop()
    assert "Setting up the database" not in second
    assert "Building static files" not in second


def test_an_app_host_with_a_public_url_tells_people_to_sign_in_there(data_dir):
    server = Serve(data_dir, RUNSTUDIO_PUBLIC_URL="https://runstudio.example")
    try:
        said = server.until_serving()
    finally:
        server.stop()
    assert f"Runstudio is serving at {server.url}/" in said  # this host itself
    assert "sign in         https://runstudio.example/accounts/login/" in said
    assert "runstudio login --url https://runstudio.example " in said


def test_static_files_are_served_with_hashed_names_cached_for_good(data_dir):
    server = Serve(data_dir)
    try:
        server.until_serving()
        page = requests.get(f"{server.url}/accounts/login/", timeout=10).text
        start = page.index("/static/css/studio.")
        css = page[start : page.index('"', start)]
        assert css != "/static/css/studio.css"  # a content hash in the name
        answer = requests.get(f"{server.url}{css}", timeout=10, headers={"Accept-Encoding": "gzip"})
        assert answer.status_code == 200
        cache = answer.headers["Cache-Control"]
        assert "immutable" in cache
        assert int(cache.split("max-age=")[1].split(",")[0]) >= 365 * 24 * 3600
    finally:
        server.stop()


@pytest.mark.django_db
def test_pending_migrations_are_seen_from_one_query_and_a_listing():
    from django.db import connection

    assert serving.migrations_pending() is False
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM django_migrations WHERE app = 'runs' AND name = "
            "(SELECT max(name) FROM django_migrations WHERE app = 'runs')"
        )
    assert serving.migrations_pending() is True


def test_static_files_are_rebuilt_only_when_a_source_changed(settings, tmp_path):
    source = tmp_path / "static-src"
    (source / "css").mkdir(parents=True)
    sheet = source / "css" / "extra.css"
    sheet.write_text("body { color: black; }\n")
    settings.STATICFILES_DIRS = [source]
    settings.STATIC_ROOT = tmp_path / "static-root"
    settings.STATIC_ROOT.mkdir()
    assert serving.static_outdated()
    serving.static_build()
    assert not serving.static_outdated()
    assert (settings.STATIC_ROOT / "staticfiles.json").exists()
    time.sleep(0.01)
    sheet.write_text("body { color: blue; }\n")
    assert serving.static_outdated()


def test_its_worker_threads_run_a_submitted_script_and_a_stop_fails_the_one_still_running(
    data_dir, tmp_path
):
    from runs.sdk import Experiment, ScriptRunConfig, Workspace

    server = Serve(data_dir)
    try:
        server.until_serving()
        env = {
            "PATH": "/usr/bin:/bin",
            "RUNSTUDIO_DATA_DIR": str(data_dir),
            "RUNSTUDIO_PASSWORD": "a-long-password-1",
        }
        runstudio = os.path.join(os.path.dirname(sys.executable), "runstudio")
        made = subprocess.run(
            [runstudio, "user", "create", "--username", "ada", "--password-stdin"],
            input="a-long-password-1\n",
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
        token = requests.post(
            f"{server.url}/api/v1/auth/token",
            json={"username": "ada", "password": "a-long-password-1", "name": "t"},
            timeout=10,
        ).json()["token"]
        headers = {"Authorization": f"Token {token}"}
        requests.post(f"{server.url}/api/v1/workspaces", json={"name": "lab"}, headers=headers)
        source = tmp_path / "src"
        source.mkdir()
        (source / "train.py").write_text(
            "import sys, time\nprint('hello', flush=True)\nif sys.argv[1:]: time.sleep(600)\n"
        )
        experiment = Experiment(Workspace.get("lab", url=server.url, token=token), "e")
        quick = experiment.submit(
            ScriptRunConfig(source_directory=str(source), script="train.py", compute_target="local")
        )
        quick.wait_for_completion(show_output=False)
        assert quick.get_status() == "Completed"
        slow = experiment.submit(
            ScriptRunConfig(
                source_directory=str(source),
                script="train.py",
                arguments=["sleep"],
                compute_target="local",
            )
        )
        deadline = time.monotonic() + 60
        while slow.get_status() != "Running" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert slow.get_status() == "Running"
    finally:
        server.stop()
    with sqlite3.connect(data_dir / "db.sqlite3") as db:
        status, message = db.execute(
            "SELECT status, error_message FROM runs_run WHERE run_id = ?", (slow.id,)
        ).fetchone()
    assert status == "Failed"
    assert "worker was stopped" in message


def test_a_write_holding_the_database_past_the_busy_timeout_does_not_stop_the_server(data_dir):
    # A long seeding transaction held SQLite's lock past the busy timeout; the local worker
    # thread's poll failed with "database is locked" and the whole server exited.
    server = Serve(data_dir, RUNSTUDIO_SQLITE_TIMEOUT="0.3")
    try:
        server.until_serving()
        holder = sqlite3.connect(data_dir / "db.sqlite3", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        time.sleep(4)  # several polls of each worker thread (every 0.5 s) meet the lock
        holder.execute("ROLLBACK")
        holder.close()
        time.sleep(1)
        assert server.process.poll() is None, "the server stopped"
        assert requests.get(f"{server.url}/accounts/login/", timeout=10).status_code == 200
    finally:
        output = server.stop()
    assert "database is locked; retrying" in output
