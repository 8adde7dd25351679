"""Shared fixtures: a workspace with an owner, a contributor and a reader, plus an outsider
who belongs to another workspace; each with an API client signed in by token."""

import json
import os
from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

# pytest-django reads the settings before this file runs, so RUNSTUDIO_DATA_DIR cannot be set
# here: scripts/test points it at a temporary folder; a bare `pytest` uses ./runstudio-data
# (git-ignored) for the secret key only — run files go to each test's tmp_path (below) and
# the test database is Django's own.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

PASSWORD = "correct horse battery staple"


def run_cli(capsys, *args: str) -> tuple[int, object, str]:
    """Runs the `runstudio` CLI in this process: (exit status, parsed JSON or text, stderr)."""
    from runs.sdk.cli import main

    capsys.readouterr()
    status = main(list(args))
    out, err = capsys.readouterr()
    try:
        return status, json.loads(out), err
    except ValueError:
        return status, out, err


@pytest.fixture(autouse=True)
def _run_files(settings, tmp_path):
    """Each test writes run files into its own folder."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "files")},
        },
    }


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """One real SeaweedFS S3 server for the whole session (tests/seaweed.py; ~5 s to start),
    with a bucket `runstudio-test`; stopped by its PID at the end."""
    from tests.seaweed import start_seaweedfs

    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    server.make_bucket("runstudio-test")
    yield server
    server.stop()


def use_s3_files(settings, server, prefix: str) -> None:
    """Points the default storage at `server`'s test bucket under `prefix`, as
    RUNSTUDIO_FILES_URL=s3://runstudio-test/<prefix> with the AWS_* variables would."""
    from studio.settings import files_storage

    settings.STORAGES = {
        **settings.STORAGES,
        "default": files_storage(f"s3://runstudio-test/{prefix}", server.env()),
    }
    settings.STORAGES["default"]["OPTIONS"].update(
        access_key=server.access_key, secret_key=server.secret_key
    )


@pytest.fixture(params=["folder", "s3"])
def files_backend(request, settings):
    """Runs the test twice: run files in the local folder, then in a real SeaweedFS bucket
    (each test under its own prefix). Yields the backend's name."""
    if request.param == "s3":
        server = request.getfixturevalue("seaweedfs")
        use_s3_files(settings, server, f"t/{os.getpid()}-{id(request)}-{request.node.name}")
    yield request.param


@dataclass
class Member:
    user: object
    token: str
    client: APIClient


@dataclass
class Cast:
    workspace: object
    owner: Member
    contributor: Member
    reader: Member
    outsider: Member
    anonymous: APIClient

    def by_role(self, role: str) -> Member:
        return getattr(self, role)


def _member(django_user_model, username: str) -> Member:
    from runs import services

    user = django_user_model.objects.create_user(username, password=PASSWORD)
    _, key = services.token_create(user=user, name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return Member(user=user, token=key, client=client)


@pytest.fixture
def cast(db, django_user_model) -> Cast:
    from runs import services
    from runs.models import Role

    owner = _member(django_user_model, "olivia")
    contributor = _member(django_user_model, "carl")
    reader = _member(django_user_model, "rita")
    outsider = _member(django_user_model, "oscar")
    workspace = services.workspace_create(name="lab", owner=owner.user)
    services.membership_set(workspace=workspace, user=contributor.user, role=Role.CONTRIBUTOR)
    services.membership_set(workspace=workspace, user=reader.user, role=Role.READER)
    services.workspace_create(name="elsewhere", owner=outsider.user)
    return Cast(workspace, owner, contributor, reader, outsider, APIClient())


@pytest.fixture
def make_run(cast):
    """make_run(experiment="exp", **RunSpec fields) → a Run in the cast's workspace."""
    from runs import services
    from runs.services import RunSpec

    def make(experiment: str = "exp", *, parent=None, submitter=None, **spec):
        exp, _ = services.experiment_get_or_create(workspace=cast.workspace, name=experiment)
        return services.run_create(
            experiment=exp,
            spec=RunSpec(**spec),
            submitter=submitter or cast.contributor.user,
            parent=parent,
        )

    return make


# --- the SDK and CLI against a live server (tests/test_sdk_live.py, tests/test_cli.py) -----


@dataclass
class SdkServer:
    url: str
    token: str
    workspace: str
    env: dict


@pytest.fixture
def sdk_server(live_server, cast, monkeypatch, tmp_path) -> SdkServer:
    """A live server, the contributor's token and workspace "lab" in RUNSTUDIO_* variables,
    an empty RUNSTUDIO_HOME and a fresh working folder. Runs the SDK left open are finished
    before the server stops, so no exit hook talks to a dead server."""
    from runs.sdk import run as sdk_run
    from runs.sdk import shutdown

    for name in list(os.environ):
        if name.startswith("RUNSTUDIO_") and name != "RUNSTUDIO_DATA_DIR":
            monkeypatch.delenv(name)
    env = {
        "RUNSTUDIO_URL": live_server.url,
        "RUNSTUDIO_TOKEN": cast.contributor.token,
        "RUNSTUDIO_WORKSPACE": cast.workspace.name,
        "RUNSTUDIO_HOME": str(tmp_path / "home"),
        "RUNSTUDIO_FLUSH_TIMEOUT": "30",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield SdkServer(live_server.url, cast.contributor.token, cast.workspace.name, env)
    for run in list(shutdown.open_runs):
        if run._owned and not run._finished:
            run.complete()
        else:
            run._close_metrics()
    for flusher in list(shutdown.flushers.values()):
        if flusher.buffer:
            flusher.close()
    sdk_run.Run._context_run = None


@pytest.fixture
def door(live_server, cast, monkeypatch):
    """The real MLflow client pointed at workspace "lab"'s MLflow door (tests/test_mlflow_*.py):
    MLFLOW_TRACKING_URI = <live server>/mlflow/lab, the contributor's token."""
    import mlflow

    for name in list(os.environ):
        if name.startswith("MLFLOW_") and name != "MLFLOW_DISABLE_TELEMETRY":
            monkeypatch.delenv(name)
    uri = f"{live_server.url}/mlflow/{cast.workspace.name}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", cast.contributor.token)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.tracking.fluent._active_experiment_id = None
    mlflow.set_tracking_uri(None)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """The cast's users are created per test; the real hasher would spend ~2 s on them."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """On SQLite the test database is a file, not memory, so that the worker processes the
    execution tests start (tests/test_execution.py) open the same database. Settings are read
    before any conftest runs, so this is the hook that can still change the test name."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3") and not database.get("TEST", {}).get("NAME"):
        folder = tmp_path_factory.mktemp("database")
        database.setdefault("TEST", {})["NAME"] = str(folder / "test.sqlite3")


@pytest.fixture(autouse=True)
def _responses_match_the_schema(monkeypatch):
    """Every JSON answer under /api/v1/ that a test gets (test client or live server) must be
    what the served OpenAPI schema documents: no undeclared field, no missing required one
    (tests/conformance.py). Collected during the test, reported when it ends."""
    from django.core.handlers.base import BaseHandler

    from tests.conformance import Recorder

    recorder = Recorder()
    monkeypatch.setattr(BaseHandler, "get_response", recorder.wrap(BaseHandler.get_response))
    yield recorder
    assert not recorder.problems, "Responses off the schema:\n" + "\n".join(recorder.problems)
