"""User names in charts, in a real browser: plotly reads titles, legend entries and category
labels as pseudo-HTML, so a display name like `<a href=…>` must be drawn as text, not as a
link (docs/architecture.md, "Limits and the query time budget", Injection)."""

import pytest

from runs import services

pytestmark = pytest.mark.django_db(transaction=True)

EVIL = '<a href="https://evil.example/">click me</a><b>bold</b>'


def test_compare_charts_draw_a_html_display_name_as_text(
    page, live_server, cast, make_run, sign_in, screenshot
):
    runs = [make_run(display_name=EVIL), make_run(display_name="plain")]
    for run in runs:
        services.run_log_batch(run=run, metrics=[{"name": "<i>loss</i>", "values": [1.0, 0.5]}])
    sign_in(page, cast.reader)
    page.goto(f"{live_server.url}/w/lab/compare/?run={runs[0].run_id}&run={runs[1].run_id}")
    page.wait_for_selector("#compare-line[data-fetches='1'] .main-svg")
    page.wait_for_selector("#compare-bar .main-svg")
    screenshot(page, "charts_injection")

    for chart in ("#compare-line", "#compare-bar", "#compare-scatter"):
        svg = page.locator(f"{chart} .main-svg").first
        # No link and no bold element came out of the user's text...
        assert page.locator(f"{chart} .main-svg a").count() == 0, chart
        assert (
            page.locator(
                f"{chart} .main-svg text b, {chart} .main-svg tspan[style*='bold']"
            ).count()
            == 0
        ), chart
        assert svg.is_visible()
    # ...and the text reads as typed, tags and all, in the legend of the line chart.
    legend = page.locator("#compare-line .legendtext").evaluate_all(
        "nodes => nodes.map(node => node.textContent)"
    )
    assert any("<a href=" in text and "</b>" in text for text in legend), legend
