"""The compare page with several metrics: a grid of charts picked with a filterable metric
picker, one x-axis for all, and a diff table that highlights what differs (or shows only that)."""

import pytest

from runs import services

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pair(make_run):
    runs = []
    for lr, opt in (("0.1", "adam"), ("0.01", "adam")):
        run = make_run("sweep", display_name=f"lr={lr}", tags={"optimizer": opt})
        services.run_add_properties(run=run, properties={"lr": lr, "epochs": "10"})
        services.run_log_batch(
            run=run,
            metrics=[
                {"name": "loss", "kind": "scalar", "values": [1.0, float(lr)]},
                {"name": "accuracy", "kind": "scalar", "values": [0.5, 0.9]},
                {"name": "val_loss", "kind": "scalar", "values": [1.2, 0.4]},
            ],
        )
        runs.append(run)
    return runs


def test_several_metrics_chart_together_and_the_diff_table_shows_what_differs(
    page, live_server, cast, pair, sign_in, screenshot
):
    sign_in(page, cast.reader, "/w/lab/")
    page.goto(f"{live_server.url}/w/lab/compare/?run={pair[0].run_id}&run={pair[1].run_id}")
    assert page.locator(".compare-metrics .rs-chart").count() == 1  # loss by default

    page.click("details.metric-picker > summary")
    page.fill(".metric-filter", "acc")
    visible = page.locator(".metric-picker [data-metric-name]:visible").all_inner_texts()
    assert [v.strip() for v in visible] == ["accuracy"]
    page.check(".metric-picker input[value=accuracy]")
    page.click(".metric-picker button[type=submit]")
    page.wait_for_load_state()
    charts = page.locator(".compare-metrics .rs-chart")
    assert charts.count() == 2
    assert [charts.nth(i).get_attribute("data-metric") for i in range(2)] == ["accuracy", "loss"]
    page.locator(".compare-metrics .rs-chart .js-plotly-plot").nth(1).wait_for()

    with page.expect_navigation():
        page.select_option("select[name=x]", "relative")
    assert all(c.get_attribute("data-x") == "relative" for c in charts.all())

    diff = page.locator("#compare-diff tbody tr")
    differing = page.locator("#compare-diff tbody tr.differs th").all_inner_texts()
    assert any("lr" in t for t in differing) and not any("epochs" in t for t in differing)
    assert any("epochs" in t for t in diff.locator("th").all_inner_texts())
    screenshot(page, "compare_metrics_grid")

    with page.expect_navigation():
        page.check("input[name=diff]")
    rows = page.locator("#compare-diff tbody tr")
    assert rows.count() == page.locator("#compare-diff tbody tr.differs").count() > 0
    assert not any("epochs" in t for t in rows.locator("th").all_inner_texts())
    screenshot(page, "compare_only_differences")


def test_a_sweeps_children_open_in_the_hyperparameter_analysis(
    page, live_server, cast, make_run, sign_in, screenshot
):
    parent = make_run("sweep", display_name="sweep")
    for i, (lr, opt) in enumerate(
        [("0.1", "adam"), ("0.03", "sgd"), ("0.01", "adam"), ("0.003", "sgd"), ("0.001", "adam")]
    ):
        child = make_run("sweep", parent=parent, display_name=f"trial-{i}", tags={"opt": opt})
        services.run_add_properties(run=child, properties={"lr": lr, "seed": str((i * 7) % 5)})
        loss = 1.0 - 0.15 * i
        services.run_log_batch(
            run=child, metrics=[{"name": "loss", "kind": "scalar", "values": [1.5, loss]}]
        )
    sign_in(page, cast.reader, "/w/lab/")
    page.goto(f"{live_server.url}/w/lab/runs/{parent.run_id}/?tab=children")
    page.click("#analyze-children")
    page.wait_for_load_state()
    assert "Compare 5 runs" in page.locator("h1").inner_text()
    page.locator("#compare-parcoords .parcoords").first.wait_for()
    labels = [t.text_content() for t in page.locator("#compare-parcoords text.axis-title").all()]
    assert labels == ["lr", "seed", "opt", "loss (last)"]
    rows = page.locator("#compare-importance tbody tr")
    assert rows.first.locator("td").first.inner_text() == "lr"
    assert rows.first.locator("td.num").inner_text() == "1.00"  # lower lr, lower loss
    page.locator("#hyperparameters").scroll_into_view_if_needed()
    screenshot(page, "compare_hyperparameters")


def test_log_y_and_ignore_outliers_apply_to_every_chart_of_the_grid(
    page, live_server, cast, make_run, sign_in, screenshot
):
    runs = []
    for i in range(2):
        run = make_run("spiky", display_name=f"spiky-{i}")
        values = [1.0 / (k + 1) for k in range(40)]
        values[20] = 1000.0  # one spike
        services.run_log_batch(
            run=run,
            metrics=[
                {"name": "loss", "kind": "scalar", "values": values},
                {"name": "grad_norm", "kind": "scalar", "values": values},
            ],
        )
        runs.append(run)
    sign_in(page, cast.reader, "/w/lab/")
    ids = "&".join(f"run={r.run_id}" for r in runs)
    page.goto(f"{live_server.url}/w/lab/compare/?{ids}&metric=loss&metric=grad_norm")
    with page.expect_navigation():
        page.check("input[name=clip]")
    with page.expect_navigation():
        page.check("input[name=log_y]")
    with page.expect_navigation():
        page.select_option("select[name=smoothing]", "0.6")
    charts = page.locator(".compare-metrics .rs-chart")
    assert charts.count() == 2
    for i in range(2):
        chart = charts.nth(i)
        chart.locator(".js-plotly-plot").wait_for()
        page.wait_for_function(
            "el => Number(el.dataset.fetches || 0) >= 1", arg=chart.element_handle()
        )
        assert chart.locator(".rs-chart-log").is_checked()
        assert chart.locator(".rs-chart-clip").is_checked()
        assert chart.locator(".rs-chart-smoothing").input_value() == "0.6"
        axis = chart.locator(".js-plotly-plot").evaluate("el => el.layout.yaxis")
        assert axis["type"] == "log"
        assert 10 ** axis["range"][1] < 1000  # the spike at 1000 is out of the y range
    screenshot(page, "compare_log_outliers")


def test_the_child_runs_tab_shows_tags_and_properties_as_columns(
    page, live_server, cast, make_run, sign_in, screenshot
):
    parent = make_run("sweep", display_name="sweep")
    for i, opt in enumerate(("adam", "sgd")):
        child = make_run("sweep", parent=parent, display_name=f"trial-{i}", tags={"opt": opt})
        services.run_add_properties(run=child, properties={"lr": f"0.{i + 1}"})
    sign_in(page, cast.reader, "/w/lab/")
    page.goto(f"{live_server.url}/w/lab/runs/{parent.run_id}/?tab=children")
    page.select_option("select[name=kv]", ["properties.lr", "tags.opt"])
    with page.expect_navigation():
        page.click(".rd-toolbar button[type=submit]")
    headers = page.locator("#run-children thead th").all_inner_texts()
    assert "properties.lr" in headers and "tags.opt" in headers
    cells = page.locator("#run-children tbody td.rd-kvcell").all_inner_texts()
    assert cells == ["0.1", "adam", "0.2", "sgd"]
    screenshot(page, "children_kv_columns")


def test_the_scatter_picks_run_list_columns_and_an_old_compare_link_still_opens(
    page, live_server, cast, pair, sign_in, screenshot
):
    ids = f"run={pair[0].run_id}&run={pair[1].run_id}"
    sign_in(page, cast.reader, "/w/lab/")
    page.goto(f"{live_server.url}/w/lab/compare/?{ids}")
    options = page.locator("select[name=sx] option").all_inner_texts()
    assert {"metrics.loss.last", "properties.lr", "tags.optimizer", "duration"} <= set(options)
    with page.expect_navigation():
        page.select_option("select[name=sx]", "properties.lr")
    with page.expect_navigation():
        page.select_option("select[name=sy]", "metrics.accuracy.max")
    assert "sx=properties.lr" in page.url and "sy=metrics.accuracy.max" in page.url
    page.wait_for_selector("#compare-scatter .main-svg")
    title = page.locator("#compare-scatter .gtitle").text_content()
    assert title == "accuracy (max) vs lr (property)"
    assert page.locator("#compare-scatter g.scatterlayer .point").count() == 2
    # The diff table names each row by the same key (its title) the list and search use.
    row = page.locator("#compare-diff tr[data-key='properties.lr'] th")
    assert row.get_attribute("title") == "properties.lr"
    screenshot(page, "compare_scatter_columns")
    page.emulate_media(color_scheme="dark")
    screenshot(page, "compare_scatter_columns_dark")
    page.emulate_media(color_scheme="light")

    # A link saved before the page spoke the list's keys moves to the same columns.
    page.goto(f"{live_server.url}/w/lab/compare/?{ids}&sx=property%3Alr&sy=metric%3Aloss%3Amin")
    assert "sx=properties.lr" in page.url and "sy=metrics.loss.min" in page.url
    assert page.locator("select[name=sx]").input_value() == "properties.lr"
    assert page.locator("select[name=sy]").input_value() == "metrics.loss.min"
