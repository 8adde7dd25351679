"""`runstudio run archive|restore|delete -r ID…` against a live server, with the role cast: the
contributor archives and restores, only the owner deletes for good (and must confirm)."""

import pytest

from runs.models import Run, RunActivity
from tests.conftest import run_cli

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cli(sdk_server, monkeypatch, capsys):
    """cli(member, *args) → (exit status, JSON or text, stderr), as that member's token, with
    no workspace configured (the CLI finds it from the first run)."""
    monkeypatch.delenv("RUNSTUDIO_WORKSPACE")

    def run(member, *args: str):
        monkeypatch.setenv("RUNSTUDIO_TOKEN", member.token)
        return run_cli(capsys, *args)

    return run


@pytest.fixture
def runs(make_run):
    parent = make_run("sweep", display_name="parent")
    make_run("sweep", parent=parent, display_name="child")
    other = make_run("other", display_name="other")
    return parent, other


def test_a_contributor_archives_and_restores_several_runs(cli, cast, runs):
    parent, other = runs
    status, out, err = cli(
        cast.contributor, "run", "archive", "-r", parent.run_id, "-r", other.run_id
    )
    assert status == 0, err
    assert out["affected"] == 3 and out["runs"] == [parent.run_id, other.run_id]
    assert Run.objects.filter(archived_at__isnull=False).count() == 3
    status, out, err = cli(cast.contributor, "run", "restore", "-r", other.run_id)
    assert status == 0, err
    assert Run.objects.filter(archived_at__isnull=False).count() == 2
    assert list(RunActivity.objects.order_by("id").values_list("action", flat=True)) == [
        "archive",
        "archive",
        "restore",
    ]


def test_a_reader_cannot_archive(cli, cast, runs):
    parent, _ = runs
    status, _, err = cli(cast.reader, "run", "archive", "-r", parent.run_id)
    assert status != 0
    assert "contributor" in err
    assert not Run.objects.filter(archived_at__isnull=False).exists()


def test_only_an_owner_deletes_and_only_when_confirmed(cli, cast, runs, monkeypatch):
    parent, other = runs
    status, _, err = cli(cast.owner, "run", "delete", "-r", parent.run_id)
    assert status == 2 and "--yes" in err  # not a terminal: no prompt, nothing deleted
    assert Run.objects.count() == 3
    status, _, err = cli(cast.contributor, "run", "delete", "-r", parent.run_id, "--yes")
    assert status != 0 and "owner" in err
    assert Run.objects.count() == 3
    status, out, err = cli(cast.owner, "run", "delete", "-r", parent.run_id, "--yes")
    assert status == 0, err
    assert out["affected"] == 2
    assert list(Run.objects.values_list("run_id", flat=True)) == [other.run_id]


def test_an_unknown_run_is_an_error_and_nothing_changes(cli, cast, runs):
    parent, _ = runs
    status, _, err = cli(
        cast.contributor, "run", "archive", "-w", "lab", "-r", parent.run_id, "-r", "nope"
    )
    assert status != 0 and "nope" in err
    assert not Run.objects.filter(archived_at__isnull=False).exists()
