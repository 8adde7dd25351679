"""Runs through /api/v1: creating, editing, tags, properties, children, listing, status."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs import services
from runs.models import Experiment, Run, RunProperty, RunStatus, RunTag, StatusEvent


def error(response) -> dict:
    return response.json()["error"]


def run_url(run, tail: str = "") -> str:
    return f"/api/v1/runs/{run.run_id}{tail}"


def run_ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [r["run_id"] for r in response.json()["results"]]


# ---------------------------------------------------------------------------------------------
# Creating and reading


def test_creating_a_run_creates_its_experiment_and_starts_it(cast):
    response = cast.contributor.client.post(
        "/api/v1/workspaces/lab/experiments/fresh/runs",
        {"display_name": "first", "tags": {"lr": "0.1", "flag": None}, "properties": {"seed": 7}},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert Experiment.objects.filter(workspace=cast.workspace, name="fresh").exists()
    assert body["experiment"] == "fresh" and body["workspace"] == "lab"
    assert body["run_id"].startswith("fresh_")
    assert body["submitter"] == "carl"
    assert body["status"] == "Running"
    assert body["started_at"] and body["heartbeat_at"] and body["ended_at"] is None
    assert body["tags"] == {"lr": "0.1", "flag": None}
    assert body["properties"] == {"seed": "7"}
    assert body["parent_id"] is None and body["error"] is None
    assert body["portal_url"].endswith(f"/w/lab/runs/{body['run_id']}/")
    [event] = StatusEvent.objects.filter(run__run_id=body["run_id"])
    assert (event.from_status, event.to_status, event.by) == ("", "Running", cast.contributor.user)


def test_a_run_created_not_started_has_no_start_time(cast):
    response = cast.contributor.client.post(
        "/api/v1/workspaces/lab/experiments/exp/runs", {"status": "NotStarted"}, format="json"
    )

    assert response.json()["status"] == "NotStarted"
    assert response.json()["started_at"] is None


@pytest.mark.parametrize("status", ["Completed", "Canceled", "CancelRequested", "Sleeping"])
def test_a_run_cannot_be_created_finished_or_in_an_unknown_state(cast, status):
    response = cast.contributor.client.post(
        "/api/v1/workspaces/lab/experiments/exp/runs", {"status": status}, format="json"
    )

    assert response.status_code == 400
    assert error(response)["field"] == "status"
    assert not Run.objects.exists()


def test_an_invalid_experiment_name_is_a_400_and_creates_nothing(cast):
    response = cast.contributor.client.post(
        "/api/v1/workspaces/lab/experiments/has space/runs", {}, format="json"
    )

    assert response.status_code == 400
    assert error(response)["field"] == "name"
    assert not Experiment.objects.exists()


def test_run_details_show_what_the_run_holds(cast, make_run):
    parent = make_run("exp")
    run = make_run("exp", parent=parent, display_name="child", compute_target="gpu-1")
    services.run_set_tags(run=run, set_tags={"a": "1"})

    body = cast.reader.client.get(run_url(run)).json()

    assert body["parent_id"] == parent.run_id
    assert body["display_name"] == "child"
    assert body["compute_target"] == "gpu-1"
    assert body["tags"] == {"a": "1"}
    assert body["created_at"].endswith("Z")


def test_an_unknown_run_is_a_404(cast):
    response = cast.owner.client.get("/api/v1/runs/nope_1_deadbeef")

    assert response.status_code == 404
    assert error(response) == {
        "code": "not_found",
        "message": "No run with id 'nope_1_deadbeef'.",
        "field": "run_id",
    }


def test_editing_a_run_changes_its_name_and_description(cast, make_run):
    run = make_run()

    response = cast.contributor.client.patch(
        run_url(run), {"display_name": "better", "description": "# notes"}, format="json"
    )

    assert response.status_code == 200
    run.refresh_from_db()
    assert (run.display_name, run.description) == ("better", "# notes")
    assert response.json()["display_name"] == "better"


def test_a_reader_cannot_edit_a_run(cast, make_run):
    run = make_run(display_name="original")

    response = cast.reader.client.patch(run_url(run), {"display_name": "mine"}, format="json")

    assert response.status_code == 403
    run.refresh_from_db()
    assert run.display_name == "original"


def test_a_display_name_over_the_limit_is_a_400(cast, make_run):
    run = make_run(display_name="original")

    response = cast.contributor.client.patch(
        run_url(run), {"display_name": "x" * 256}, format="json"
    )

    assert response.status_code == 400
    assert error(response)["field"] == "display_name"
    assert "255" in error(response)["message"]
    run.refresh_from_db()
    assert run.display_name == "original"


def test_a_heartbeat_moves_the_heartbeat_time(cast, make_run):
    run = make_run()
    before = run.heartbeat_at

    response = cast.contributor.client.post(run_url(run, "/heartbeat"))

    assert response.status_code == 200
    assert response.json()["status"] == "Running"
    run.refresh_from_db()
    assert run.heartbeat_at > before


# ---------------------------------------------------------------------------------------------
# Tags and properties


def test_tags_are_set_overwritten_left_bare_and_removed(cast, make_run):
    run = make_run(tags={"keep": "1", "drop": "x", "change": "old"})

    response = cast.contributor.client.patch(
        run_url(run, "/tags"),
        {"set": {"change": "new", "bare": None, "number": 3}, "remove": ["drop"]},
        format="json",
    )

    assert response.status_code == 200
    expected = {"keep": "1", "change": "new", "bare": None, "number": "3"}
    assert response.json()["tags"] == expected
    assert cast.reader.client.get(run_url(run, "/tags")).json() == {"tags": expected}
    assert RunTag.objects.get(run=run, key="bare").value is None


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "empty"),
        ("k" * 256, "255"),
        ("bad\x01key", "control character"),
        ("tab\tkey", "control"),
    ],
)
def test_a_bad_tag_key_is_a_400_naming_the_field_and_changes_nothing(cast, make_run, key, why):
    run = make_run(tags={"keep": "1"})

    response = cast.contributor.client.patch(
        run_url(run, "/tags"), {"set": {"fine": "ok", key: "v"}, "remove": ["keep"]}, format="json"
    )

    assert response.status_code == 400
    assert error(response)["field"] == (f"set.{key}" if key else "set")
    assert why in error(response)["message"]
    assert dict(RunTag.objects.filter(run=run).values_list("key", "value")) == {"keep": "1"}


def test_a_tag_key_of_255_characters_is_fine(cast, make_run):
    run = make_run()

    response = cast.contributor.client.patch(
        run_url(run, "/tags"), {"set": {"k" * 255: "v"}}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["tags"] == {"k" * 255: "v"}


def test_properties_are_added_and_read_back(cast, make_run):
    run = make_run(properties={"seed": "1"})

    response = cast.contributor.client.post(
        run_url(run, "/properties"), {"properties": {"commit": "abc"}}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == {"properties": {"seed": "1", "commit": "abc"}}


def test_re_adding_a_property_with_the_same_value_is_a_no_op(cast, make_run):
    run = make_run(properties={"seed": "1"})

    response = cast.contributor.client.post(
        run_url(run, "/properties"), {"properties": {"seed": "1"}}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == {"properties": {"seed": "1"}}
    assert RunProperty.objects.filter(run=run).count() == 1


def test_re_adding_a_property_with_another_value_is_a_409_naming_both_values(cast, make_run):
    run = make_run(properties={"seed": "1"})

    response = cast.contributor.client.post(
        run_url(run, "/properties"), {"properties": {"new": "yes", "seed": "2"}}, format="json"
    )

    assert response.status_code == 409
    assert error(response)["field"] == "properties.seed"
    message = error(response)["message"]
    assert "'seed'" in message and "'1'" in message and "'2'" in message
    assert dict(RunProperty.objects.filter(run=run).values_list("key", "value")) == {"seed": "1"}


@pytest.mark.parametrize("key", ["", "p" * 256, "new\nline"])
def test_a_bad_property_key_is_a_400(cast, make_run, key):
    run = make_run()

    response = cast.contributor.client.post(
        run_url(run, "/properties"), {"properties": {key: "v"}}, format="json"
    )

    assert response.status_code == 400
    assert error(response)["field"].startswith("properties")
    assert not RunProperty.objects.filter(run=run).exists()


def test_a_property_without_a_value_is_a_400(cast, make_run):
    run = make_run()

    response = cast.contributor.client.post(
        run_url(run, "/properties"), {"properties": {"seed": None}}, format="json"
    )

    assert response.status_code == 400
    assert error(response)["field"] == "properties.seed"


# ---------------------------------------------------------------------------------------------
# Children


def test_children_are_created_by_count(cast, make_run):
    parent = make_run()

    response = cast.contributor.client.post(
        run_url(parent, "/children"), {"count": 3}, format="json"
    )

    assert response.status_code == 201
    children = response.json()["results"]
    assert len(children) == 3
    assert {c["parent_id"] for c in children} == {parent.run_id}
    assert {c["status"] for c in children} == {"NotStarted"}
    assert {c["run_type"] for c in children} == {"child"}
    assert {c["submitter"] for c in children} == {"carl"}
    assert len({c["run_id"] for c in children}) == 3
    assert StatusEvent.objects.filter(run__parent=parent, to_status="NotStarted").count() == 3


def test_children_are_created_from_descriptions(cast, make_run):
    parent = make_run()

    response = cast.contributor.client.post(
        run_url(parent, "/children"),
        {
            "runs": [
                {"display_name": "a", "tags": {"fold": "1"}},
                {"display_name": "b", "status": "Running"},
            ]
        },
        format="json",
    )

    assert response.status_code == 201
    children = response.json()["results"]
    assert [(c["display_name"], c["status"]) for c in children] == [
        ("a", "NotStarted"),
        ("b", "Running"),
    ]
    assert children[0]["tags"] == {"fold": "1"}


@pytest.mark.parametrize("body", [{"count": 0}, {"count": "3"}, {}, {"count": 1001}])
def test_a_bad_child_count_is_a_400(cast, make_run, body):
    parent = make_run()

    response = cast.contributor.client.post(run_url(parent, "/children"), body, format="json")

    assert response.status_code == 400
    assert error(response)["field"] == "count"
    assert not parent.children.exists()


def test_a_bad_child_description_is_a_400_naming_which_child(cast, make_run):
    parent = make_run()

    response = cast.contributor.client.post(
        run_url(parent, "/children"),
        {"runs": [{"display_name": "fine"}, {"tags": {"": "x"}}]},
        format="json",
    )

    assert response.status_code == 400
    assert error(response)["field"] == "runs[1].tags"
    assert not parent.children.exists()


def test_children_are_listed_directly_or_breadth_first_with_grandchildren(cast, make_run):
    root = make_run(display_name="root")
    a = make_run(parent=root, display_name="a")
    b = make_run(parent=root, display_name="b")
    a1 = make_run(parent=a, display_name="a1")
    b1 = make_run(parent=b, display_name="b1")
    a1x = make_run(parent=a1, display_name="a1x")
    make_run(display_name="unrelated")

    direct = cast.reader.client.get(run_url(root, "/children"))
    tree = cast.reader.client.get(run_url(root, "/children"), {"recursive": "1"})

    assert run_ids(direct) == [a.run_id, b.run_id]
    assert run_ids(tree) == [a.run_id, b.run_id, a1.run_id, b1.run_id, a1x.run_id]
    assert tree.json()["results"][4]["parent_id"] == a1.run_id


# ---------------------------------------------------------------------------------------------
# Listing and filtering


def list_runs(client, **params):
    return run_ids(client.get("/api/v1/workspaces/lab/runs", params))


def test_the_run_list_is_newest_first(cast, make_run):
    runs = [make_run() for _ in range(3)]

    assert list_runs(cast.reader.client) == [r.run_id for r in reversed(runs)]


def test_the_run_list_filters_by_experiment(cast, make_run):
    a = make_run("a")
    make_run("b")

    assert list_runs(cast.reader.client, experiment="a") == [a.run_id]
    assert list_runs(cast.reader.client, experiment="none") == []


def test_repeating_status_in_the_run_list_means_or(cast, make_run):
    running = make_run()
    done = make_run()
    services.run_set_status(run=done, status=RunStatus.COMPLETED)
    failed = make_run()
    services.run_set_status(run=failed, status=RunStatus.FAILED)

    response = cast.reader.client.get("/api/v1/workspaces/lab/runs?status=Completed&status=Running")

    assert set(run_ids(response)) == {running.run_id, done.run_id}
    assert list_runs(cast.reader.client, status="Failed") == [failed.run_id]


def test_an_unknown_status_filter_is_a_400(cast):
    response = cast.reader.client.get("/api/v1/workspaces/lab/runs", {"status": "Done"})

    assert response.status_code == 400
    assert error(response)["field"] == "status"


def test_tag_filters_match_a_key_or_a_value_and_repeat_as_and(cast, make_run):
    both = make_run(tags={"team": "vision", "best": None})
    vision = make_run(tags={"team": "vision"})
    audio = make_run(tags={"team": "audio", "best": None})
    make_run()

    assert set(list_runs(cast.reader.client, tag="team")) == {
        both.run_id,
        vision.run_id,
        audio.run_id,
    }
    assert set(list_runs(cast.reader.client, tag="team=vision")) == {both.run_id, vision.run_id}
    response = cast.reader.client.get("/api/v1/workspaces/lab/runs?tag=team=vision&tag=best")
    assert run_ids(response) == [both.run_id]


def test_property_filters_match_key_and_value_and_repeat_as_and(cast, make_run):
    match = make_run(properties={"seed": "1", "data": "v2"})
    make_run(properties={"seed": "1", "data": "v1"})
    make_run(properties={"seed": "2"})

    response = cast.reader.client.get(
        "/api/v1/workspaces/lab/runs?property=seed=1&property=data=v2"
    )

    assert run_ids(response) == [match.run_id]
    assert len(list_runs(cast.reader.client, property="seed=1")) == 2


def test_a_tag_filter_without_a_key_is_a_400(cast):
    response = cast.reader.client.get("/api/v1/workspaces/lab/runs", {"tag": "=x"})

    assert response.status_code == 400
    assert error(response)["field"] == "tag"


def test_the_run_list_filters_by_parent_and_top_level(cast, make_run):
    root = make_run()
    other_root = make_run()
    child = make_run(parent=root)
    make_run(parent=child)

    assert list_runs(cast.reader.client, parent=root.run_id) == [child.run_id]
    assert list_runs(cast.reader.client, top_level="1") == [other_root.run_id, root.run_id]


def test_a_parent_filter_on_an_unknown_run_is_a_404(cast):
    response = cast.reader.client.get("/api/v1/workspaces/lab/runs", {"parent": "nope"})

    assert response.status_code == 404


def test_the_run_list_pages_through_every_run_once(cast, make_run):
    made = [make_run().run_id for _ in range(7)]
    seen, cursor, pages = [], None, 0

    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        body = cast.reader.client.get("/api/v1/workspaces/lab/runs", params).json()
        seen += [r["run_id"] for r in body["results"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert pages == 3
    assert seen == list(reversed(made))


def test_a_body_search_pages_a_sorted_list_with_the_cursor_its_schema_allows(cast, make_run):
    import json

    import jsonschema

    for lr in (5, 1, 4, 2, 3):
        make_run(properties={"lr": str(lr)})
    served = json.loads(cast.reader.client.get("/api/schema/", {"format": "json"}).content)
    body_schema = served["components"]["schemas"]["RunSearchRequest"]
    runs_get = served["paths"]["/api/v1/workspaces/{workspace}/runs"]["get"]
    # One declaration: the body takes exactly the GET list's query parameters.
    assert set(body_schema["properties"]) == {
        p["name"] for p in runs_get["parameters"] if p["in"] == "query"
    }

    url = "/api/v1/workspaces/lab/runs/search"
    body = {"sort": "properties.lr", "limit": 2}
    seen = []
    while True:
        jsonschema.validate(body, body_schema)  # a sorted list's cursor is opaque, not digits
        page = cast.reader.client.post(url, body, format="json").json()
        seen += [r["properties"]["lr"] for r in page["results"]]
        if page["next_cursor"] is None:
            break
        body = {**body, "cursor": page["next_cursor"]}

    assert seen == ["1", "2", "3", "4", "5"]


@pytest.mark.parametrize("limit", ["0", "1001", "many"])
def test_a_bad_page_size_is_a_400(cast, limit):
    response = cast.reader.client.get("/api/v1/workspaces/lab/runs", {"limit": limit})

    assert response.status_code == 400
    assert error(response)["field"] == "limit"


def test_the_run_list_shows_only_the_workspaces_runs(cast, make_run):
    mine = make_run()
    elsewhere = services.workspace_create(name="third", owner=cast.owner.user)
    exp, _ = services.experiment_get_or_create(workspace=elsewhere, name="exp")
    services.run_create(experiment=exp, spec=services.RunSpec(), submitter=cast.owner.user)

    assert list_runs(cast.owner.client) == [mine.run_id]


# ---------------------------------------------------------------------------------------------
# Status lifecycle


def set_status(client, run, status, **extra):
    return client.post(run_url(run, "/status"), {"status": status, **extra}, format="json")


def test_a_run_may_skip_forward_from_not_started_to_running(cast, make_run):
    run = make_run(status=RunStatus.NOT_STARTED)

    response = set_status(cast.contributor.client, run, "Running")

    assert response.status_code == 200
    assert response.json()["status"] == "Running"
    assert response.json()["started_at"] is not None
    assert response.json()["ended_at"] is None


def test_every_transition_is_recorded_with_who_made_it(cast, make_run):
    run = make_run(status=RunStatus.QUEUED)

    set_status(cast.contributor.client, run, "Running")
    set_status(cast.owner.client, run, "Finalizing")
    set_status(cast.contributor.client, run, "Completed")

    events = list(
        StatusEvent.objects.filter(run=run).values_list("from_status", "to_status", "by__username")
    )
    assert events == [
        ("", "Queued", "carl"),
        ("Queued", "Running", "carl"),
        ("Running", "Finalizing", "olivia"),
        ("Finalizing", "Completed", "carl"),
    ]


def test_a_terminal_status_sets_the_end_time(cast, make_run):
    run = make_run()

    response = set_status(cast.contributor.client, run, "Completed")

    assert response.json()["ended_at"] is not None
    run.refresh_from_db()
    assert run.ended_at is not None and run.ended_at >= run.started_at


def test_a_failed_run_shows_its_error(cast, make_run):
    run = make_run()

    response = set_status(
        cast.contributor.client, run, "Failed", error={"code": "UserError", "message": "boom"}
    )

    assert response.status_code == 200
    assert response.json()["error"] == {"code": "UserError", "message": "boom"}
    assert cast.reader.client.get(run_url(run)).json()["error"]["message"] == "boom"


def test_a_cancel_request_is_followed_by_canceled(cast, make_run):
    run = make_run()

    first = set_status(cast.contributor.client, run, "CancelRequested")
    second = set_status(cast.contributor.client, run, "Canceled")

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["status"] == "Canceled"
    assert second.json()["ended_at"] is not None


def test_a_run_asked_to_cancel_cannot_complete(cast, make_run):
    run = make_run()
    set_status(cast.contributor.client, run, "CancelRequested")

    response = set_status(cast.contributor.client, run, "Completed")

    assert response.status_code == 409
    assert error(response)["code"] == "invalid_transition"
    run.refresh_from_db()
    assert run.status == "CancelRequested"


@pytest.mark.parametrize(
    ("path", "late"),
    [
        (["Completed"], "Running"),
        (["CancelRequested", "Canceled"], "Completed"),  # a late complete after cancel
        (["Failed"], "Completed"),
        (["Completed"], "Failed"),
    ],
)
def test_a_finished_run_keeps_its_status(cast, make_run, path, late):
    run = make_run()
    for status in path:
        assert set_status(cast.contributor.client, run, status).status_code == 200
    events = StatusEvent.objects.filter(run=run).count()

    response = set_status(cast.contributor.client, run, late)

    assert response.status_code == 409
    assert "final" in error(response)["message"]
    run.refresh_from_db()
    assert run.status == path[-1]
    assert StatusEvent.objects.filter(run=run).count() == events


def test_canceling_an_interactive_run_cancels_it_at_once(cast, make_run):
    run = make_run()

    response = cast.contributor.client.post(run_url(run, "/cancel"))

    assert response.status_code == 200
    assert response.json()["status"] == "Canceled"
    assert response.json()["ended_at"] is not None
    event = StatusEvent.objects.filter(run=run).last()
    assert (event.from_status, event.to_status, event.by) == (
        "Running",
        "Canceled",
        cast.contributor.user,
    )


def test_canceling_a_run_on_a_worker_asks_the_worker_to_stop_it(cast, make_run):
    run = make_run(compute_target="local")

    response = cast.contributor.client.post(run_url(run, "/cancel"))

    assert response.json()["status"] == "CancelRequested"
    assert response.json()["ended_at"] is None


def test_canceling_a_finished_run_is_a_409(cast, make_run):
    run = make_run()
    set_status(cast.contributor.client, run, "Completed")

    response = cast.contributor.client.post(run_url(run, "/cancel"))

    assert response.status_code == 409
    run.refresh_from_db()
    assert run.status == "Completed"


def test_moving_backwards_is_a_409(cast, make_run):
    run = make_run()

    response = set_status(cast.contributor.client, run, "Queued")

    assert response.status_code == 409
    assert "cannot become Queued" in error(response)["message"]


def test_setting_the_current_status_again_is_a_no_op(cast, make_run):
    run = make_run()
    set_status(cast.contributor.client, run, "Completed")

    response = set_status(cast.contributor.client, run, "Completed")

    assert response.status_code == 200
    assert StatusEvent.objects.filter(run=run, to_status="Completed").count() == 1


def test_an_unknown_status_is_a_400(cast, make_run):
    run = make_run()

    response = set_status(cast.contributor.client, run, "Done")

    assert response.status_code == 400
    assert error(response)["field"] == "status"


# ---------------------------------------------------------------------------------------------
# Query counts: pinned, and independent of the number of runs


def count_queries(client, url) -> int:
    client.get(url)  # the first request of a token also stamps its last use
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


def test_the_run_list_takes_the_same_few_queries_for_5_or_25_runs(cast, make_run):
    def add_runs(n):
        parent = None
        for i in range(n):  # every other run a child, so parents are joined in too
            run = make_run(parent=parent, tags={"i": str(i)}, properties={"p": str(i)})
            parent = None if parent else run

    add_runs(5)
    with_5 = count_queries(cast.reader.client, "/api/v1/workspaces/lab/runs")
    add_runs(20)
    with_25 = count_queries(cast.reader.client, "/api/v1/workspaces/lab/runs")

    assert Run.objects.count() == 25
    assert Run.objects.filter(parent__isnull=False).count() == 12
    # token, membership, the bounded total (`count`), the page's sorted ids, runs (with
    # workspace, experiment, parent, submitter), tags, properties; on PostgreSQL the time
    # budget's savepoint, SET LOCAL statement_timeout and release
    budget = 3 if connection.vendor == "postgresql" else 0
    assert with_5 == with_25 == 7 + budget


def test_a_run_takes_a_pinned_number_of_queries(cast, make_run, django_assert_num_queries):
    parent = make_run()
    run = make_run(parent=parent, tags={"a": "1", "b": "2"}, properties={"p": "1", "q": "2"})
    cast.reader.client.get(run_url(run))

    # token, run (with workspace, experiment, parent, submitter), membership, tags, properties
    with django_assert_num_queries(5):
        response = cast.reader.client.get(run_url(run))

    assert response.json()["tags"] == {"a": "1", "b": "2"}


def test_a_child_keeps_the_run_id_its_creator_chose(cast, make_run):
    parent = make_run()
    url = f"/api/v1/runs/{parent.run_id}/children"
    response = cast.contributor.client.post(
        url, {"runs": [{"run_id": "my-child-1"}]}, format="json"
    )
    assert response.status_code == 201
    # A chosen id lives in its workspace's namespace (docs/architecture.md, "No existence
    # oracles").
    assert response.json()["results"][0]["run_id"] == "lab~my-child-1"

    again = cast.contributor.client.post(url, {"runs": [{"run_id": "my-child-1"}]}, format="json")
    assert again.status_code == 409
    assert "lab~my-child-1" in again.json()["error"]["message"]
    assert parent.children.count() == 1
