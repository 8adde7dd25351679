"""Charts in a real browser: plotly draws the compare page's figures, zooming fetches a finer
range, and the run page's metric placeholders fill in."""

import math
import re

import pytest

from runs import services

pytestmark = pytest.mark.django_db(transaction=True)


def log(run, name, values, **extra):
    for start in range(0, len(values), 100_000):
        services.run_log_batch(
            run=run,
            metrics=[
                {"name": name, "kind": "scalar", "values": values[start : start + 100_000], **extra}
            ],
        )


@pytest.fixture
def two_runs(make_run):
    long = make_run(display_name="long-run", tags={"lr": "0.01"}, properties={"layers": "4"})
    values = [2.0 * math.exp(-i / 8000) + 0.05 * math.sin(i / 40) for i in range(40_000)]
    values[25_000] = 3.5  # a spike the downsampler must keep
    values[30_000] = "NaN"
    log(long, "loss", values)
    short = make_run(display_name="short-run", tags={"lr": "0.1"}, properties={"layers": "2"})
    log(
        short,
        "loss",
        [1.8 * math.exp(-i / 300) + 0.1 for i in range(0, 40_000, 40)],
        steps=list(range(0, 40_000, 40)),
    )
    return long, short


def plot_traces(page, selector):
    return page.locator(f"{selector} .main-svg g.scatterlayer g.trace").count()


def test_compare_page_draws_lines_bars_and_scatter_and_zoom_fetches_finer(
    page, live_server, cast, two_runs, sign_in, screenshot
):
    long, short = two_runs
    sign_in(page, cast.reader)
    page.goto(f"{live_server.url}/w/lab/compare/?run={long.run_id}&run={short.run_id}")

    line = "#compare-line"
    page.wait_for_selector(f"{line}[data-fetches='1'] .main-svg")
    # Two runs' lines plus the NaN marks of the long run.
    assert plot_traces(page, line) == 3
    assert "downsampled" in page.locator(f"{line} .rs-chart-status").inner_text()
    page.wait_for_selector("#compare-bar .main-svg")
    assert page.locator("#compare-bar .main-svg g.barlayer g.trace").count() == 3
    page.wait_for_selector("#compare-scatter .main-svg")
    assert page.locator("#compare-scatter .main-svg g.scatterlayer .point").count() == 2
    screenshot(page, "charts_compare")

    # Zoom into steps 24,900–25,100: the chart asks the server for that range only.
    with page.expect_response(re.compile(r"/charts/metric/\?.*x_min=24900")) as answer:
        page.evaluate(
            "Plotly.relayout(document.querySelector('#compare-line .rs-chart-plot'),"
            " {'xaxis.range': [24900, 25100]})"
        )
    body = answer.value.json()
    assert body["series"][0]["in_range"] == 201 and body["series"][0]["downsampled"] is False
    page.wait_for_selector(f"{line}[data-fetches='2']")
    assert "in view" in page.locator(f"{line} .rs-chart-status").inner_text()
    screenshot(page, "charts_compare_zoomed")

    # Smoothing and wall-time x-axis refetch too.
    page.select_option(f"{line} select.rs-chart-x", "time")
    page.wait_for_selector(f"{line}[data-fetches='3']")
    assert page.locator(f"{line} .xtick").count() > 0


def test_run_page_metric_placeholders_draw_charts(
    page, live_server, cast, two_runs, sign_in, screenshot
):
    long, _ = two_runs
    sign_in(page, cast.reader)
    page.goto(f"{live_server.url}/w/lab/runs/{long.run_id}/?tab=metrics")
    if page.locator("script[src*='js/charts.js']").count() == 0:
        pytest.skip("the run page does not include runs/includes/chart_assets.html yet")
    page.wait_for_selector(".rs-chart[data-fetches='1'] .main-svg")
    assert plot_traces(page, ".rs-chart") >= 1
    screenshot(page, "charts_run_metrics")
