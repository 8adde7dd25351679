"""The rest of the ``az ml run`` shape (issue 8, item 6) and errors a person can act on
(item 7): run metrics/files/download/tag/untag, experiment show, user create, the /api/v1/
index, and errors that name the option typed and the next step."""

import io
import json
import sys

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from runs.sdk import Experiment, Workspace
from tests.conftest import PASSWORD, run_cli

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cli(sdk_server, monkeypatch, capsys):
    """``cli(*args)`` → (exit status, parsed JSON or text, stderr), signed in by ``login``."""
    for name in ("RUNSTUDIO_TOKEN", "RUNSTUDIO_WORKSPACE", "RUNSTUDIO_URL"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("RUNSTUDIO_PASSWORD", PASSWORD)

    def run(*args: str):
        return run_cli(capsys, *args)

    status, _, err = run("login", "--url", sdk_server.url, "--username", "carl")
    assert status == 0, err
    status, _, err = run("folder", "attach", "-w", "lab")
    assert status == 0, err
    return run


@pytest.fixture
def finished_run(cli, tmp_path):
    run = Experiment(Workspace.from_config(), "cli-more").start_logging()
    for i in range(5):
        run.log("loss", 1.0 / (i + 1), step=i)
    run.log("message", "hello")
    run.log_list("lists", [1, 2])
    run.log_row("table", x=1, y=2)
    (tmp_path / "driver.txt").write_text("line one\n")
    (tmp_path / "model.bin").write_bytes(b"\x00\x01weights")
    run.upload_file("logs/70_driver_log.txt", tmp_path / "driver.txt")
    run.upload_file("outputs/model.bin", tmp_path / "model.bin")
    run.complete()
    return run


def test_run_metrics_prints_what_get_metrics_returns(cli, finished_run):
    status, metrics, err = cli("run", "metrics", "-r", finished_run.id)
    assert status == 0, err
    assert metrics == finished_run.get_metrics()
    assert metrics["loss"] == [1.0, 0.5, 1 / 3, 0.25, 0.2] and metrics["table"] == {
        "x": [1],
        "y": [2],
    }
    status, only, _ = cli("run", "metrics", "-r", finished_run.id, "--name", "message")
    assert only == {"message": ["hello"]}


def test_run_files_lists_the_tree_and_filters_by_prefix(cli, finished_run):
    status, files, _ = cli("run", "files", "-r", finished_run.id, "--query", "[].path")
    assert status == 0 and sorted(files) == ["logs/70_driver_log.txt", "outputs/model.bin"]
    status, logs, _ = cli("run", "files", "-r", finished_run.id, "--prefix", "logs/")
    assert [f["path"] for f in logs] == ["logs/70_driver_log.txt"] and logs[0]["size"] == 9


def test_run_download_writes_the_tree_and_download_logs_only_the_logs(cli, finished_run, tmp_path):
    everything, logs = tmp_path / "all", tmp_path / "logs-only"
    status, out, err = cli("run", "download", "-r", finished_run.id, "-d", str(everything))
    assert status == 0, err
    assert (everything / "outputs" / "model.bin").read_bytes() == b"\x00\x01weights"
    assert (everything / "logs" / "70_driver_log.txt").read_text() == "line one\n"
    assert len(out["files"]) == 2

    status, out, err = cli("run", "download-logs", "-r", finished_run.id, "-d", str(logs))
    assert status == 0, err
    assert [p.relative_to(logs).as_posix() for p in logs.rglob("*") if p.is_file()] == [
        "logs/70_driver_log.txt"
    ]

    status, _, err = cli("run", "download", "-r", finished_run.id, "--prefix", "nothing/")
    assert status == 1 and "--prefix 'nothing/'" in err and "runstudio run files" in err


def test_run_tag_and_untag(cli, finished_run):
    status, tags, _ = cli("run", "tag", "-r", finished_run.id, "quality=good", "reviewed")
    assert status == 0 and tags == {"quality": "good", "reviewed": None}
    status, tags, _ = cli("run", "untag", "-r", finished_run.id, "reviewed")
    assert status == 0 and tags == {"quality": "good"}
    assert finished_run.get_tags() == {"quality": "good"}


def test_experiment_show_and_an_unknown_experiment_is_an_error_naming_it(cli, finished_run):
    status, shown, _ = cli("experiment", "show", "-e", "cli-more")
    assert status == 0 and shown["name"] == "cli-more" and shown["run_count"] == 1

    for args in (("experiment", "show", "-e", "nope"), ("run", "list", "-e", "nope")):
        status, out, err = cli(*args)
        assert status == 1 and out == "", args
        assert "--experiment-name" in err and "'nope'" in err, err
        assert "runstudio experiment list -w lab" in err


def test_a_bad_filter_names_the_option_typed_not_the_servers_parameter(cli, finished_run):
    status, _, err = cli("run", "list", "--filter", "tags.quality = ")
    assert status == 1
    assert err.startswith("runstudio: error: --filter:"), err
    assert "column" in err and " q:" not in err and "(q)" not in err


def test_a_refusal_says_what_to_do_next(cli, cast, finished_run, sdk_server, monkeypatch):
    monkeypatch.setenv("RUNSTUDIO_TOKEN", cast.reader.token)
    status, _, err = cli("run", "tag", "-r", finished_run.id, "x=y")
    assert status == 1 and "contributor role" in err
    monkeypatch.setenv("RUNSTUDIO_TOKEN", "rs_not-a-token")
    status, _, err = cli("run", "show", "-r", finished_run.id)
    assert status == 1 and "runstudio login" in err


def test_the_api_root_is_an_index_pointing_to_the_schema(sdk_server):
    answer = requests.get(f"{sdk_server.url}/api/v1/", timeout=10)
    assert answer.status_code == 200
    index = answer.json()
    assert index["schema"] == f"{sdk_server.url}/api/schema/"
    assert index["authentication"]["token"] == f"{sdk_server.url}/api/v1/auth/token"
    assert "docs" in index
    # The schema it points to is the real one (for a signed-in caller).
    schema = requests.get(
        index["schema"],
        headers={"Authorization": f"Token {sdk_server.token}", "Accept": "application/json"},
        timeout=10,
    )
    assert schema.status_code == 200 and "openapi" in schema.json()


# --- user create: the management command the CLI runs (the CLI's own run is in
# tests/test_sdk_spool.py, from a folder outside the repository) ---------------------------------


def _create(monkeypatch, *args: str, password: str = "a long enough pass phrase"):
    monkeypatch.setattr(sys, "stdin", io.StringIO(password + "\n"))
    out = io.StringIO()
    call_command("runstudio_user", "create", *args, "--password-stdin", stdout=out)
    return json.loads(out.getvalue())


def test_user_create_makes_a_user_who_can_sign_in_and_a_superuser_on_request(monkeypatch):
    made = _create(monkeypatch, "--username", "newcomer")
    assert made["username"] == "newcomer" and made["superuser"] is False
    assert "runstudio login" in made["next"]
    user = get_user_model().objects.get(username="newcomer")
    assert user.check_password("a long enough pass phrase") and not user.is_staff

    boss = _create(monkeypatch, "--username", "boss", "--superuser")
    assert boss["superuser"] is True
    assert get_user_model().objects.get(username="boss").is_staff


def test_user_create_refuses_a_taken_name_and_a_weak_password_saying_why(monkeypatch, cast):
    with pytest.raises(CommandError, match="exists already.*changepassword carl"):
        _create(monkeypatch, "--username", "carl")
    with pytest.raises(CommandError, match="password: "):
        _create(monkeypatch, "--username", "weak", password="1234")
    assert not get_user_model().objects.filter(username="weak").exists()


def test_the_sdk_without_a_token_says_how_to_sign_in(sdk_server, monkeypatch):
    from runs.sdk import AuthError

    monkeypatch.delenv("RUNSTUDIO_TOKEN")
    with pytest.raises(AuthError) as caught:
        Workspace.get("lab")
    assert f"runstudio login --url {sdk_server.url} --username NAME" in str(caught.value)


def test_user_create_where_there_is_no_database_says_which_setting_to_fix(tmp_path):
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNSTUDIO_", "DATABASE_"))}
    env["RUNSTUDIO_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-m", "runs.sdk.cli", "user", "create", "-u", "bob", "--password-stdin"],
        input="a long enough pass phrase\n",
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("runstudio: error: no Runstudio database at ")
    assert "RUNSTUDIO_DATA_DIR" in line
    assert not (tmp_path / "data" / "db.sqlite3").exists()  # no empty database left behind


def test_user_create_from_another_folder_finds_the_database_the_last_serve_used(tmp_path):
    """`runstudio serve` in one folder, `runstudio user create` in another: the second finds the
    first's ./runstudio-data through the record serve leaves in RUNSTUDIO_HOME."""
    import os
    import sqlite3
    import subprocess

    from runs.sdk import cli

    served, elsewhere, home = tmp_path / "served", tmp_path / "elsewhere", tmp_path / "home"
    for folder in (served, elsewhere):
        folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNSTUDIO_", "DATABASE_"))}
    env["RUNSTUDIO_HOME"] = str(home)
    data = served / "runstudio-data"
    migrate = [sys.executable, "-m", "django", "migrate", "-v0"]
    subprocess.run(
        migrate,
        env={**env, "RUNSTUDIO_DATA_DIR": str(data), "DJANGO_SETTINGS_MODULE": "studio.settings"},
        check=True,
        timeout=120,
    )
    os.environ["RUNSTUDIO_HOME"] = str(home)
    try:
        cli._record_served_data_dir({"RUNSTUDIO_DATA_DIR": str(data)})  # what serve does
    finally:
        del os.environ["RUNSTUDIO_HOME"]

    done = subprocess.run(
        [sys.executable, "-m", "runs.sdk.cli", "user", "create", "-u", "bob", "--password-stdin"],
        input="a long enough pass phrase\n",
        env=env,
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    with sqlite3.connect(data / "db.sqlite3") as db:
        assert db.execute("select count(*) from auth_user where username = 'bob'").fetchone() == (
            1,
        )
    assert not (elsewhere / "runstudio-data").exists()
