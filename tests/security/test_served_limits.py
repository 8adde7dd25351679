"""Limits through a real served process (gunicorn, as `runstudio serve` runs it), where the
server in front of Django behaves differently from the test client: it refuses a request line
over 4094 bytes before Django sees it, and it streams a body Django then reads."""

import json
import os
import subprocess
import sys
import time

import pytest
import requests

from runs import limits, services
from tests.processes import ROOT, database_env, free_port, gunicorn_command, wait_until_served

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def served(tmp_path):
    """gunicorn with its default limits, one worker, on the test database."""
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        gunicorn_command(port, "--workers", "1", "--no-control-socket"),
        cwd=ROOT,
        env=database_env(tmp_path),
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_served(
        url, process, timeout=30, interval=0.1, status=None, log=tmp_path / "gunicorn.log"
    )
    yield url
    process.terminate()
    process.wait(10)
    log.close()


def test_deep_json_to_the_token_endpoint_is_a_json_400_from_the_server(served, cast):
    response = requests.post(
        served + "/api/v1/auth/token",
        data="[" * 100_000 + "]" * 100_000,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400
    assert str(limits.JSON_MAX_DEPTH) in response.json()["error"]["message"]


def test_a_body_over_the_limit_is_a_json_413_from_the_server(served, cast, make_run):
    run = make_run()
    response = requests.patch(
        f"{served}/api/v1/runs/{run.run_id}/tags",
        data=json.dumps({"set": {"k": "v" * (limits.REQUEST_BODY_MAX_BYTES + 1)}}),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Token {cast.contributor.token}",
        },
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json()["error"]["field"] == "body"


def long_query(needle: str) -> str:
    words = [f"display_name = 'x{i:040d}'" for i in range(90)]
    return " OR ".join([f"display_name = '{needle}'", *words])


def test_a_search_longer_than_the_request_line_works_as_a_post(served, cast, make_run):
    make_run(display_name="needle")
    q = long_query("needle")
    headers = {"Authorization": f"Token {cast.reader.token}"}
    # The GET never reaches Django: gunicorn answers its own 400 for the request line.
    get = requests.get(
        f"{served}/api/v1/workspaces/lab/runs", params={"q": q}, headers=headers, timeout=30
    )
    assert get.status_code == 400 and "Request Line" in get.text
    post = requests.post(
        f"{served}/api/v1/workspaces/lab/runs/search", json={"q": q}, headers=headers, timeout=30
    )
    assert post.status_code == 200
    assert [r["display_name"] for r in post.json()["results"]] == ["needle"]


def test_the_cli_sends_a_long_filter_as_a_post_search(served, cast, make_run, tmp_path):
    make_run(display_name="needle")
    make_run(display_name="hay")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RUNSTUDIO_")},
        "RUNSTUDIO_URL": served,
        "RUNSTUDIO_TOKEN": cast.reader.token,
        "RUNSTUDIO_WORKSPACE": "lab",
        "RUNSTUDIO_HOME": str(tmp_path / "home"),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from runs.sdk.cli import main; sys.exit(main())",
            "run",
            "list",
            "--filter",
            long_query("needle"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert [r["display_name"] for r in json.loads(done.stdout)] == ["needle"]


def test_a_megabyte_like_search_answers_within_a_second_from_the_server(served, cast, make_run):
    from runs.models import Run

    run = make_run()
    Run.objects.filter(pk=run.pk).update(description="a" * 1_000_000)
    services.run_set_tags(run=run, set_tags={"k": "v"})
    started = time.monotonic()
    response = requests.get(
        f"{served}/api/v1/workspaces/lab/runs",
        params={"q": "description LIKE '%a%a%a%a%a%a%a_b'"},
        headers={"Authorization": f"Token {cast.reader.token}"},
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and response.json()["results"] == []
    assert elapsed < 1.0, f"the search held the worker for {elapsed:.1f} s"
