"""Who may open which studio page: every URL in runs/urls.py, every role.

The page table lists each (method, URL) once with the least role that may use it; the tests walk
it for the owner, the contributor, the reader, the outsider (a member of another workspace) and
an anonymous visitor. A test checks that the table names every route of the `runs` namespace,
so a new page without a row fails.

The rules (docs/architecture.md, "Studio pages: who may open what"): anonymous → the sign-in
page (the two chart endpoints, which scripts call for JSON, → 401 JSON); outsider → the same 404
as for a workspace, run, view, rule or target that does not exist; reader → every read page,
403 on every write, with nothing changed; contributor → the run writes; owner → compute and
alerts too. Saved views are the exception the design chose: any member saves and copies views
(they change no run data), and only a view's own owner changes or deletes it.
"""

from dataclasses import dataclass, field
from io import BytesIO

import pytest
from django.test import Client
from django.urls import URLPattern

from runs import services, urls
from runs.models import (
    AlertRule,
    ComputeTarget,
    CustomView,
    Membership,
    Role,
    Run,
    RunFile,
    RunProperty,
    RunTag,
)
from runs.services import saved_views

try:  # alert rules are moving into runs/services/ (issue 7, "one door")
    from runs.services import alerts
except ImportError:  # pragma: no cover - the older layout
    from runs import alerts

pytestmark = pytest.mark.django_db

READER, CONTRIBUTOR, OWNER = Role.READER, Role.CONTRIBUTOR, Role.OWNER
RANK = {READER: 0, CONTRIBUTOR: 1, OWNER: 2}

WS = "/w/{ws}"
RUN = WS + "/runs/{run}"


@dataclass(frozen=True)
class Page:
    route: str  # the URL name in runs/urls.py
    method: str
    url: str  # formatted with ws=, run=, view=, rule=, target=
    role: str  # the least role that may use it
    data: dict = field(default_factory=dict)
    ok: int = 200  # what a permitted member gets
    json: bool = False  # a JSON endpoint: 401 for anonymous, not the sign-in redirect

    def __str__(self) -> str:
        return f"{self.method} {self.url}"

    def call(self, client: Client, ids: dict):
        url = self.url.format(**ids)
        data = {k: v.format(**ids) if isinstance(v, str) else v for k, v in self.data.items()}
        if self.method == "GET":
            return client.get(url, data)
        return client.post(url, data)


ALERT_FORM = {
    "name": "page rule",
    "statuses": ["Failed"],
    "channel": "email",
    "recipients": "a@example.org",
    "enabled": "on",
}

PAGES = [
    # Read pages: any member.
    Page("workspace", "GET", WS + "/", READER),
    Page("run-list", "GET", WS + "/runs/", READER),
    Page("run-list-csv", "GET", WS + "/runs.csv", READER),
    Page("run-statuses", "GET", WS + "/run-statuses/?run={run}", READER),
    Page("experiment", "GET", WS + "/experiments/exp/", READER),
    Page("view-list", "GET", WS + "/views/", READER),
    Page("view", "GET", WS + "/views/{view}/", READER),
    Page("run-page", "GET", RUN + "/", READER),
    Page("run-file", "GET", RUN + "/files/logs/out.txt", READER),
    Page("run-download-all", "GET", RUN + "/download/", READER),
    Page("compare", "GET", WS + "/compare/?run={run}", READER),
    Page("chart-metric", "GET", "/charts/metric/?run={run}&metric=loss", READER, json=True),
    Page("chart-children", "GET", "/charts/children/?run={run}", READER, json=True),
    Page("compute", "GET", WS + "/compute/", READER),
    Page("compute-live", "GET", WS + "/compute/live/", READER),
    Page("alerts", "GET", WS + "/alerts/", READER),
    Page("archived", "GET", WS + "/archived/", READER),
    # Saved views: any member saves or copies one; only its owner (olivia) changes it.
    Page("view-create", "POST", WS + "/views/new/", READER, {"name": "mine"}, ok=302),
    Page("view-copy", "POST", WS + "/views/{view}/copy/", READER, ok=302),
    Page("view-update", "POST", WS + "/views/{view}/update/", OWNER, {"name": "renamed"}, ok=302),
    Page("view-delete", "POST", WS + "/views/{view}/delete/", OWNER, ok=302),
    # Run writes: contributors.
    Page("run-edit", "POST", RUN + "/edit/", CONTRIBUTOR, {"display_name": "renamed"}, ok=302),
    Page(
        "run-tags",
        "POST",
        RUN + "/tags/",
        CONTRIBUTOR,
        {"action": "set", "key": "k", "value": "v"},
        ok=302,
    ),
    Page("run-cancel", "POST", RUN + "/cancel/", CONTRIBUTOR, ok=302),
    Page("run-preview", "POST", RUN + "/preview/", CONTRIBUTOR, {"description": "**hi**"}),
    # Run management: contributors archive, restore, tag, untag, cancel; owners delete for good.
    Page(
        "run-manage",
        "POST",
        WS + "/runs-manage/",
        CONTRIBUTOR,
        {"action": "archive", "run": "{run}"},
        ok=302,
    ),
    Page(
        "run-manage",
        "POST",
        WS + "/runs-manage/",
        CONTRIBUTOR,
        {"action": "tag", "tags": "k=v", "run": "{run}"},
        ok=302,
    ),
    Page(
        "run-manage",
        "POST",
        WS + "/runs-manage/",
        OWNER,
        {"action": "delete", "run": "{run}"},
        ok=302,
    ),
    # Compute and alerts: owners.
    Page(
        "compute-target-create",
        "POST",
        WS + "/compute/new/",
        OWNER,
        {"name": "gpu", "capacity": "2"},
        ok=302,
    ),
    Page("compute-target", "POST", WS + "/compute/{target}/", OWNER, {"capacity": "3"}, ok=302),
    Page("compute-target-worker-key", "POST", WS + "/compute/{target}/worker-key/", OWNER),
    Page("compute-target-delete", "POST", WS + "/compute/{target}/delete/", OWNER, ok=302),
    Page("alert-edit", "GET", WS + "/alerts/{rule}/", OWNER),
    Page("alert-create", "POST", WS + "/alerts/new/", OWNER, ALERT_FORM, ok=302),
    Page("alert-edit", "POST", WS + "/alerts/{rule}/", OWNER, {**ALERT_FORM, "name": "x"}, ok=302),
    Page("alert-secret", "POST", WS + "/alerts/{rule}/secret/", OWNER, ok=302),
    Page("alert-delete", "POST", WS + "/alerts/{rule}/delete/", OWNER, ok=302),
]
# Pages outside any workspace: any signed-in user.
ACCOUNT_PAGES = ["home"]

MISSING = {"ws": "no-such-ws", "run": "no-such-run", "view": 999999, "rule": 999999}


def _for(role: str) -> list[Page]:
    return [p for p in PAGES if RANK[p.role] <= RANK[role]]


def _denied(role: str) -> list[Page]:
    return [p for p in PAGES if RANK[p.role] > RANK[role]]


@pytest.fixture
def ids(cast, make_run) -> dict:
    """A run with a metric, a file and a child; a shared view of the owner's; a spare compute
    target; a webhook alert rule — so that every page has something to show or change."""
    run = make_run("exp", display_name="original")
    services.run_log_batch(run=run, metrics=[{"name": "loss", "values": [1.0, 0.5]}])
    services.run_file_write(run=run, path="logs/out.txt", stream=BytesIO(b"line 1\n"))
    make_run("exp", parent=run)
    view = saved_views.view_save(
        workspace=cast.workspace, owner=cast.owner.user, name="Best", shared=True, params={}
    )
    services.compute_target_create(workspace=cast.workspace, name="spare")
    rule = alerts.alert_rule_create(
        workspace=cast.workspace,
        user=cast.owner.user,
        name="watch",
        statuses=["Failed"],
        channel="webhook",
        webhook_url="https://hooks.example.com/x",
    )
    return {"ws": "lab", "run": run.run_id, "view": view.pk, "rule": rule.pk, "target": "spare"}


def browser(member) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(member.user)
    return client


def _state(workspace) -> tuple:
    """Everything a page could change in the workspace, in a comparable form."""
    runs = Run.objects.filter(experiment__workspace=workspace)
    return (
        sorted(runs.values_list("run_id", "status", "display_name", "description", "archived_at")),
        sorted(RunTag.objects.filter(run__in=runs).values_list("run__run_id", "key", "value")),
        sorted(RunProperty.objects.filter(run__in=runs).values_list("run__run_id", "key")),
        sorted(RunFile.objects.filter(run__in=runs).values_list("run__run_id", "path", "size")),
        sorted(CustomView.objects.filter(workspace=workspace).values_list("id", "name", "shared")),
        sorted(
            (t.name, t.capacity, t.description, t.worker_key_hash)
            for t in ComputeTarget.objects.filter(workspace=workspace)
        ),
        sorted(
            AlertRule.objects.filter(workspace=workspace).values_list(
                "id", "name", "enabled", "secret", "recipients", "webhook_url"
            )
        ),
        sorted(Membership.objects.filter(workspace=workspace).values_list("user_id", "role")),
    )


def test_the_page_table_covers_every_studio_route():
    routes = {p.name for p in urls.urlpatterns if isinstance(p, URLPattern)}

    assert routes == {p.route for p in PAGES} | set(ACCOUNT_PAGES)


# --- anonymous --------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=str)
def test_an_anonymous_visitor_is_sent_to_sign_in_and_changes_nothing(cast, ids, page):
    before = _state(cast.workspace)

    response = page.call(Client(), ids)

    if page.json:
        assert response.status_code == 401, response.content
        assert response.json()["error"]["code"] == "not_authenticated"
    else:
        assert response.status_code == 302, response.content
        assert response["Location"].startswith("/accounts/login/?next=")
    assert _state(cast.workspace) == before


def test_an_anonymous_visitor_of_the_home_page_is_sent_to_sign_in():
    response = Client().get("/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_a_member_of_another_workspace_sees_their_own_home_page(cast):
    response = browser(cast.outsider).get("/")

    assert response.status_code in (200, 302)
    assert b"/w/lab/" not in response.content


# --- the outsider -------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=str)
def test_an_outsider_gets_the_same_404_as_for_something_that_does_not_exist(cast, ids, page):
    outsider = page.call(browser(cast.outsider), ids)
    missing = page.call(browser(cast.owner), {**ids, **MISSING})

    assert outsider.status_code == 404, outsider.content[:300]
    assert missing.status_code == 404, missing.content[:300]
    # Word for word the same page, once the names asked about are set aside.
    said = outsider.content.decode().replace(ids["run"], "?").replace("'lab'", "?")
    assert said == missing.content.decode().replace("no-such-run", "?").replace("'no-such-ws'", "?")


@pytest.mark.parametrize("page", PAGES, ids=str)
def test_an_outsider_changes_nothing_through_any_page(cast, ids, page):
    before = _state(cast.workspace)

    page.call(browser(cast.outsider), ids)

    assert _state(cast.workspace) == before


# --- members by role ------------------------------------------------------------------------------


@pytest.mark.parametrize("page", _for(READER), ids=str)
def test_a_reader_opens_every_read_page(cast, ids, page):
    response = page.call(browser(cast.reader), ids)

    assert response.status_code == page.ok, response.content[:300]


@pytest.mark.parametrize("page", _denied(READER), ids=str)
def test_a_reader_is_forbidden_every_write_and_changes_nothing(cast, ids, page):
    before = _state(cast.workspace)

    response = page.call(browser(cast.reader), ids)

    assert response.status_code == 403, response.content[:300]
    assert _state(cast.workspace) == before


@pytest.mark.parametrize("page", _for(CONTRIBUTOR), ids=str)
def test_a_contributor_uses_every_contributor_page(cast, ids, page):
    response = page.call(browser(cast.contributor), ids)

    assert response.status_code == page.ok, response.content[:300]


@pytest.mark.parametrize("page", _denied(CONTRIBUTOR), ids=str)
def test_a_contributor_is_forbidden_the_owner_pages_and_changes_nothing(cast, ids, page):
    before = _state(cast.workspace)

    response = page.call(browser(cast.contributor), ids)

    assert response.status_code == 403, response.content[:300]
    assert _state(cast.workspace) == before


@pytest.mark.parametrize("page", _for(OWNER), ids=str)
def test_the_owner_uses_every_page(cast, ids, page):
    response = page.call(browser(cast.owner), ids)

    assert response.status_code == page.ok, response.content[:300]


@pytest.mark.parametrize(
    "page", [p for p in PAGES if p.method == "POST" and p.route != "run-preview"], ids=str
)
def test_a_permitted_write_through_a_page_changes_the_workspace(cast, ids, page):
    """The other side of "changes nothing": the same request from a member who may make it
    does change something, so the unchanged state above is not an accident of the request."""
    before = _state(cast.workspace)

    page.call(browser(cast.owner), ids)

    assert _state(cast.workspace) != before
