"""No existence oracles (issue 7, item 3): no door answers differently for "exists in a
workspace you cannot see" and "does not exist" — run ids, experiment names, workspace names,
usernames. Each comparison checks the status AND the body, with the probed name replaced."""

import json
import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from runs import services
from runs.models import Run
from runs.services import RunSpec

MISSING = "exp_1700000000_deadbeef"
METHODS = ["get", "post", "put", "patch", "delete"]


def _routes(resolver: URLResolver = None, namespace: str = "") -> list[tuple[str, set[str]]]:
    """(url name, its parameters) of every named route, through included url confs."""
    found = []
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            found += _routes(entry, inner)
        elif isinstance(entry, URLPattern) and entry.name:
            found.append((namespace + entry.name, set(entry.pattern.converters)))
    return found


RUN_ROUTES = sorted(name for name, params in _routes() if "run_id" in params)


def _url(name: str, run_id: str) -> str:
    fill = {"workspace": "elsewhere", "path": "logs/x.txt", "run_id": run_id}
    params = dict(_routes())[name]
    return reverse(name, kwargs={key: fill[key] for key in params})


def _same(first, second, first_name: str, second_name: str) -> None:
    """Two answers are the same answer once each probed name is replaced by `<probe>`."""
    assert first.status_code == second.status_code, (first.status_code, second.status_code)

    def body(response, name):
        content = b"".join(response.streaming_content) if response.streaming else response.content
        # The probed name as a whole word only: a number like 1 must not eat every digit, and
        # 8 must not eat the one in "utf-8".
        text = re.sub(rf"(?<![\w.-]){re.escape(name)}(?!\w)", "<probe>", content.decode())
        # CSRF tokens and the like differ between any two pages.
        return re.sub(r'value="[A-Za-z0-9]{32,}"', 'value=""', text)

    assert body(first, first_name) == body(second, second_name)


@pytest.fixture
def hidden_run(make_run):
    """A run in workspace "lab", which the outsider (a member of "elsewhere" only) can't see."""
    return make_run(experiment="secret-project", tags={"k": "v"})


@pytest.fixture
def page_client(cast):
    client = Client()
    client.force_login(cast.outsider.user)
    return client


def test_the_route_sweep_finds_every_run_door():
    # If this shrinks, the sweep below stopped looking at doors that exist.
    assert len([n for n in RUN_ROUTES if n.startswith("api:")]) >= 14
    assert len([n for n in RUN_ROUTES if n.startswith("runs:")]) >= 6


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", RUN_ROUTES)
def test_every_run_door_answers_an_outsider_as_if_the_run_did_not_exist(
    cast, hidden_run, page_client, name, method
):
    client = cast.outsider.client if name.startswith("api:") else page_client
    body = {"runs": [{}], "status": "Completed", "set": {"a": "b"}, "properties": {"a": "b"}}
    send = getattr(client, method)
    kwargs = {"data": json.dumps(body), "content_type": "application/json"}
    if method == "get":
        kwargs = {}

    exists = send(_url(name, hidden_run.run_id), **kwargs)
    missing = send(_url(name, MISSING), **kwargs)

    _same(exists, missing, hidden_run.run_id, MISSING)
    hidden_run.refresh_from_db()
    assert hidden_run.status == "Running"
    assert hidden_run.children.count() == 0


@pytest.mark.parametrize(
    "path",
    [
        "/charts/metric/?metric=loss&run={}",
        "/charts/children/?metric=loss&run={}",
        "/w/elsewhere/compare/?run={}",
        "/w/elsewhere/run-statuses/?run={}",
        "/w/elsewhere/runs/?parent={}",
        "/w/elsewhere/runs.csv?parent={}",
        "/api/v1/workspaces/elsewhere/runs?parent={}",
    ],
)
def test_run_ids_in_query_strings_answer_as_if_the_run_did_not_exist(
    cast, hidden_run, page_client, path
):
    client = cast.outsider.client if path.startswith("/api/") else page_client

    exists = client.get(path.format(hidden_run.run_id))
    missing = client.get(path.format(MISSING))

    _same(exists, missing, hidden_run.run_id, MISSING)


def test_submitting_under_a_parent_in_another_workspace_is_the_unknown_parent_answer(
    cast, hidden_run
):
    def submit(parent_id):
        config = {"script": "train.py", "parent_run_id": parent_id}
        return cast.outsider.client.post(
            "/api/v1/workspaces/elsewhere/experiments/e/submit",
            {"config": json.dumps(config), "snapshot": _zip()},
            format="multipart",
        )

    _same(submit(hidden_run.run_id), submit(MISSING), hidden_run.run_id, MISSING)


def _zip():
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("train.py", "print('hi')\n")
    buffer.seek(0)
    buffer.name = "snapshot.zip"
    return buffer


# ---------------------------------------------------------------------------------------------
# Choosing a run id: the attack the issue names


def _children(client, parent: Run, run_id: str):
    return client.post(
        f"/api/v1/runs/{parent.run_id}/children", {"runs": [{"run_id": run_id}]}, format="json"
    )


def _outsider_parent(cast) -> Run:
    exp, _ = services.experiment_get_or_create(workspace=_elsewhere(), name="mine")
    return services.run_create(experiment=exp, spec=RunSpec(), submitter=cast.outsider.user)


def _elsewhere():
    from runs.models import Workspace

    return Workspace.objects.get(name="elsewhere")


@pytest.mark.parametrize("chosen", ["baseline", "lab~baseline"])
def test_a_child_id_taken_in_another_workspace_answers_like_a_free_one(cast, make_run, chosen):
    """Lab chose the id `baseline` for a child; the outsider, in their own workspace, asks for
    the same id and for a free one: both are created, in the outsider's namespace."""
    lab_parent = make_run()
    assert _children(cast.contributor.client, lab_parent, "baseline").status_code == 201
    own_parent = _outsider_parent(cast)
    free = chosen.replace("baseline", "unused-name")

    taken_elsewhere = _children(cast.outsider.client, own_parent, chosen)
    unused = _children(cast.outsider.client, own_parent, free)

    if chosen.startswith("lab~"):
        # Naming another workspace's namespace is refused whether or not the id exists there.
        assert taken_elsewhere.status_code == unused.status_code == 400
        assert taken_elsewhere.json()["error"]["message"].replace("baseline", "x") == (
            unused.json()["error"]["message"].replace("unused-name", "x")
        )
    else:
        assert taken_elsewhere.status_code == unused.status_code == 201
        assert taken_elsewhere.json()["results"][0]["run_id"] == "elsewhere~baseline"
        assert unused.json()["results"][0]["run_id"] == "elsewhere~unused-name"
    assert Run.objects.get(run_id="lab~baseline").workspace.name == "lab"


def test_a_generated_id_of_another_workspace_answers_like_a_free_one(cast, hidden_run):
    own_parent = _outsider_parent(cast)

    taken_elsewhere = _children(cast.outsider.client, own_parent, hidden_run.run_id)
    unused = _children(cast.outsider.client, own_parent, MISSING)

    assert taken_elsewhere.status_code == unused.status_code == 201
    assert taken_elsewhere.json()["results"][0]["run_id"] == f"elsewhere~{hidden_run.run_id}"


def test_a_run_id_taken_in_the_callers_own_workspace_is_still_a_409(cast, make_run):
    parent = make_run()
    _children(cast.contributor.client, parent, "trial-1")

    again = _children(cast.contributor.client, parent, "trial-1")

    assert again.status_code == 409
    assert "lab~trial-1" in again.json()["error"]["message"]


def test_a_chosen_id_on_run_create_lives_in_the_workspace_namespace_too(cast, make_run):
    make_run(run_id="shared-name")  # lab's
    response = cast.outsider.client.post(
        "/api/v1/workspaces/elsewhere/experiments/e/runs", {"run_id": "shared-name"}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["run_id"] == "elsewhere~shared-name"


# ---------------------------------------------------------------------------------------------
# Experiment names, workspace names, usernames


def test_an_experiment_named_like_one_in_another_workspace_answers_like_a_new_name(
    cast, hidden_run, page_client
):
    url = "/api/v1/workspaces/elsewhere/experiments"

    taken_elsewhere = cast.outsider.client.post(url, {"name": "secret-project"}, format="json")
    unused = cast.outsider.client.post(url, {"name": "unused-project"}, format="json")

    assert taken_elsewhere.status_code == unused.status_code == 201
    strip = ("name", "created_at")
    assert {k: v for k, v in taken_elsewhere.json().items() if k not in strip} == {
        k: v for k, v in unused.json().items() if k not in strip
    }
    # Its page in the outsider's workspace shows none of lab's runs.
    page = page_client.get("/w/elsewhere/experiments/secret-project/")
    assert page.status_code == 200 and hidden_run.run_id not in page.content.decode()


@pytest.mark.parametrize("name", ["secret-project", "unused-project"])
def test_an_experiment_page_for_a_name_used_only_elsewhere_is_the_unknown_answer(
    hidden_run, page_client, cast, name
):
    _same(
        page_client.get(f"/w/elsewhere/experiments/{name}/"),
        page_client.get("/w/elsewhere/experiments/never-used/"),
        name,
        "never-used",
    )
    _same(
        cast.outsider.client.get(f"/api/v1/workspaces/elsewhere/experiments/{name}"),
        cast.outsider.client.get("/api/v1/workspaces/elsewhere/experiments/never-used"),
        name,
        "never-used",
    )


@pytest.mark.parametrize(
    "path", ["/api/v1/workspaces/{}", "/api/v1/workspaces/{}/runs", "/api/v1/workspaces/{}/members"]
)
def test_a_workspace_you_are_not_in_answers_like_one_that_does_not_exist(cast, path):
    exists = cast.outsider.client.get(path.format("lab"))
    missing = cast.outsider.client.get(path.format("nope"))

    _same(exists, missing, "lab", "nope")
    assert exists.status_code == 404


@pytest.mark.parametrize("path", ["/w/{}/", "/w/{}/runs/", "/w/{}/compute/", "/w/{}/alerts/"])
def test_a_workspace_page_you_are_not_in_answers_like_one_that_does_not_exist(
    page_client, cast, path
):
    _same(page_client.get(path.format("lab")), page_client.get(path.format("nope")), "lab", "nope")


@pytest.mark.parametrize(
    "path",
    [
        "/w/elsewhere/views/{}/",
        "/w/elsewhere/views/{}/update/",
        "/w/elsewhere/views/{}/delete/",
        "/w/elsewhere/views/{}/copy/",
        "/w/elsewhere/alerts/{}/",
        "/w/elsewhere/alerts/{}/delete/",
        "/w/elsewhere/alerts/{}/secret/",
        "/api/v1/auth/tokens/{}",
    ],
)
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_numbered_things_of_another_workspace_answer_like_numbers_nobody_has(
    cast, page_client, path, method
):
    """Saved views, alert rules and tokens are addressed by global numbers: lab's (and the
    owner's token) answer the outsider exactly like an unused number."""
    from runs.services import alerts, saved_views

    view = saved_views.view_save(
        workspace=cast.workspace, owner=cast.owner.user, name="v", shared=True, params={}
    )
    rule = alerts.alert_rule_create(
        workspace=cast.workspace,
        user=cast.owner.user,
        name="r",
        statuses=["Failed"],
        channel="webhook",
        webhook_url="https://hooks.example.com/x",
    )
    token = cast.owner.user.api_tokens.get()
    taken = {"views": view.pk, "alerts": rule.pk, "tokens": token.pk}
    number = next(v for k, v in taken.items() if f"/{k}/" in path)
    unused = 10_000 + number
    client = cast.outsider.client if path.startswith("/api/") else page_client
    send = getattr(client, method)

    _same(send(path.format(number)), send(path.format(unused)), str(number), str(unused))


def test_creating_a_workspace_with_a_taken_name_says_only_that_the_name_is_taken(cast):
    """The one answer that must differ (a workspace name is a global address, docs/
    architecture.md): it says the name is taken and nothing about the workspace."""
    response = cast.outsider.client.post("/api/v1/workspaces", {"name": "lab"}, format="json")

    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "conflict",
            "message": "The workspace name 'lab' is taken; choose another.",
            "field": "name",
        }
    }


@pytest.mark.parametrize("username", ["rita", "nobody-here"])
def test_a_wrong_password_answers_the_same_for_a_user_who_exists_and_one_who_does_not(
    cast, username
):
    response = cast.anonymous.post(
        "/api/v1/auth/token", {"username": username, "password": "wrong"}, format="json"
    )

    assert response.status_code == 401
    assert response.json() == {
        "error": {"code": "authentication_failed", "message": "Wrong username or password."}
    }


def test_an_inactive_users_right_password_answers_like_a_wrong_one(cast):
    cast.reader.user.is_active = False
    cast.reader.user.save()
    from tests.conftest import PASSWORD

    inactive = cast.anonymous.post(
        "/api/v1/auth/token", {"username": "rita", "password": PASSWORD}, format="json"
    )
    unknown = cast.anonymous.post(
        "/api/v1/auth/token", {"username": "nobody", "password": PASSWORD}, format="json"
    )

    _same(inactive, unknown, "rita", "nobody")


# ---------------------------------------------------------------------------------------------
# Usernames: adding a member


MEMBERS = "/api/v1/workspaces/lab/members"


def _invite(cast, username: str, role: str = "reader"):
    return cast.owner.client.post(MEMBERS, {"username": username, "role": role}, format="json")


def _without_key(response, username: str) -> dict:
    body = dict(response.json())
    body.pop("invitation"), body.pop("expires_at")
    body["username"] = body["username"].replace(username, "<probe>")
    return body


def test_adding_an_unshared_account_answers_like_adding_a_name_nobody_has(cast):
    """Oscar exists but shares no workspace with the owner; "nobody-here" does not exist."""
    exists = _invite(cast, "oscar")
    missing = _invite(cast, "nobody-here")

    assert exists.status_code == missing.status_code == 202
    assert _without_key(exists, "oscar") == _without_key(missing, "nobody-here")
    assert exists.json()["invitation"] != missing.json()["invitation"]
    # Neither became a member: an invitation is only an offer.
    assert cast.outsider.client.get("/api/v1/workspaces/lab").status_code == 404


def test_an_account_the_owner_already_shares_a_workspace_with_is_added_at_once(cast):
    from runs.models import Workspace

    shared = Workspace.objects.get(name="elsewhere")
    services.membership_set(workspace=shared, user=cast.owner.user, role="reader")

    response = _invite(cast, "oscar", "contributor")

    assert response.status_code == 201
    assert response.json() == {"username": "oscar", "role": "contributor"}


def _accept(member, key):
    return member.client.post("/api/v1/invitations/accept", {"invitation": key}, format="json")


def test_only_the_invited_account_can_accept_and_only_once(cast):
    key = _invite(cast, "oscar").json()["invitation"]
    someone_else = _accept(cast.reader, key)  # rita holds oscar's key

    joined = _accept(cast.outsider, key)
    again = _accept(cast.outsider, key)

    assert joined.status_code == 201
    assert joined.json()["name"] == "lab" and joined.json()["role"] == "reader"
    _same(someone_else, again, "x", "x")
    assert again.status_code == 404


def test_every_refused_invitation_answers_the_same(cast):
    from django.utils import timezone

    from runs.models import Invitation

    expired_key = _invite(cast, "oscar").json()["invitation"]
    Invitation.objects.update(expires_at=timezone.now())
    nobody_key = _invite(cast, "nobody-here").json()["invitation"]

    answers = [
        _accept(cast.outsider, expired_key),
        _accept(cast.outsider, nobody_key),  # meant for an account that does not exist
        _accept(cast.outsider, "rsi_made-up"),
        _accept(cast.outsider, ""),
    ]

    assert {a.status_code for a in answers} == {404}
    assert len({a.content for a in answers}) == 1


def test_an_invitation_lapses_when_its_inviter_is_no_longer_an_owner(cast):
    key = _invite(cast, "oscar").json()["invitation"]
    services.membership_set(workspace=cast.workspace, user=cast.contributor.user, role="owner")
    services.membership_set(workspace=cast.workspace, user=cast.owner.user, role="reader")

    assert _accept(cast.outsider, key).status_code == 404


def test_accepting_never_changes_the_role_of_someone_already_a_member(cast):
    from runs.models import Invitation

    key = services.membership_invite(
        workspace=cast.workspace, username="carl", role="reader", by=cast.owner.user
    ).key

    response = _accept(cast.contributor, key)

    assert response.status_code == 200
    assert response.json()["role"] == "contributor"
    assert Invitation.objects.get().accepted_at is not None


def test_a_username_with_a_nul_is_a_4xx_on_every_member_door(cast):
    added = _invite(cast, "a\x00b")
    removed = cast.owner.client.delete(MEMBERS + "/a%00b")

    assert added.status_code == 400 and added.json()["error"]["field"] == "username"
    # A NUL anywhere in a URL is refused before routing (runs/middleware.py), for every user.
    assert removed.status_code == 400
