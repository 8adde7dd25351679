"""The ``runstudio`` CLI against a live server: login, workspaces, folder attach, and the
reference document's ``az ml run`` commands, JMESPath queries included."""

import json
import os
import stat
import subprocess
import sys

import pytest

from runs.sdk import Experiment, Workspace
from tests.conftest import PASSWORD, run_cli
from tests.processes import free_port, wait_until_served

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cli(sdk_server, monkeypatch, capsys):
    """``cli(*args)`` → (exit status, parsed JSON or text, stderr); signed in by ``login``
    rather than by RUNSTUDIO_TOKEN, and with no workspace in the environment."""
    monkeypatch.delenv("RUNSTUDIO_TOKEN")
    monkeypatch.delenv("RUNSTUDIO_WORKSPACE")
    monkeypatch.delenv("RUNSTUDIO_URL")

    def run(*args: str):
        return run_cli(capsys, *args)

    return run


@pytest.fixture
def signed_in(cli, sdk_server, cast, monkeypatch):
    monkeypatch.setenv("RUNSTUDIO_PASSWORD", PASSWORD)
    status, out, err = cli("login", "--url", sdk_server.url, "--username", "carl")
    assert status == 0, err
    return out


@pytest.fixture
def tagged_runs(signed_in, cli, sdk_server):
    """Three runs in experiment "experiment" of workspace "lab", as in the reference."""
    cli("folder", "attach", "-w", "lab")
    exp = Experiment(workspace=Workspace.from_config(), name="experiment")
    fantastic = exp.start_logging()
    fantastic.add_properties({"author": "azureml-user"})
    fantastic.tag("quality", "fantastic run")
    look = exp.start_logging()
    look.add_properties({"author": "azureml-user"})
    look.tag("worth another look")
    plain = exp.start_logging()
    plain.add_properties({"author": "someone-else"})
    plain.tag("quality", "fantastic run")
    for run in (fantastic, look, plain):
        run.complete()
    return fantastic, look, plain


def test_login_stores_a_private_token_and_prints_no_secret(signed_in, sdk_server):
    path = os.path.join(sdk_server.env["RUNSTUDIO_HOME"], "credentials.json")
    stored = json.load(open(path))
    assert stored["default_url"] == sdk_server.url
    assert stored["tokens"][sdk_server.url].startswith("rs_")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stored["tokens"][sdk_server.url] not in json.dumps(signed_in)
    assert signed_in["username"] == "carl"


def test_login_with_a_wrong_password_fails_on_stderr(cli, sdk_server, monkeypatch):
    monkeypatch.setenv("RUNSTUDIO_PASSWORD", "wrong")
    status, out, err = cli("login", "--url", sdk_server.url, "--username", "carl")
    assert status == 1 and out == ""
    assert "Wrong username or password" in err


def test_login_reads_the_password_from_stdin_as_user_create_does(cli, sdk_server, monkeypatch):
    import io

    monkeypatch.setenv("RUNSTUDIO_PASSWORD", "wrong")  # the flag wins over the variable
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    status, out, err = cli("login", "--url", sdk_server.url, "-u", "carl", "--password-stdin")
    assert status == 0, err
    assert out["username"] == "carl" and PASSWORD not in json.dumps(out)


def test_workspace_create_and_list(signed_in, cli):
    status, created, _ = cli("workspace", "create", "cli-made")
    assert status == 0 and created["name"] == "cli-made" and created["role"] == "owner"
    status, listed, _ = cli("workspace", "list")
    assert {w["name"] for w in listed} >= {"lab", "cli-made"}
    status, _, err = cli("workspace", "create", "cli-made")
    assert status == 1 and err.startswith("runstudio: error:")
    status, text, _ = cli("workspace", "list", "-o", "table")
    assert text.splitlines()[0].split()[:2] == ["Name", "Role"]


def test_folder_attach_writes_the_config_that_from_config_reads(signed_in, cli, sdk_server):
    status, out, _ = cli("folder", "attach", "-w", "lab")
    assert status == 0
    config = json.load(open(".runstudio/config.json"))
    assert config == {"url": sdk_server.url, "workspace": "lab"}
    assert Workspace.from_config().name == "lab"
    status, _, err = cli("folder", "attach", "-w", "not-mine")
    assert status == 1 and "not-mine" in err


def test_experiment_list_uses_the_attached_workspace(tagged_runs, cli):
    status, experiments, _ = cli("experiment", "list")
    assert status == 0
    assert [e["name"] for e in experiments] == ["experiment"]


def test_run_list_has_tags_and_properties_for_jmespath(tagged_runs, cli):
    fantastic, look, plain = tagged_runs
    status, runs, _ = cli("run", "list", "--experiment-name", "experiment")
    assert status == 0
    assert [r["run_id"] for r in runs] == [plain.id, look.id, fantastic.id]  # newest first
    assert runs[2]["tags"] == {"quality": "fantastic run"}
    assert runs[2]["properties"] == {"author": "azureml-user"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("[?properties.author=='azureml-user']", ["look", "fantastic"]),
        ("[?tags.keys(@)[?starts_with(@, 'worth another look')]]", ["look"]),
        ("[?properties.author=='azureml-user' && tags.quality=='fantastic run']", ["fantastic"]),
    ],
)
def test_the_reference_queries_select_the_right_runs(tagged_runs, cli, query, expected):
    by_name = dict(zip(["fantastic", "look", "plain"], tagged_runs, strict=True))
    want = [by_name[n].id for n in expected]
    status, runs, _ = cli("run", "list", "--experiment-name", "experiment", "--query", query)
    assert status == 0 and [r["run_id"] for r in runs] == want
    # As printed in the reference, the query may also follow the command bare.
    status, runs, _ = cli("run", "list", "--experiment-name", "experiment", query)
    assert status == 0 and [r["run_id"] for r in runs] == want


def test_run_list_filters_on_the_server_and_projects_with_query(tagged_runs, cli):
    fantastic, look, plain = tagged_runs
    status, ids, _ = cli(
        "run", "list", "-e", "experiment", "--tag", "quality=fantastic run",
        "--property", "author=azureml-user", "--query", "[].run_id",
    )  # fmt: skip
    assert ids == [fantastic.id]
    status, ids, _ = cli(
        "run", "list", "-e", "experiment", "--status", "Running", "--query", "[].run_id"
    )
    assert ids == []
    status, _, err = cli("run", "list", "-e", "experiment", "--query", "[?bad")
    assert status == 2 and "invalid --query" in err


def test_run_list_filter_takes_the_search_language_with_or_and_combines_with_query(
    tagged_runs, cli
):
    fantastic, look, plain = tagged_runs
    search = f"properties.author = 'someone-else' OR run_id IN ('{look.id}', 'nope')"
    status, ids, err = cli(
        "run", "list", "-e", "experiment", "--filter", search, "--query", "sort([].run_id)",
    )  # fmt: skip
    assert status == 0, err
    assert ids == sorted([look.id, plain.id])

    status, _, err = cli("run", "list", "-e", "experiment", "--filter", "tags.quality = ")
    assert status == 1
    assert "column" in err and "q" in err


def test_run_show(tagged_runs, cli):
    fantastic, _, _ = tagged_runs
    status, shown, _ = cli("run", "show", "-r", fantastic.id)
    assert status == 0
    assert shown["run_id"] == fantastic.id and shown["status"] == "Completed"
    status, text, _ = cli("run", "show", "-r", fantastic.id, "-o", "table")
    assert "run_id" in text and fantastic.id in text


def test_run_update_adds_and_removes_tags(tagged_runs, cli):
    _, look, _ = tagged_runs
    status, updated, _ = cli(
        "run", "update", "-r", look.id, "--add-tag", "quality=fantastic run", "--add-tag", "bare"
    )
    assert status == 0
    assert updated["tags"] == {"worth another look": None, "quality": "fantastic run", "bare": None}
    status, updated, _ = cli("run", "update", "-r", look.id, "--remove-tag", "worth another look")
    assert updated["tags"] == {"quality": "fantastic run", "bare": None}
    assert look.get_tags() == {"quality": "fantastic run", "bare": None}
    status, _, err = cli("run", "update", "-r", look.id)
    assert status == 2 and "--add-tag" in err


def test_run_cancel_cancels_a_running_run_and_is_final(signed_in, cli, sdk_server):
    cli("folder", "attach", "-w", "lab")
    run = Experiment(Workspace.from_config(), "experiment").start_logging()
    status, out, _ = cli("run", "cancel", "-r", run.id, "-w", "lab", "-e", "experiment")
    assert status == 0 and out["status"] == "Canceled"
    assert run.get_status() == "Canceled"
    status, out, _ = cli("run", "cancel", "-r", run.id)  # again: a no-op
    assert status == 0 and out["status"] == "Canceled"
    finished = Experiment(Workspace.from_config(), "experiment").start_logging()
    finished.complete()
    status, _, err = cli("run", "cancel", "-r", finished.id)
    assert status == 1 and "Completed" in err
    assert finished.get_status() == "Completed"


def test_an_owner_gets_a_worker_key_and_a_contributor_is_told_no(
    cli, sdk_server, cast, monkeypatch
):
    from runs import selectors, services

    target = services.compute_target_create(workspace=cast.workspace, name="gpu-a")
    monkeypatch.setenv("RUNSTUDIO_PASSWORD", PASSWORD)
    cli("login", "--url", sdk_server.url, "--username", "carl")
    status, _, err = cli("compute", "worker-key", "-w", "lab", "-c", "gpu-a")
    assert status == 1 and "needs the owner role" in err

    cli("login", "--url", sdk_server.url, "--username", "olivia")
    status, out, err = cli("compute", "worker-key", "-w", "lab", "-c", "gpu-a")

    assert status == 0, err
    assert out["worker_command"] == (
        f"runstudio worker -w lab -c gpu-a --key {out['worker_key']} --server-url {sdk_server.url}"
    )
    assert selectors.compute_target_for_worker(workspace="lab", name="gpu-a", key=out["worker_key"])
    status, listed, _ = cli("compute", "list", "-w", "lab", "--query", "[].queue_name")
    assert sorted(listed) == sorted(["local", f"t{target.pk}"])


def test_an_unknown_run_is_an_error_on_stderr(signed_in, cli):
    status, out, err = cli("run", "show", "-r", "no-such-run")
    assert status == 1 and out == ""
    assert "no-such-run" in err


def test_the_console_script_exits_non_zero_with_the_message_on_stderr(sdk_server, tmp_path):
    runstudio = os.path.join(os.path.dirname(sys.executable), "runstudio")
    done = subprocess.run(
        [runstudio, "run", "show", "-r", "no-such-run"],
        env={**sdk_server.env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert "no-such-run" in done.stderr
    done = subprocess.run([runstudio, "run", "show"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "-r" in done.stderr


def test_serve_migrates_seeds_the_demo_and_serves_the_api(tmp_path):
    port = free_port()
    runstudio = os.path.join(os.path.dirname(sys.executable), "runstudio")
    env = {
        "PATH": "/usr/bin:/bin",
        "RUNSTUDIO_DATA_DIR": str(tmp_path / "data"),
        "RUNSTUDIO_HOME": str(tmp_path / "home"),
    }
    server = subprocess.Popen(
        [runstudio, "serve", "--port", str(port), "--workers", "1", "--demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_served(url, server, timeout=90, interval=0.3)  # it boots with workers
        env["RUNSTUDIO_PASSWORD"] = "demo-password"
        login = subprocess.run(
            [runstudio, "login", "--url", url, "--username", "demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert login.returncode == 0, login.stderr
        listed = subprocess.run(
            [runstudio, "workspace", "list", "--query", "[].name"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "demo" in json.loads(listed.stdout)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert f"Runstudio is serving at {url}/" in output


def test_an_owner_invites_with_the_cli_and_the_invitee_joins_with_it(signed_in, cli, sdk_server):
    """Carl owns "carls"; Rita shares "lab" with him, so she is added at once; Oscar shares
    nothing with him, so he gets an invitation key, which he accepts with `workspace join`."""
    cli("workspace", "create", "carls")
    status, rita, _ = cli("workspace", "member-add", "-w", "carls", "rita", "--role", "contributor")
    assert status == 0 and rita == {"username": "rita", "role": "contributor"}
    status, invited, _ = cli("workspace", "member-add", "-w", "carls", "oscar")
    assert status == 0 and invited["username"] == "oscar" and invited["role"] == "reader"

    status, _, err = cli("login", "--url", sdk_server.url, "--username", "oscar")
    assert status == 0, err
    status, joined, _ = cli("workspace", "join", invited["invitation"])
    again_status, _, again_err = cli("workspace", "join", invited["invitation"])

    assert status == 0 and joined["name"] == "carls" and joined["role"] == "reader"
    assert again_status == 1 and again_err.startswith("runstudio: error:")
