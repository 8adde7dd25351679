"""What the benchmarks that start their own studio share: a data directory migrated with a
`bench` superuser, and `runstudio serve` on it, waited for."""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password"  # noqa: S105 - a throwaway local server's


def prepared_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a studio on `data_dir`, after migrating it and creating the `bench`
    superuser (password PASSWORD)."""
    env = {**os.environ, **extra, "RUNSTUDIO_DATA_DIR": str(data_dir)}
    env.update(
        DJANGO_SETTINGS_MODULE="studio.settings",
        DJANGO_SUPERUSER_USERNAME="bench",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
        DJANGO_SUPERUSER_EMAIL="bench@example.com",
    )
    subprocess.run([PYTHON, "-m", "django", "migrate", "--noinput", "-v", "0"], env=env, check=True)
    subprocess.run(
        [PYTHON, "-m", "django", "createsuperuser", "--noinput"],
        env=env,
        check=True,
        capture_output=True,
    )
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_studio(
    data_dir: Path, *, local_workers: int, timeout: float = 90, **extra_env: str
) -> tuple[subprocess.Popen, str]:
    """`runstudio serve` on a prepared `data_dir` (its output in serve.log there), once its API
    answers: (the process, its URL)."""
    env = prepared_env(data_dir, **extra_env)
    port = free_port()
    log = open(data_dir / "serve.log", "w")  # noqa: SIM115 - closed with the process
    command = [PYTHON, "-m", "runs.sdk.cli", "serve", "--port", str(port)]
    command += ["--local-workers", str(local_workers)]
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/v1/me", timeout=2)  # noqa: S310 - our own server
        except urllib.error.HTTPError as e:
            if e.code == 401:  # up, and asking who is there
                return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the studio did not start; see {data_dir / 'serve.log'}")
        time.sleep(0.3)
