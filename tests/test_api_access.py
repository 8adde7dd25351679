"""Who may pass which door of /api/v1: every workspace endpoint, every role.

The door table below lists each (method, URL) once with the role it needs; the tests walk it
for the reader, the contributor, the owner, the outsider and an anonymous caller. A test at the
end checks the table covers every route in runs/api/urls.py, so a new endpoint cannot slip in
unguarded.
"""

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from io import BytesIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern
from rest_framework.test import APIClient

from runs import services
from runs.api import urls as api_urls
from runs.models import ApiToken, Membership, Role, Run
from runs.services import alerts


@dataclass(frozen=True)
class Door:
    route: str  # the URL name in runs/api/urls.py
    method: str
    url: str  # formatted with ws= and run=
    role: str  # the least role that may pass
    body: dict | bytes | None = None
    ok: int = 200  # the status a permitted caller gets
    query: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.method} {self.url}"

    def call(self, client, *, ws: str, run: str):
        url = self.url.format(ws=ws, run=run)
        method = getattr(client, self.method.lower())
        if callable(self.body):  # a multipart form, built fresh for each call
            return method(url, self.body(), format="multipart")
        if isinstance(self.body, bytes):
            return method(url, data=self.body, content_type="application/octet-stream")
        if self.method == "GET":
            return method(url, self.query)
        if self.method == "DELETE":
            return method(url)
        return method(url, _fill(self.body or {}, run=run), format="json")


def _fill(value, *, run: str):
    """The body with "{run}" in its strings replaced by the run id (e.g. run-manage's list)."""
    if isinstance(value, dict):
        return {k: _fill(v, run=run) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, run=run) for v in value]
    return value.replace("{run}", run) if isinstance(value, str) else value


READER, CONTRIBUTOR, OWNER = Role.READER, Role.CONTRIBUTOR, Role.OWNER


def _submission() -> dict:
    """A script submission: its configuration and a zip of its source directory."""
    archive = BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train.py", "print('hi')\n")
    upload = SimpleUploadedFile("snapshot.zip", archive.getvalue(), "application/zip")
    return {"config": json.dumps({"script": "train.py"}), "snapshot": upload}


RUN = "/api/v1/runs/{run}"
WS = "/api/v1/workspaces/{ws}"

DOORS = [
    Door("workspace-detail", "GET", WS, READER),
    Door("member-list", "GET", WS + "/members", READER),
    Door("member-list", "POST", WS + "/members", OWNER, {"username": "rita"}, ok=201),
    Door("member-remove", "DELETE", WS + "/members/rita", OWNER, ok=204),
    Door("experiment-list", "GET", WS + "/experiments", READER),
    Door("experiment-list", "POST", WS + "/experiments", CONTRIBUTOR, {"name": "new"}, ok=201),
    Door("experiment-detail", "GET", WS + "/experiments/exp", READER),
    Door("run-create", "POST", WS + "/experiments/exp/runs", CONTRIBUTOR, ok=201),
    Door("run-list", "GET", WS + "/runs", READER),
    Door("run-search", "POST", WS + "/runs/search", READER, {"q": "status = Running"}),
    Door(
        "run-manage",
        "POST",
        WS + "/runs/manage",
        CONTRIBUTOR,
        {"action": "tag", "runs": ["{run}"], "tags": {"reviewed": "yes"}},
    ),
    Door("run-manage", "POST", WS + "/runs/manage", OWNER, {"action": "delete", "runs": ["{run}"]}),
    Door("run-detail", "GET", RUN, READER),
    Door("run-detail", "PATCH", RUN, CONTRIBUTOR, {"display_name": "renamed"}),
    Door("run-status", "POST", RUN + "/status", CONTRIBUTOR, {"status": "Completed"}),
    Door("run-heartbeat", "POST", RUN + "/heartbeat", CONTRIBUTOR),
    Door("run-cancel", "POST", RUN + "/cancel", CONTRIBUTOR),
    Door("run-children", "GET", RUN + "/children", READER),
    Door("run-children", "POST", RUN + "/children", CONTRIBUTOR, {"count": 1}, ok=201),
    Door("run-tags", "GET", RUN + "/tags", READER),
    Door("run-tags", "PATCH", RUN + "/tags", CONTRIBUTOR, {"set": {"k": "v"}}),
    Door("run-properties", "GET", RUN + "/properties", READER),
    Door("run-properties", "POST", RUN + "/properties", CONTRIBUTOR, {"properties": {"p": "1"}}),
    Door("metric-list", "GET", RUN + "/metrics", READER),
    Door(
        "metric-batch",
        "POST",
        RUN + "/metrics/batch",
        CONTRIBUTOR,
        {"metrics": [{"name": "loss", "values": [0.5]}]},
    ),
    Door("metric-values", "GET", RUN + "/metrics/values", READER),
    Door("metric-history", "GET", RUN + "/metrics/history", READER, query={"name": "loss"}),
    Door("metric-series", "GET", RUN + "/metrics/series", READER, query={"name": "loss"}),
    Door("file-list", "GET", RUN + "/files", READER),
    Door("file-detail", "GET", RUN + "/files/logs/out.txt", READER),
    Door("file-detail", "PUT", RUN + "/files/logs/new.txt", CONTRIBUTOR, b"hello", ok=201),
    Door("file-detail", "POST", RUN + "/files/logs/out.txt?append=1", CONTRIBUTOR, b"more"),
    Door("compute-target-list", "GET", WS + "/compute", READER),
    Door("compute-target-list", "POST", WS + "/compute", OWNER, {"name": "gpu"}, ok=201),
    Door("compute-target-detail", "GET", WS + "/compute/local", READER),
    Door("compute-target-detail", "PATCH", WS + "/compute/local", OWNER, {"capacity": 3}),
    Door("compute-target-detail", "DELETE", WS + "/compute/spare", OWNER, ok=204),
    Door("compute-target-worker-key", "POST", WS + "/compute/spare/worker-key", OWNER, ok=201),
    Door("run-submit", "POST", WS + "/experiments/exp/submit", CONTRIBUTOR, _submission, ok=201),
    Door("alert-rule-list", "GET", WS + "/alert-rules", READER),
    Door(
        "alert-rule-list",
        "POST",
        WS + "/alert-rules",
        OWNER,
        {"name": "new", "statuses": ["Failed"], "channel": "email", "recipients": ["a@x.org"]},
        ok=201,
    ),
    Door("alert-rule-detail", "GET", WS + "/alert-rules/watch", READER),
    Door("alert-rule-detail", "PATCH", WS + "/alert-rules/watch", OWNER, {"enabled": False}),
    Door("alert-rule-detail", "DELETE", WS + "/alert-rules/watch", OWNER, ok=204),
]
# A read may be a POST (run-search: a search too long for a URL); the role says which it is.
READS = [d for d in DOORS if d.role == READER]
WRITES = [d for d in DOORS if d.role != READER]
CONTRIBUTOR_WRITES = [d for d in WRITES if d.role == CONTRIBUTOR]
OWNER_WRITES = [d for d in WRITES if d.role == OWNER]

# Doors outside any workspace: they only need a signed-in user.
ACCOUNT_DOORS = [
    ("GET", "/api/v1/auth/tokens"),
    ("DELETE", "/api/v1/auth/tokens/1"),
    ("GET", "/api/v1/me"),
    ("GET", "/api/v1/workspaces"),
    ("POST", "/api/v1/workspaces"),
]


@pytest.fixture
def run_id(cast, make_run):
    """A live run in `lab` with a metric and a file, so every read door has something to show."""
    run = make_run("exp")
    services.run_log_batch(run=run, metrics=[{"name": "loss", "values": [1.0, 0.5]}])
    services.run_file_write(run=run, path="logs/out.txt", stream=BytesIO(b"line 1\n"))
    services.compute_target_create(workspace=cast.workspace, name="spare")
    alerts.alert_rule_create(
        workspace=cast.workspace,
        user=cast.owner.user,
        name="watch",
        statuses=["Failed"],
        channel="webhook",
        webhook_url="https://hooks.example.com/x",
    )
    return run.run_id


@pytest.mark.parametrize("door", READS, ids=str)
def test_a_reader_can_use_every_read_door(cast, run_id, door):
    response = door.call(cast.reader.client, ws="lab", run=run_id)

    assert response.status_code == 200, response.content


@pytest.mark.parametrize("door", WRITES, ids=str)
def test_a_reader_is_forbidden_every_write_door(cast, run_id, door):
    response = door.call(cast.reader.client, ws="lab", run=run_id)

    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("door", CONTRIBUTOR_WRITES, ids=str)
def test_a_contributor_can_use_every_contributor_write_door(cast, run_id, door):
    response = door.call(cast.contributor.client, ws="lab", run=run_id)

    assert response.status_code == door.ok, response.content


@pytest.mark.parametrize("door", OWNER_WRITES, ids=str)
def test_a_contributor_is_forbidden_the_owner_only_doors(cast, run_id, door):
    response = door.call(cast.contributor.client, ws="lab", run=run_id)

    assert response.status_code == 403, response.content
    assert "owner" in response.json()["error"]["message"]


@pytest.mark.parametrize("door", OWNER_WRITES, ids=str)
def test_the_owner_can_use_the_owner_only_doors(cast, run_id, door):
    response = door.call(cast.owner.client, ws="lab", run=run_id)

    assert response.status_code == door.ok, response.content


@pytest.mark.parametrize("door", DOORS, ids=str)
def test_an_outsider_gets_the_same_404_as_for_something_that_does_not_exist(cast, run_id, door):
    outsider = door.call(cast.outsider.client, ws="lab", run=run_id)
    missing = door.call(cast.owner.client, ws="no-such-ws", run="no-such-run")

    assert outsider.status_code == 404, outsider.content
    assert missing.status_code == 404, missing.content
    assert outsider.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"
    assert outsider.json()["error"]["field"] == missing.json()["error"]["field"]
    # Word for word the same answer, once the names asked about are set aside.
    said = outsider.json()["error"]["message"].replace(run_id, "?").replace("'lab'", "?")
    assert said == missing.json()["error"]["message"].replace("no-such-run", "?").replace(
        "'no-such-ws'", "?"
    )


@pytest.mark.parametrize("door", DOORS, ids=str)
def test_an_outsider_changes_nothing_through_any_door(cast, run_id, door):
    before = Run.objects.get(run_id=run_id)
    door.call(cast.outsider.client, ws="lab", run=run_id)

    after = Run.objects.get(run_id=run_id)
    assert (after.status, after.display_name) == (before.status, before.display_name)
    assert after.heartbeat_at == before.heartbeat_at
    assert list(cast.workspace.experiments.values_list("name", flat=True)) == ["exp"]
    assert Run.objects.count() == 1
    assert not after.children.exists()
    assert not after.tags.exists() and not after.properties.exists()
    assert after.metric_series.get(name="loss").count == 2
    assert set(after.files.values_list("path", flat=True)) == {"logs/out.txt"}
    assert not Membership.objects.filter(workspace=cast.workspace, user=cast.outsider.user).exists()
    assert Membership.objects.filter(workspace=cast.workspace, user=cast.reader.user).exists()


@pytest.mark.parametrize("door", DOORS, ids=str)
def test_an_anonymous_caller_gets_401_at_every_workspace_door(cast, run_id, door):
    response = door.call(cast.anonymous, ws="lab", run=run_id)

    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize(("method", "url"), ACCOUNT_DOORS)
def test_an_anonymous_caller_gets_401_at_every_account_door(cast, method, url):
    response = getattr(cast.anonymous, method.lower())(url, {}, format="json")

    assert response.status_code == 401, response.content


def test_a_bad_token_is_401_not_anonymous_access(cast):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token rs_not-a-real-key")

    response = client.get("/api/v1/workspaces/lab")

    assert response.status_code == 401
    assert "unknown or revoked" in response.json()["error"]["message"]


def test_a_bearer_token_works_like_a_token(cast):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {cast.reader.token}")

    assert client.get("/api/v1/workspaces/lab").json()["role"] == "reader"


def test_the_door_table_covers_every_api_route():
    routes = {p.name for p in api_urls.urlpatterns if isinstance(p, URLPattern)}
    account_routes = {
        "token-create",
        "token-list",
        "token-revoke",
        "me",
        "workspace-list",
        "invitation-accept",
    }

    assert routes - account_routes == {d.route for d in DOORS}


# ---------------------------------------------------------------------------------------------
# Tokens


def test_a_wrong_password_gets_no_token(cast):
    response = cast.anonymous.post(
        "/api/v1/auth/token", {"username": "rita", "password": "wrong"}, format="json"
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert ApiToken.objects.filter(user=cast.reader.user).count() == 1  # the cast's own


def test_a_token_from_the_password_works_and_only_its_hash_is_stored(cast):
    cast.reader.user.set_password("rita's password")
    cast.reader.user.save()

    response = cast.anonymous.post(
        "/api/v1/auth/token",
        {"username": "rita", "password": "rita's password", "name": "laptop"},
        format="json",
    )
    assert response.status_code == 201
    key = response.json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    assert client.get("/api/v1/me").json()["username"] == "rita"
    token = ApiToken.objects.get(pk=response.json()["id"])
    assert token.name == "laptop"
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key.startswith(token.prefix) and len(token.prefix) < len(key)
    stored = ApiToken.objects.filter(pk=token.pk).values_list("name", "prefix", "key_hash").get()
    assert key not in stored
    assert token.last_used_at is not None


def test_the_token_list_shows_no_keys(cast):
    response = cast.reader.client.get("/api/v1/auth/tokens")

    assert response.status_code == 200
    [token] = response.json()["results"]
    assert token["name"] == "tests"
    assert "token" not in token and "key_hash" not in token
    assert cast.reader.token not in response.content.decode()


def test_a_revoked_token_is_refused_afterwards(cast):
    token = ApiToken.objects.get(user=cast.reader.user)

    response = cast.reader.client.delete(f"/api/v1/auth/tokens/{token.pk}")

    assert response.status_code == 204
    assert cast.reader.client.get("/api/v1/me").status_code == 401
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_a_token_of_another_user_cannot_be_revoked(cast):
    owners_token = ApiToken.objects.get(user=cast.owner.user)

    response = cast.reader.client.delete(f"/api/v1/auth/tokens/{owners_token.pk}")

    assert response.status_code == 404
    owners_token.refresh_from_db()
    assert owners_token.revoked_at is None
    assert cast.owner.client.get("/api/v1/me").status_code == 200


# ---------------------------------------------------------------------------------------------
# Workspaces and members


def test_me_lists_the_callers_workspaces_with_roles(cast):
    body = cast.outsider.client.get("/api/v1/me").json()

    assert body["username"] == "oscar"
    assert [(w["name"], w["role"]) for w in body["workspaces"]] == [("elsewhere", "owner")]


def test_creating_a_workspace_makes_the_creator_its_owner(cast):
    response = cast.reader.client.post("/api/v1/workspaces", {"name": "ritas-lab"}, format="json")

    assert response.status_code == 201
    assert response.json()["role"] == "owner"
    assert Membership.objects.get(workspace__name="ritas-lab").user == cast.reader.user
    names = [w["name"] for w in cast.reader.client.get("/api/v1/workspaces").json()["results"]]
    assert names == ["lab", "ritas-lab"]


def test_a_workspace_name_that_exists_is_a_409(cast):
    response = cast.outsider.client.post("/api/v1/workspaces", {"name": "lab"}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["field"] == "name"
    assert not Membership.objects.filter(workspace__name="lab", user=cast.outsider.user).exists()


@pytest.mark.parametrize("name", ["", "-lead", "has space", "a" * 65, "sl/ash", None])
def test_an_invalid_workspace_name_is_a_400_naming_the_field(cast, name):
    response = cast.reader.client.post("/api/v1/workspaces", {"name": name}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "name"


def test_the_owner_invites_a_reader_who_joins_with_the_key(cast):
    """Oscar shares no workspace with the owner, so he is invited, not added (docs/
    architecture.md, "No existence oracles"); he joins by accepting."""
    response = cast.owner.client.post(
        "/api/v1/workspaces/lab/members", {"username": "oscar", "role": "reader"}, format="json"
    )

    assert response.status_code == 202
    assert {k: response.json()[k] for k in ("username", "role", "workspace")} == {
        "username": "oscar",
        "role": "reader",
        "workspace": "lab",
    }
    assert cast.outsider.client.get("/api/v1/workspaces/lab").status_code == 404
    accepted = cast.outsider.client.post(
        "/api/v1/invitations/accept", {"invitation": response.json()["invitation"]}, format="json"
    )
    assert accepted.status_code == 201
    assert cast.outsider.client.get("/api/v1/workspaces/lab").json()["role"] == "reader"
    assert (
        cast.outsider.client.post(
            "/api/v1/workspaces/lab/experiments", {"name": "x"}, format="json"
        ).status_code
        == 403
    )


def test_the_owner_changes_a_members_role(cast):
    cast.owner.client.post(
        "/api/v1/workspaces/lab/members", {"username": "rita", "role": "contributor"}, format="json"
    )

    members = cast.reader.client.get("/api/v1/workspaces/lab/members").json()["results"]
    assert {"username": "rita", "role": "contributor"} in members
    assert len(members) == 3


def test_adding_an_unknown_role_or_a_blank_username_is_a_400(cast):
    blank_user = cast.owner.client.post(
        "/api/v1/workspaces/lab/members", {"username": " "}, format="json"
    )
    unknown_role = cast.owner.client.post(
        "/api/v1/workspaces/lab/members", {"username": "oscar", "role": "admin"}, format="json"
    )

    assert blank_user.status_code == 400
    assert blank_user.json()["error"]["field"] == "username"
    assert unknown_role.status_code == 400
    assert unknown_role.json()["error"]["field"] == "role"


def test_removing_the_last_owner_is_a_409(cast):
    response = cast.owner.client.delete("/api/v1/workspaces/lab/members/olivia")

    assert response.status_code == 409
    assert "owner" in response.json()["error"]["message"]
    assert Membership.objects.get(workspace=cast.workspace, user=cast.owner.user).role == "owner"


def test_an_owner_may_leave_once_there_is_another_owner(cast):
    services.membership_set(workspace=cast.workspace, user=cast.contributor.user, role=OWNER)

    response = cast.owner.client.delete("/api/v1/workspaces/lab/members/olivia")

    assert response.status_code == 204
    assert cast.owner.client.get("/api/v1/workspaces/lab").status_code == 404


def test_removing_someone_who_is_not_a_member_is_a_404(cast):
    response = cast.owner.client.delete("/api/v1/workspaces/lab/members/oscar")

    assert response.status_code == 404
    assert response.json()["error"]["field"] == "username"


def test_an_unknown_workspace_is_a_404(cast):
    for url in ("/api/v1/workspaces/nope", "/api/v1/workspaces/nope/runs"):
        response = cast.owner.client.get(url)
        assert response.status_code == 404
        assert response.json()["error"] == {
            "code": "not_found",
            "message": "No workspace named 'nope'.",
            "field": "workspace",
        }


def test_an_unknown_experiment_is_a_404(cast, make_run):
    make_run("exp")

    response = cast.reader.client.get("/api/v1/workspaces/lab/experiments/nope")

    assert response.status_code == 404
    assert response.json()["error"]["field"] == "experiment"


def test_creating_an_experiment_twice_returns_the_existing_one(cast):
    first = cast.contributor.client.post(
        "/api/v1/workspaces/lab/experiments", {"name": "sweep"}, format="json"
    )
    second = cast.contributor.client.post(
        "/api/v1/workspaces/lab/experiments", {"name": "sweep"}, format="json"
    )

    assert (first.status_code, second.status_code) == (201, 200)
    assert cast.workspace.experiments.filter(name="sweep").count() == 1


def test_the_experiment_list_counts_runs(cast, make_run):
    make_run("a")
    make_run("a")
    make_run("b")

    results = cast.reader.client.get("/api/v1/workspaces/lab/experiments").json()["results"]

    assert [(e["name"], e["run_count"]) for e in results] == [("a", 2), ("b", 1)]
    assert all(e["last_run_at"] for e in results)


def test_malformed_json_is_a_400(cast, make_run):
    run = make_run()

    response = cast.contributor.client.post(
        f"/api/v1/runs/{run.run_id}/metrics/batch",
        data="{not json",
        content_type="application/json",
    )

    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


def test_a_json_body_that_is_not_an_object_is_a_400(cast, make_run):
    run = make_run()

    response = cast.contributor.client.patch(f"/api/v1/runs/{run.run_id}", [1, 2], format="json")

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "body"
