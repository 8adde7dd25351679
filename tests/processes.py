"""Helpers for tests that start real processes: `runstudio_worker` workers and gunicorn servers
on the test database, a free port, and waiting for something to come true."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, *, timeout: float = 30.0, what: str = "condition"):
    """Polls `predicate` every 0.1 s until it returns something true; returns that."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def database_env(data_dir: Path) -> dict[str, str]:
    """This process's environment without RUNSTUDIO_* settings, pointed at the test database
    (on SQLite a file, tests/conftest.py) and at `data_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTUDIO_")}
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        env["RUNSTUDIO_SQLITE_PATH"] = str(db["NAME"])
        env.pop("DATABASE_URL", None)
    else:
        env["DATABASE_URL"] = (
            f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        )
    env.update(DJANGO_SETTINGS_MODULE="studio.settings", RUNSTUDIO_DATA_DIR=str(data_dir))
    return env


def gunicorn_command(port: int, *options: str) -> list[str]:
    """gunicorn serving studio on 127.0.0.1:`port`, as `runstudio serve` runs it."""
    command = [sys.executable, "-m", "gunicorn", "studio.wsgi:application"]
    return command + ["--bind", f"127.0.0.1:{port}", *options]


def wait_until_served(
    url: str,
    process: subprocess.Popen,
    *,
    timeout: float = 60,
    interval: float = 0.2,
    status: int | None = 401,
    log: Path | None = None,
) -> None:
    """Polls `url`/api/v1/me until it answers (with `status`, unless None) while `process` is
    alive; a failed wait shows `log`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = requests.get(f"{url}/api/v1/me", timeout=2)
            if status is None or response.status_code == status:
                return
        except requests.RequestException:  # not listening yet, or still importing Django
            pass
        assert process.poll() is None, log.read_text() if log else "the server exited"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(interval)


class Workers:
    """Starts `runstudio_worker` processes on the test database; stops them at the end."""

    def __init__(
        self, server_url: str, data_dir: Path, log_dir: Path, *, heartbeat: float = 1
    ) -> None:
        self.server_url, self.data_dir, self.log_dir = server_url, data_dir, log_dir
        self.heartbeat = heartbeat
        self.processes: list[subprocess.Popen] = []

    def env(self, key: str | None = None, **extra: str) -> dict[str, str]:
        env = database_env(self.data_dir)
        env.update(
            RUNSTUDIO_SERVER_URL=self.server_url,
            RUNSTUDIO_HEARTBEAT_INTERVAL=str(self.heartbeat),
            RUNSTUDIO_REAPER_INTERVAL="3600",
            RUNSTUDIO_CANCEL_GRACE="1",
        )
        if key is not None:  # passed as `runstudio worker` passes it
            env["RUNSTUDIO_WORKER_KEY"] = key
        env.update(extra)
        return env

    def command(self, *args: str, batch: bool) -> list[str]:
        command = [sys.executable, "-m", "django", "runstudio_worker", *args]
        command += ["--no-reload", "--interval", "0.1", "--no-startup-delay"]
        return command + (["--batch"] if batch else [])

    def start(
        self, *args: str, key: str | None = None, batch: bool = False, **extra: str
    ) -> subprocess.Popen:
        log = open(self.log_dir / f"worker-{len(self.processes)}.log", "w")  # noqa: SIM115
        process = subprocess.Popen(
            self.command(*args, batch=batch),
            cwd=ROOT,
            env=self.env(key, **extra),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    def drain(self, *args: str, key: str | None = None) -> None:
        """A --batch worker: takes what its queue holds, then exits 0."""
        process = self.start(*args, key=key, batch=True)
        assert process.wait(timeout=60) == 0, self.logs()

    def refused(self, *args: str, key: str | None = None) -> str:
        """Runs a worker that must refuse to start; returns what it said."""
        done = subprocess.run(  # noqa: S603 - our own management command
            self.command(*args, batch=True),
            cwd=ROOT,
            env=self.env(key),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode != 0, done.stdout + done.stderr
        return done.stderr

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.send_signal(signal.SIGTERM)  # the second one stops a running task
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.log_dir.glob("worker-*.log")))
