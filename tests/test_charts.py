"""Figures (runs/charts.py, pure), the chart JSON views and the compare page."""

import math

import pytest
from django.core.cache import cache

from runs import charts, services


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()


def series_item(label, xs, ys, **extra):
    return {
        "label": label,
        "points": {"x": xs, "y": ys},
        "nan": {"x": [], "count": []},
        **extra,
    }


# --- pure figures ------------------------------------------------------------------------------


def test_ema_matches_tensorboards_debiased_smoothing():
    assert charts.ema([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])
    smoothed = charts.ema([0.0, 10.0], 0.5)
    # last = 0.5*0 + 0.5*0 = 0 → /0.5 = 0; then 0.5*0 + 0.5*10 = 5 → /(1-0.25) = 6.667
    assert smoothed == pytest.approx([0.0, 20 / 3])
    assert charts.ema([1.0, None, 3.0], 0.0) == [1.0, None, 3.0]
    assert charts.ema([1.0, None, 3.0], 0.5)[1] is None
    with pytest.raises(ValueError):
        charts.ema([1.0], 1.0)


def test_line_figure_draws_one_line_per_run():
    figure = charts.line_figure(
        [series_item("a", [0, 1], [1.0, 0.5]), series_item("b", [0, 1], [2.0, 1.5])],
        title="loss",
    )
    lines = [t for t in figure["data"] if t["meta"]["role"] == "raw"]
    assert [t["name"] for t in lines] == ["a", "b"]
    assert lines[0]["line"]["color"] != lines[1]["line"]["color"]
    assert figure["layout"]["title"]["text"] == "loss"
    assert figure["layout"]["xaxis"]["type"] == "linear"
    assert figure["layout"]["showlegend"] is True


def test_line_figure_smoothing_keeps_a_faint_raw_line_behind():
    figure = charts.line_figure([series_item("a", [0, 1, 2], [1.0, 3.0, 1.0])], smoothing=0.6)
    roles = [t["meta"]["role"] for t in figure["data"]]
    assert roles == ["raw", "smoothed"]
    raw, smooth = figure["data"]
    assert raw["opacity"] < 1 and raw["showlegend"] is False
    assert smooth["y"] == pytest.approx(charts.ema([1.0, 3.0, 1.0], 0.6))


def test_line_figure_wall_time_is_a_date_axis_in_milliseconds():
    figure = charts.line_figure(
        [series_item("a", [1_700_000_000.0], [1.0])], x="time", x_range=[1_700_000_000.0, 2e9]
    )
    assert figure["layout"]["xaxis"]["type"] == "date"
    assert figure["data"][0]["x"] == [1_700_000_000_000.0]
    assert figure["layout"]["xaxis"]["range"] == [1_700_000_000_000.0, 2e12]
    relative = charts.line_figure([series_item("a", [0.0, 1.5], [1.0, 2.0])], x="relative")
    assert relative["layout"]["xaxis"]["title"]["text"] == "relative time (s)"


def test_line_figure_marks_nan_and_says_how_many():
    item = series_item("a", [0, 1, 2], [1.0, None, 2.0])
    item["nan"] = {"x": [1], "count": [1]}
    figure = charts.line_figure([item])
    marks = [t for t in figure["data"] if t["meta"]["role"] == "nan"]
    assert len(marks) == 1 and marks[0]["x"] == [1] and marks[0]["yaxis"] == "y2"
    assert "1 NaN" in figure["layout"]["annotations"][0]["text"]
    assert figure["data"][0]["connectgaps"] is False


def test_line_figure_without_points_says_no_data():
    figure = charts.line_figure([])
    assert figure["layout"]["annotations"][-1]["text"] == "No data"


def test_line_figure_escapes_run_names_in_hover_text():
    figure = charts.line_figure([series_item("<b>x</b>", [0], [1.0])])
    assert "&lt;b&gt;" in figure["data"][0]["hovertemplate"]


def test_summary_bar_figure_groups_last_min_max_and_skips_nan():
    rows = [
        {"label": "a", "last": 0.2, "min": 0.1, "max": 0.9},
        {"label": "b", "last": math.nan, "min": None, "max": 0.8},
    ]
    figure = charts.summary_bar_figure(rows, metric="loss")
    assert [t["name"] for t in figure["data"]] == ["last", "min", "max"]
    assert figure["data"][0]["y"] == [0.2, None]
    assert figure["data"][1]["y"] == [0.1, None]
    assert figure["data"][2]["x"] == ["a", "b"]
    assert figure["layout"]["barmode"] == "group"


def test_scatter_figure_leaves_out_runs_missing_a_value():
    figure = charts.scatter_figure(
        [
            {"label": "a", "x": 0.01, "y": 0.9},
            {"label": "b", "x": None, "y": 0.8},
            {"label": "c", "x": 0.1, "y": 0.7},
        ],
        x_label="lr",
        y_label="acc (max)",
    )
    trace = figure["data"][0]
    assert trace["x"] == [0.01, 0.1] and trace["text"] == ["a", "c"]
    assert figure["layout"]["title"]["text"] == "acc (max) vs lr"


def test_children_figure_highlights_the_best_child():
    rows = [
        {"label": "c1", "min": 0.3, "max": 0.9, "status": "Completed"},
        {"label": "c2", "min": 0.1, "max": 0.7, "status": "Completed"},
    ]
    low = charts.children_figure(rows, metric="loss", best="min")
    assert low["data"][0]["y"] == [0.3, 0.1]
    assert low["data"][0]["marker"]["color"][1] != low["data"][0]["marker"]["color"][0]
    assert "0.1" in low["layout"]["title"]["text"]
    high = charts.children_figure(rows, metric="acc", best="max", kind="scatter")
    assert high["data"][0]["type"] == "scatter" and "0.9" in high["layout"]["title"]["text"]
    with pytest.raises(ValueError):
        charts.children_figure(rows, metric="acc", best="median")


def test_plot_values_read_numbers_durations_bare_tags_and_text():
    from datetime import timedelta

    from runs.compare import plot_value

    assert plot_value(0.1) == 0.1 and plot_value("0.01") == 0.01 and plot_value(3) == 3.0
    assert plot_value(timedelta(seconds=12)) == 12.0
    assert plot_value(True) == "(set)"  # a bare tag, as run_rows reads it
    assert plot_value("adam") == "adam"
    assert plot_value(float("nan")) is None and plot_value(None) is None


def test_old_compare_column_spellings_read_as_run_list_keys():
    from runs.compare import legacy_column_key

    assert legacy_column_key("metric:loss:min") == "metrics.loss.min"
    assert legacy_column_key("metric:val:loss:max") == "metrics.`val:loss`.max"
    assert legacy_column_key("metric:loss:median") is None
    assert legacy_column_key("tag:lr") == "tags.lr"
    assert legacy_column_key("property:batch size") == "properties.`batch size`"
    assert legacy_column_key("attr:duration (s)") == "duration"
    for today in ("metrics.loss.last", "tags.lr", "duration", "properties.`a:b`", ""):
        assert legacy_column_key(today) is None


# --- chart views -------------------------------------------------------------------------------


def logged_run(make_run, name="r", values=None, **spec):
    run = make_run(display_name=name, **spec)
    services.run_log_batch(
        run=run,
        metrics=[{"name": "loss", "kind": "scalar", "values": values or [1.0, 0.5, 0.25]}],
    )
    return run


def signed_in(client, member):
    client.force_login(member.user)
    return client


def test_metric_figure_draws_each_run_for_a_reader(client, cast, make_run):
    a, b = logged_run(make_run, "a"), logged_run(make_run, "b", [3.0, 2.0])
    signed_in(client, cast.reader)
    response = client.get(
        "/charts/metric/", {"run": [a.run_id, b.run_id], "metric": "loss", "smoothing": "0.5"}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert [s["run_id"] for s in body["series"]] == [a.run_id, b.run_id]
    smoothed = [t for t in body["figure"]["data"] if t["meta"]["role"] == "smoothed"]
    assert [t["name"] for t in smoothed] == ["a", "b"]


def test_metric_figure_zooms_with_an_x_range(client, cast, make_run):
    run = logged_run(make_run, "a", [float(i) for i in range(50)])
    signed_in(client, cast.reader)
    body = client.get(
        "/charts/metric/", {"run": run.run_id, "metric": "loss", "x_min": 10, "x_max": 12}
    ).json()
    assert body["figure"]["data"][0]["x"] == [10, 11, 12]
    assert body["figure"]["layout"]["xaxis"]["range"] == [10.0, 12.0]


def test_metric_figure_refuses_outsiders_anonymous_and_bad_input(client, cast, make_run):
    run = logged_run(make_run)
    assert client.get("/charts/metric/", {"run": run.run_id}).status_code == 401
    signed_in(client, cast.outsider)
    assert client.get("/charts/metric/", {"run": run.run_id, "metric": "loss"}).status_code == 404
    signed_in(client, cast.reader)
    bad = client.get("/charts/metric/", {"run": run.run_id, "metric": "loss", "smoothing": "2"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "smoothing"
    assert client.get("/charts/metric/").json()["error"]["field"] == "run"
    assert client.post("/charts/metric/", {"run": run.run_id}).status_code == 405


def test_children_figure_shows_each_childs_best_value(client, cast, make_run):
    parent = make_run(display_name="sweep")
    for name, values in (("c1", [0.9, 0.4]), ("c2", [0.8, 0.2, 0.3])):
        child = make_run(display_name=name, parent=parent)
        services.run_log_batch(
            run=child, metrics=[{"name": "loss", "kind": "scalar", "values": values}]
        )
    signed_in(client, cast.reader)
    body = client.get("/charts/children/", {"run": parent.run_id, "metric": "loss"}).json()
    assert body["children"] == 2
    assert body["figure"]["data"][0]["x"] == ["c1", "c2"]
    assert body["figure"]["data"][0]["y"] == [0.4, 0.2]
    signed_in(client, cast.outsider)
    assert client.get("/charts/children/", {"run": parent.run_id}).status_code == 404


# --- the compare page --------------------------------------------------------------------------


def test_compare_page_shows_the_runs_and_their_charts(client, cast, make_run):
    a = logged_run(make_run, "alpha", tags={"lr": "0.1"})
    b = logged_run(make_run, "beta", [4.0, 3.0], tags={"lr": "0.01"})
    signed_in(client, cast.reader)
    response = client.get(f"/w/lab/compare/?run={a.run_id}&run={b.run_id}")
    assert response.status_code == 200
    html = response.content.decode()
    assert "alpha" in html and "beta" in html
    assert f'data-run="{a.run_id} {b.run_id}"' in html
    assert 'id="compare-bar"' in html and 'id="compare-scatter"' in html
    assert "plotly.min.js" in html and "js/charts.js" in html
    assert "<script>" not in html  # data rides in json_script, behaviour in static/
    assert response.context["metric"] == "loss"
    assert response.context["sx"] == "tags.lr" and response.context["sy"] == "metrics.loss.last"
    bar = response.context["bar_figure"]
    assert bar["data"][0]["y"] == [0.25, 3.0]


def test_compare_page_is_404_for_an_outsider_or_a_run_of_another_workspace(client, cast, make_run):
    run = logged_run(make_run)
    signed_in(client, cast.outsider)
    assert client.get(f"/w/lab/compare/?run={run.run_id}").status_code == 404
    assert client.get(f"/w/elsewhere/compare/?run={run.run_id}").status_code == 404
    signed_in(client, cast.reader)
    assert client.get(f"/w/lab/compare/?run={run.run_id}&run=nope").status_code == 404


def test_compare_page_signed_out_goes_to_sign_in(client, cast, make_run):
    run = logged_run(make_run)
    response = client.get(f"/w/lab/compare/?run={run.run_id}")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_compare_page_escapes_user_text(client, cast, make_run):
    run = logged_run(make_run, "<script>alert(1)</script>")
    signed_in(client, cast.reader)
    html = client.get(f"/w/lab/compare/?run={run.run_id}").content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_compare_page_without_runs_explains_what_to_do(client, cast):
    signed_in(client, cast.reader)
    response = client.get("/w/lab/compare/")
    assert response.status_code == 200
    assert "at least one run" in response.content.decode()


def test_compare_page_query_count_does_not_grow_with_runs(
    client, cast, make_run, django_assert_max_num_queries
):
    ids = [logged_run(make_run, f"r{i}").run_id for i in range(8)]
    signed_in(client, cast.reader)
    query = "&".join(f"run={run_id}" for run_id in ids)
    with django_assert_max_num_queries(12):
        assert client.get(f"/w/lab/compare/?{query}").status_code == 200


# --- the compare page speaks the run list's column language ----------------------------------


def test_compare_columns_are_run_list_keys_with_the_run_lists_values(client, cast, make_run):
    from datetime import timedelta

    from django.utils import timezone

    from runs.models import Run

    a = logged_run(make_run, "a", [1.0, float("nan")], tags={"opt": "adam", "baseline": None})
    b = logged_run(make_run, "b", [2.0, 0.5], tags={"opt": "sgd"})
    services.run_add_properties(run=a, properties={"lr": "0.1"})
    services.run_add_properties(run=b, properties={"lr": "0.01"})
    end = timezone.now()
    Run.objects.filter(pk=a.pk).update(started_at=end - timedelta(seconds=90), ended_at=end)
    Run.objects.filter(pk=b.pk).update(started_at=end - timedelta(seconds=30), ended_at=end)
    signed_in(client, cast.reader)
    page = client.get(
        f"/w/lab/compare/?run={a.run_id}&run={b.run_id}&sx=duration&sy=metrics.loss.last"
    )
    assert page.status_code == 200
    keys = [c.key for c in page.context["columns"]]
    assert keys[:3] == ["metrics.loss.last", "metrics.loss.min", "metrics.loss.max"]
    assert {"properties.lr", "tags.opt", "tags.baseline", "duration"} <= set(keys)
    html = page.content.decode()
    assert '<option value="properties.lr">properties.lr</option>' in html
    # The scatter plots the list's duration (seconds) against the list's last value: a NaN
    # last value is left out, as a gap.
    trace = page.context["scatter_figure"]["data"][0]
    assert trace["x"] == [30.0] and trace["y"] == [0.5]
    # The diff table's rows are the same columns; durations read as on the list.
    rows = {row["field"].key: row for row in page.context["diff_rows"]}
    assert rows["duration"]["differs"] and "1m 30s" in html and "30.0s" in html
    assert rows["tags.baseline"]["values"] == [True, None]
    assert 'data-key="properties.lr"' in html and 'data-key="metrics.loss.min"' in html
    # Any spelling the search language reads names the same column.
    again = client.get(
        f"/w/lab/compare/?run={a.run_id}&run={b.run_id}&sx=params.lr&sy=metrics.loss"
    )
    assert again.context["sx"] == "properties.lr" and again.context["sy"] == "metrics.loss.last"


def test_an_old_compare_url_moves_to_the_same_columns_named_by_their_keys(client, cast, make_run):
    a = logged_run(make_run, "a", tags={"lr": "0.1"})
    b = logged_run(make_run, "b", tags={"lr": "0.2"})
    signed_in(client, cast.reader)
    old = (
        f"/w/lab/compare/?run={a.run_id}&run={b.run_id}&metric=loss"
        "&sx=tag%3Alr&sy=metric%3Aloss%3Amin"
    )
    moved = client.get(old)
    assert moved.status_code == 301
    location = moved["Location"]
    assert "sx=tags.lr" in location and "sy=metrics.loss.min" in location
    assert f"run={a.run_id}" in location and "metric=loss" in location
    page = client.get(location)
    assert page.context["sx"] == "tags.lr" and page.context["sy"] == "metrics.loss.min"
    duration = client.get(f"/w/lab/compare/?run={a.run_id}&sx=attr%3Aduration+%28s%29")
    assert duration.status_code == 301 and "sx=duration" in duration["Location"]
    # The move answers nobody who could not see the page: an outsider is still refused.
    signed_in(client, cast.outsider)
    assert client.get(old).status_code == 404


def test_two_live_runs_started_together_do_not_differ_in_duration(client, cast, make_run):
    from datetime import timedelta

    from django.utils import timezone

    from runs.models import Run

    a, b = logged_run(make_run, "a"), logged_run(make_run, "b")
    start = timezone.now() - timedelta(seconds=5)
    Run.objects.filter(pk__in=[a.pk, b.pk]).update(started_at=start, ended_at=None)
    Run.objects.filter(pk=b.pk).update(started_at=start + timedelta(microseconds=30))
    signed_in(client, cast.reader)
    page = client.get(f"/w/lab/compare/?run={a.run_id}&run={b.run_id}&diff=1")
    keys = [row["field"].key for row in page.context["diff_rows"]]
    assert "duration" not in keys


def test_the_scatter_plots_the_most_important_parameter_against_the_metric_by_default(
    client, cast, make_run
):
    ids = []
    for i, (noise, lr) in enumerate([("3", "0.1"), ("1", "0.03"), ("4", "0.01"), ("2", "0.001")]):
        run = logged_run(make_run, f"t{i}", [2.0, 1.0 - 0.2 * i])  # lower lr, lower loss
        services.run_add_properties(run=run, properties={"a_noise": noise, "lr": lr})
        ids.append(run.run_id)
    signed_in(client, cast.reader)
    page = client.get("/w/lab/compare/?" + "&".join(f"run={i}" for i in ids))
    assert page.context["hp_importance"][0]["key"] == "properties.lr"
    assert page.context["sx"] == "properties.lr"  # not a_noise, the first key
    assert page.context["sy"] == "metrics.loss.last"


def test_compare_ignores_columns_it_cannot_read_and_never_fails(client, cast, make_run):
    run = logged_run(make_run, "a", tags={"lr": "0.1"})
    signed_in(client, cast.reader)
    bad_keys = ("status", "metrics.", "tags.`x", "metric:", "tag:", "attr:created", "x" * 5000)
    for bad in bad_keys:
        page = client.get("/w/lab/compare/", {"run": run.run_id, "sx": bad, "sy": bad})
        assert page.status_code == 200, bad
        assert page.context["sy"] == "metrics.loss.last" and page.context["sx"] == "tags.lr"
    # A NUL is refused before any view runs (the studio-wide rule), as a 400.
    nul = client.get("/w/lab/compare/", {"run": run.run_id, "sx": "\x00"})
    assert nul.status_code == 400


def test_a_scatter_of_a_log_spaced_sweep_gets_a_log_axis_and_close_values_do_not():
    points = [
        {"label": f"r{i}", "x": lr, "y": loss}
        for i, (lr, loss) in enumerate([(0.1, 0.5), (0.01, 0.4), (0.001, 0.3), (0.0001, 0.35)])
    ]
    figure = charts.scatter_figure(points, x_label="lr", y_label="loss")
    assert figure["layout"]["xaxis"]["type"] == "log"
    assert "type" not in figure["layout"]["yaxis"]  # 0.3 … 0.5 stays linear
    mixed = [{"label": "a", "x": 0.0, "y": 1.0}, {"label": "b", "x": 100.0, "y": 2.0}]
    assert "type" not in charts.scatter_figure(mixed, x_label="x", y_label="y")["layout"]["xaxis"]
    words = [{"label": "a", "x": "adam", "y": 1.0}, {"label": "b", "x": "sgd", "y": 200.0}]
    words_figure = charts.scatter_figure(words, x_label="opt", y_label="y")
    assert "type" not in words_figure["layout"]["xaxis"]
