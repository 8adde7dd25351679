"""A worker on another host is told, and tells, which studio address its scripts call back.

Found by following the README's team setup literally: the worker command the studio prints
(`runstudio compute worker-key`, the Compute page) had no `--server-url`, so a worker started
with it on a worker host sent its scripts to that host's own 127.0.0.1:8000, and every script
that logs through the SDK failed ("cannot reach the Runstudio server at http://127.0.0.1:8000
… Start it with `runstudio serve`"), while the worker itself said nothing at start."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from runs import services
from tests.processes import ROOT, Workers

pytestmark = pytest.mark.django_db(transaction=True)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


def test_the_worker_command_an_owner_gets_names_the_studio_address_scripts_call_back(
    cast, settings
):
    services.compute_target_create(workspace=cast.workspace, name="gpu-a")

    made = cast.owner.client.post("/api/v1/workspaces/lab/compute/gpu-a/worker-key").json()
    assert made["worker_command"] == (
        f"runstudio worker -w lab -c gpu-a --key {made['worker_key']} "
        "--server-url http://testserver"
    )

    settings.PUBLIC_URL = "https://runstudio.example"
    made = cast.owner.client.post("/api/v1/workspaces/lab/compute/gpu-a/worker-key").json()
    assert made["worker_command"].endswith(" --server-url https://runstudio.example")


def test_the_compute_page_shows_the_worker_command_with_the_studio_address(cast, settings):
    from django.test import Client

    settings.PUBLIC_URL = "https://runstudio.example"
    services.compute_target_create(workspace=cast.workspace, name="gpu-a")
    page = Client()
    page.force_login(cast.owner.user)

    made = page.post("/w/lab/compute/gpu-a/worker-key/").content.decode()
    live = page.get("/w/lab/compute/live/").content.decode()

    assert "--server-url https://runstudio.example</code>" in made
    assert "--key &lt;worker key&gt; --server-url https://runstudio.example" in live


def _worker_output(tmp_path: Path, server_url: str, key: str) -> str:
    """What `runstudio worker` for gpu-a prints at start (--batch: it drains and exits)."""
    (tmp_path / "logs").mkdir(exist_ok=True)
    workers = Workers(server_url, tmp_path, tmp_path / "logs")
    command = [sys.executable, "-m", "runs.sdk.cli", "worker", "-w", "lab", "-c", "gpu-a"]
    done = subprocess.run(  # noqa: S603 - our own command line
        [*command, "--key", key, "--batch", "--server-url", server_url],
        cwd=ROOT,
        env=workers.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_a_worker_whose_callback_address_does_not_answer_says_so_at_start(
    cast, live_server, tmp_path
):
    services.compute_target_create(workspace=cast.workspace, name="gpu-a")
    key = cast.owner.client.post("/api/v1/workspaces/lab/compute/gpu-a/worker-key").json()

    nowhere = f"http://127.0.0.1:{_closed_port()}"
    said = _worker_output(tmp_path, nowhere, key["worker_key"])
    assert f"scripts call back {nowhere}" in said
    assert f"WARNING: scripts call the studio back at {nowhere}, which does not answer" in said
    assert "--server-url" in said

    said = _worker_output(tmp_path, live_server.url, key["worker_key"])
    assert f"scripts call back {live_server.url}" in said
    assert "WARNING" not in said


def test_the_compute_page_says_why_local_may_have_no_worker(cast):
    from django.test import Client

    page = Client()
    page.force_login(cast.contributor.user)

    live = page.get("/w/lab/compute/live/").content.decode()

    assert "unless started with <code>--local-workers 0</code>" in live
