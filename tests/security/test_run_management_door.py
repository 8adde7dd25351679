"""Attacks on the run management door (POST /api/v1/workspaces/{ws}/runs/manage and the
studio's /w/<ws>/runs-manage/): another workspace's runs, a script's run-scoped token, a
forged cross-site form, an open redirect, oversized or malformed input. Nothing may change."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from runs import services
from runs.models import Run, RunActivity

pytestmark = pytest.mark.django_db

MANAGE = "/api/v1/workspaces/lab/runs/manage"


def untouched() -> bool:
    return (
        not Run.objects.filter(archived_at__isnull=False).exists()
        and not RunActivity.objects.exists()
    )


@pytest.fixture
def theirs(cast):
    ws = cast.outsider.user.workspaces.get(name="elsewhere")
    exp, _ = services.experiment_get_or_create(workspace=ws, name="secret")
    return services.run_create(
        experiment=exp, spec=services.RunSpec(), submitter=cast.outsider.user
    )


def test_a_member_cannot_reach_another_workspaces_runs_through_their_own(cast, make_run, theirs):
    mine = make_run("x")
    for action in ("archive", "delete", "tag"):
        member = cast.owner if action == "delete" else cast.contributor
        body = {"action": action, "runs": [mine.run_id, theirs.run_id], "tags": {"k": "v"}}
        response = member.client.post(MANAGE, body, format="json")
        assert response.status_code == 404
    assert Run.objects.filter(pk=theirs.pk).exists() and untouched()


def test_an_outsider_gets_the_same_404_as_for_a_workspace_that_does_not_exist(cast, make_run):
    run = make_run("x")
    body = {"action": "archive", "runs": [run.run_id]}
    real = cast.outsider.client.post(MANAGE, body, format="json")
    missing = cast.outsider.client.post(
        "/api/v1/workspaces/no-such-ws/runs/manage", body, format="json"
    )
    assert real.status_code == missing.status_code == 404
    assert real.json()["error"]["message"].replace("lab", "W") == missing.json()["error"][
        "message"
    ].replace("no-such-ws", "W")
    assert untouched()


def test_a_scripts_run_scoped_token_cannot_manage_runs(cast, make_run):
    run = make_run("x")
    _, key = services.token_create(user=cast.owner.user, name="script", run=run)
    script = APIClient()
    script.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    for action in ("archive", "delete"):
        response = script.post(MANAGE, {"action": action, "runs": [run.run_id]}, format="json")
        assert response.status_code == 404
    assert Run.objects.filter(pk=run.pk).exists() and untouched()


def test_a_cross_site_form_without_the_csrf_token_changes_nothing(cast, make_run):
    run = make_run("x")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(cast.owner.user)
    response = browser.post("/w/lab/runs-manage/", {"action": "delete", "run": run.run_id})
    assert response.status_code == 403
    assert Run.objects.filter(pk=run.pk).exists() and untouched()


def test_next_never_redirects_off_the_site(cast, make_run):
    run = make_run("x")
    browser = Client()
    browser.force_login(cast.contributor.user)
    for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        response = browser.post(
            "/w/lab/runs-manage/", {"action": "tag", "tags": "k", "run": run.run_id, "next": target}
        )
        assert response.status_code == 302
        assert response["Location"] == "/w/lab/runs/"


@pytest.mark.parametrize(
    "runs",
    [["a\x00b"], ["x" * 256], [{"run": 1}], list(map(str, range(1001))), None],
)
def test_malformed_run_lists_are_a_400_naming_runs(cast, runs):
    response = cast.contributor.client.post(
        MANAGE, {"action": "archive", "runs": runs}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "runs"


def test_a_huge_bulk_tag_is_refused_before_writing(cast, make_run):
    runs = [make_run("x").run_id for _ in range(11)]
    tags = {f"k{i}": "v" for i in range(1000)}
    response = cast.contributor.client.post(
        MANAGE, {"action": "tag", "runs": runs, "tags": tags}, format="json"
    )
    assert response.status_code == 400 and response.json()["error"]["field"] == "tags"
    assert untouched()
