"""Run management through the REST API with the role cast: archive (hidden from lists until
restored, listed with archived=1), restore, delete for good (files too), bulk tag / untag /
cancel; contributors archive and tag, owners purge; every action recorded."""

import io

import pytest

from runs import services
from runs.models import CustomView, Run, RunActivity, RunStatus, RunTag

pytestmark = pytest.mark.django_db

MANAGE = "/api/v1/workspaces/lab/runs/manage"


def listed(client, query: str = "") -> list[str]:
    response = client.get(f"/api/v1/workspaces/lab/runs?{query}")
    assert response.status_code == 200, response.content
    return [r["run_id"] for r in response.json()["results"]]


def manage(member, action: str, runs: list, **extra):
    return member.client.post(MANAGE, {"action": action, "runs": runs, **extra}, format="json")


@pytest.fixture
def sweep(make_run):
    parent = make_run("sweep", display_name="parent")
    children = [make_run("sweep", parent=parent, display_name=f"child-{i}") for i in range(2)]
    other = make_run("other", display_name="other")
    return parent, children, other


def test_a_contributor_archives_a_run_with_its_children_and_lists_hide_them(cast, sweep):
    parent, children, other = sweep
    response = manage(cast.contributor, "archive", [parent.run_id])
    assert response.status_code == 200, response.content
    assert response.json() == {
        "action": "archive",
        "runs": [parent.run_id],
        "affected": 3,
        "skipped": [],
    }
    assert listed(cast.reader.client, "top_level=0") == [other.run_id]
    archived = listed(cast.reader.client, "top_level=0&archived=1")
    assert sorted(archived) == sorted([parent.run_id, *(c.run_id for c in children)])
    assert len(listed(cast.reader.client, "top_level=0&archived=all")) == 4
    activity = RunActivity.objects.get()
    assert activity.detail == {"with_descendants": 2}
    assert (activity.run_id, activity.action, activity.by) == (
        parent.run_id,
        "archive",
        cast.contributor.user,
    )


def test_each_archived_run_records_its_own_children(cast, sweep):
    parent, children, other = sweep
    manage(cast.contributor, "archive", [other.run_id, parent.run_id, children[0].run_id])
    detail = dict(RunActivity.objects.values_list("run_id", "detail__with_descendants"))
    assert detail == {other.run_id: 0, parent.run_id: 1, children[0].run_id: 0}
    assert Run.objects.filter(archived_at__isnull=False).count() == 4


def test_restore_brings_back_what_was_archived_with_the_run_only(cast, sweep):
    parent, children, other = sweep
    manage(cast.contributor, "archive", [children[0].run_id])
    manage(cast.contributor, "archive", [parent.run_id])
    response = manage(cast.contributor, "restore", [parent.run_id])
    assert response.json()["affected"] == 2
    live = listed(cast.reader.client, "top_level=0")
    assert children[1].run_id in live and parent.run_id in live
    assert children[0].run_id not in live  # archived on its own before, stays archived


def test_a_saved_view_leaves_archived_runs_out(cast, sweep, client):
    parent, _, other = sweep
    view = CustomView.objects.create(
        workspace=cast.workspace, owner=cast.reader.user, name="all", shared=False, params={}
    )
    manage(cast.contributor, "archive", [other.run_id])
    client.force_login(cast.reader.user)
    page = client.get(f"/w/lab/views/{view.pk}/")
    shown = [row[0].run_id for row in page.context["rows"]]
    assert shown == [parent.run_id]
    archived = client.get("/w/lab/archived/")
    assert [row[0].run_id for row in archived.context["rows"]] == [other.run_id]


def test_only_an_owner_deletes_for_good_and_the_files_go(cast, sweep, tmp_path):
    parent, children, other = sweep
    services.run_file_write(run=children[0], path="logs/a.log", stream=io.BytesIO(b"hello\n"))
    on_disk = tmp_path / "files" / "runs" / children[0].run_id / "logs" / "a.log"
    assert on_disk.read_bytes() == b"hello\n"
    for member in (cast.contributor, cast.reader):
        response = manage(member, "delete", [parent.run_id])
        assert response.status_code == 403, response.content
        assert "owner" in response.json()["error"]["message"]
    assert Run.objects.count() == 4
    response = manage(cast.owner, "delete", [parent.run_id, children[0].run_id])
    assert response.status_code == 200, response.content
    assert response.json()["affected"] == 3
    assert list(Run.objects.values_list("run_id", flat=True)) == [other.run_id]
    assert not on_disk.exists()
    assert not (tmp_path / "files" / "runs" / children[0].run_id).exists()
    # The record outlives the run.
    assert RunActivity.objects.filter(action="delete").count() == 1


def test_readers_and_outsiders_change_nothing(cast, sweep):
    parent, _, _ = sweep
    for action in ("archive", "restore", "tag", "untag", "cancel", "delete"):
        extra = {"tags": {"a": "b"}} if action == "tag" else {"keys": ["a"]}
        assert manage(cast.reader, action, [parent.run_id], **extra).status_code == 403
        response = manage(cast.outsider, action, [parent.run_id], **extra)
        assert response.status_code == 404
    assert cast.anonymous.post(MANAGE, {}, format="json").status_code == 401
    assert not Run.objects.filter(archived_at__isnull=False).exists()
    assert not RunActivity.objects.exists()


def test_a_run_of_another_workspace_is_the_same_404_and_nothing_changes(cast, sweep):
    parent, _, _ = sweep
    exp, _ = services.experiment_get_or_create(
        workspace=cast.outsider.user.workspaces.get(name="elsewhere"), name="x"
    )
    theirs = services.run_create(
        experiment=exp, spec=services.RunSpec(), submitter=cast.outsider.user
    )
    response = manage(cast.contributor, "archive", [parent.run_id, theirs.run_id])
    assert response.status_code == 404
    missing = manage(cast.contributor, "archive", [parent.run_id, "no-such-run"])
    assert missing.json()["error"]["message"].replace("no-such-run", "X") == response.json()[
        "error"
    ]["message"].replace(theirs.run_id, "X")
    assert not Run.objects.filter(archived_at__isnull=False).exists()


def test_bulk_tag_untag_and_cancel(cast, sweep):
    parent, children, other = sweep
    services.run_set_status(run=other, status=RunStatus.COMPLETED)
    ids = [parent.run_id, children[0].run_id]
    response = manage(cast.contributor, "tag", ids, tags={"stage": "review", "keep": None})
    assert response.status_code == 200, response.content
    assert RunTag.objects.filter(key="stage", value="review").count() == 2
    assert RunTag.objects.filter(key="keep", value=None).count() == 2
    response = manage(cast.contributor, "untag", ids, keys=["stage"])
    assert response.status_code == 200
    assert not RunTag.objects.filter(key="stage").exists()
    response = manage(cast.contributor, "cancel", [*ids, other.run_id])
    assert response.json()["skipped"] == [other.run_id]
    statuses = dict(Run.objects.values_list("run_id", "status"))
    assert statuses[parent.run_id] == statuses[children[0].run_id] == RunStatus.CANCELED
    assert statuses[other.run_id] == RunStatus.COMPLETED
    actions = sorted(RunActivity.objects.values_list("action", flat=True))
    assert actions == ["cancel", "cancel", "tag", "tag", "untag", "untag"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "explode", "runs": ["x"]}, "action"),
        ({"action": "archive", "runs": []}, "runs"),
        ({"action": "archive", "runs": "abc"}, "runs"),
        ({"action": "archive", "runs": [1]}, "runs"),
        ({"action": "archive", "runs": ["x"] * 1001}, "runs"),
        ({"action": "archive", "runs": ["x"], "extra": 1}, "extra"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(cast, body, field):
    response = cast.contributor.client.post(MANAGE, body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field


def test_bad_tags_are_a_400_naming_the_field(cast, sweep):
    parent, _, _ = sweep
    response = manage(cast.contributor, "tag", [parent.run_id], tags={"": "x"})
    assert response.status_code == 400 and response.json()["error"]["field"].startswith("tags")
    response = manage(cast.contributor, "tag", [parent.run_id])
    assert response.status_code == 400 and response.json()["error"]["field"] == "tags"
    response = manage(cast.contributor, "untag", [parent.run_id], keys="stage")
    assert response.status_code == 400 and response.json()["error"]["field"] == "keys"
    assert not RunActivity.objects.exists()


def test_deleting_a_run_a_worker_executes_is_a_409_and_nothing_goes(cast, make_run):
    busy = make_run("x", compute_target="local")
    services.run_set_status(run=busy, status=RunStatus.RUNNING)
    idle = make_run("x")
    response = manage(cast.owner, "delete", [idle.run_id, busy.run_id])
    assert response.status_code == 409
    assert Run.objects.count() == 2


def test_the_experiments_page_counts_no_archived_runs(cast, sweep, client):
    parent, _, other = sweep
    manage(cast.contributor, "archive", [other.run_id])
    client.force_login(cast.reader.user)
    experiments = {e.name: e.run_count for e in client.get("/w/lab/").context["experiments"]}
    assert experiments == {"sweep": 3, "other": 0}


def test_the_child_runs_tab_hides_archived_children_unless_asked(cast, sweep, client):
    parent, children, _ = sweep
    manage(cast.contributor, "archive", [children[0].run_id])
    client.force_login(cast.reader.user)
    page = client.get(f"/w/lab/runs/{parent.run_id}/?tab=children")
    assert [row["run"].run_id for row in page.context["rows"]] == [children[1].run_id]
    assert "1 archived child run hidden" in page.content.decode()
    everything = client.get(f"/w/lab/runs/{parent.run_id}/?tab=children&archived=1")
    assert len(everything.context["rows"]) == 2
    chart = client.get(f"/charts/children/?run={parent.run_id}&metric=loss")
    assert chart.status_code == 200
