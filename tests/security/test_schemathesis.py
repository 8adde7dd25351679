"""Schemathesis fuzzes the served OpenAPI schema (/api/schema/) of a real gunicorn server.

Every check it has runs (`--checks all`): no 5xx, every status code, content type and body as
the schema says, schema-invalid requests refused, schema-valid ones accepted. A fixed seed and a
bounded number of examples per operation keep the run reproducible and at about 40 s of CPU.
The data (a workspace, an experiment, a run with a metric and a file, an alert rule) goes in
through the API itself, so the test depends on nothing inside the server.

Where the schema cannot say what the server checks, a 400 to a schema-valid request is allowed,
operation by operation, in the configuration below (docs/architecture.md, "The OpenAPI schema
states the real limits"): a submission's snapshot must be a real zip, an alert rule's
experiment an existing experiment, a metric batch's steps and times as long as its values.
Every other check still runs on those operations.
"""

import os
import re
import secrets
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import requests

from tests.processes import ROOT, free_port, gunicorn_command, wait_until_served

BIN = Path(sys.executable).parent
SEED = 20261130
MAX_EXAMPLES = 12
PASSWORD = "fuzz-password-1234"

# Every check schemathesis 4 has: no 5xx, status codes, content types, response headers and
# bodies, negative data rejected, positive data accepted, missing auth, unknown methods…
CHECKS = "all"

CONFIG = """\
[parameters]
"path.workspace" = "lab"
"path.experiment" = "exp"
"path.run_id" = "{run_id}"

# Revoking a token with the fuzzed user's own token would lock the rest of the run out (the
# stateful phase lists the caller's tokens and revokes them); a bystander calls this one.
[[operations]]
include-name = "DELETE /api/v1/auth/tokens/{{token_id}}"
headers = {{ Authorization = "Token {bystander}" }}

# The fuzzer gives the main run thousands of children; listing them (up to LIST_MAX) is
# fuzzed on a run of its own so it does not spend the test's time on the same big answer.
[[operations]]
include-name = "GET /api/v1/runs/{{run_id}}/children"
parameters = {{ "path.run_id" = "{family}" }}

[[operations]]
include-path-regex = "/alert-rules/\\\\{{name\\\\}}$"
parameters = {{ "path.name" = "watch" }}

# The schema cannot say "a zip archive holding the script the config names".
[[operations]]
include-name = "POST /api/v1/workspaces/{{workspace}}/experiments/{{experiment}}/submit"
checks.positive_data_acceptance.expected-statuses = [
    "2XX", "400", "401", "403", "404", "409", "413",
]

# Nor "an experiment that exists", nor (PATCH) what the stored rule's channel needs.
[[operations]]
include-path-regex = "/alert-rules"
include-method-regex = "POST|PATCH"
checks.positive_data_acceptance.expected-statuses = ["2XX", "400", "401", "403", "404", "409"]

# Nor "a query in the search language", "a column key" (`sort`) or "a position this list gave"
# (`cursor`): the run list's q, sort and cursor are languages of their own (400 naming them).
[[operations]]
include-path-regex = "/workspaces/\\\\{{workspace\\\\}}/runs(/search)?$"
checks.positive_data_acceptance.expected-statuses = ["2XX", "400", "401", "403", "404"]

# Nor "steps and times as long as values".
[[operations]]
include-name = "POST /api/v1/runs/{{run_id}}/metrics/batch"
checks.positive_data_acceptance.expected-statuses = [
    "2XX", "400", "401", "403", "404", "409", "413",
]
"""


def _env(data_dir: Path, database_url: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNSTUDIO_", "DATABASE_"))}
    env.update(
        RUNSTUDIO_DATA_DIR=str(data_dir),
        DJANGO_SETTINGS_MODULE="studio.settings",
        RUNSTUDIO_STATIC_FINDERS="1",
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


@pytest.fixture
def database_url():
    """On the PostgreSQL run of the suite (DATABASE_URL set), a fresh database on that server,
    dropped afterwards: PostgreSQL refuses inputs SQLite takes (a NUL in a string), so the
    fuzzer meets both. Otherwise None: SQLite in the server's own data directory."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        yield None
        return
    import psycopg

    name = f"fuzz_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _seed(url: str) -> dict:
    """The fuzzed user's world, made through the API as any client would make it."""
    session = requests.Session()
    token = session.post(
        f"{url}/api/v1/auth/token", json={"username": "fuzz", "password": PASSWORD}, timeout=30
    ).json()["token"]
    session.headers["Authorization"] = f"Token {token}"

    def call(method: str, path: str, **kwargs):
        response = session.request(method, f"{url}/api/v1{path}", timeout=30, **kwargs)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    call("POST", "/workspaces", json={"name": "lab"})
    call("POST", "/workspaces/lab/experiments", json={"name": "exp"})
    run_id = call("POST", "/workspaces/lab/experiments/exp/runs", json={})["run_id"]
    call(
        "POST",
        f"/runs/{run_id}/metrics/batch",
        json={"metrics": [{"name": "loss", "values": [1, 0.5]}]},
    )
    call(
        "PUT",
        f"/runs/{run_id}/files/logs/out.txt",
        data=b"line 1\n",
        headers={"Content-Type": "application/octet-stream"},
    )
    call(
        "POST",
        "/workspaces/lab/alert-rules",
        json={
            "name": "watch",
            "statuses": ["Failed"],
            "channel": "webhook",
            "webhook_url": "https://hooks.example.com/x",
        },
    )
    family = call("POST", "/workspaces/lab/experiments/exp/runs", json={})["run_id"]
    call("POST", f"/runs/{family}/children", json={"count": 2})
    bystander = requests.post(
        f"{url}/api/v1/auth/token", json={"username": "bystander", "password": PASSWORD}, timeout=30
    ).json()["token"]
    return {"token": token, "run_id": run_id, "family": family, "bystander": bystander}


def _failures(output: str) -> str:
    """The FAILURES section of schemathesis's report, where each failure has its curl line."""
    start = output.find("= FAILURES =")
    ends = [i for i in (output.find(" WARNINGS ", start), output.find(" SUMMARY ", start)) if i > 0]
    return output[start : min(ends)] if start >= 0 and ends else output[-8000:]


@pytest.fixture
def server(tmp_path, database_url):
    data_dir = tmp_path / "data"
    env = _env(data_dir, database_url)
    django = [sys.executable, "-m", "django"]
    subprocess.run([*django, "migrate", "--noinput", "-v", "0"], env=env, cwd=ROOT, check=True)
    users = (
        "from django.contrib.auth import get_user_model as g; U = g()\n"
        f"U.objects.create_user('fuzz', password={PASSWORD!r})\n"
        f"U.objects.create_user('bystander', password={PASSWORD!r})\n"
    )
    subprocess.run([*django, "shell", "-c", users], env=env, cwd=ROOT, check=True)
    port = free_port()
    access_log = tmp_path / "access.log"
    process = subprocess.Popen(
        gunicorn_command(
            port,
            "--workers",
            "1",
            "--threads",
            "4",
            "--worker-class",
            "gthread",
            "--no-control-socket",
            "--timeout",
            "60",
            "--access-logfile",
            str(access_log),
            "--access-logformat",
            "%(s)s %(L)s %(m)s %(U)s",
        ),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.err", "w"),
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_served(url, process)
    try:
        yield url, access_log, tmp_path
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_schemathesis_finds_no_5xx_and_no_schema_mismatch(server):
    url, access_log, work = server
    world = _seed(url)
    config = work / "schemathesis.toml"
    config.write_text(CONFIG.format(**world))
    schemathesis = shutil.which("schemathesis", path=str(BIN)) or str(BIN / "schemathesis")
    seeded = sum(1 for _ in access_log.open())

    done = subprocess.run(
        [
            schemathesis,
            "--no-color",
            "--config-file",
            str(config),
            "run",
            f"{url}/api/schema/?format=json",
            "--header",
            f"Authorization: Token {world['token']}",
            "--checks",
            CHECKS,
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "30",
            "--output-truncate",
            "true",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )

    (work / "schemathesis.txt").write_text(done.stdout + done.stderr)
    # "status seconds method path"; a path with a newline in it continues on the next line.
    answers = [
        line.split(" ", 3)
        for line in list(access_log.open(errors="replace"))[seeded:]
        if re.match(r"[0-9]{3} [0-9.]+ ", line)
    ]
    statuses = Counter(status for status, *_ in answers)
    slowest = sorted(answers, key=lambda a: -float(a[1]))[:5]
    requests_made = sum(statuses.values())
    server_errors = sum(n for s, n in statuses.items() if s.startswith("5"))
    summary = re.search(r"Test cases:\n(.*)\n", done.stdout)
    print(
        f"schemathesis: {requests_made} requests, {server_errors} 5xx,"
        f" {summary.group(1).strip() if summary else '?'};",
        f"statuses {dict(sorted(statuses.items()))}; slowest:",
        *(f"\n  {a[1]} s {a[0]} {a[2]} {a[3].strip()[:120]}" for a in slowest),
    )
    assert server_errors == 0, f"{server_errors} responses were 5xx:\n{_failures(done.stdout)}"
    assert done.returncode == 0, (
        f"schemathesis found mismatches:\n{_failures(done.stdout)}{done.stderr[-2000:]}"
    )
    assert requests_made > 500, f"schemathesis made only {requests_made} requests"
