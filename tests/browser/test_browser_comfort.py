"""Comforts in a real browser: dark mode that follows the system with a toggle that sticks,
"/" to focus the search box, a favicon, styled 404 / 403 pages with a way home, and lazily
loaded images in descriptions. Screenshots in light and dark mode."""

import pytest

from runs import services
from runs.rich_text import render_markdown
from runs.services import alerts

pytestmark = pytest.mark.django_db(transaction=True)


def background(page) -> str:
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


def test_dark_mode_follows_the_system_and_the_toggle_sticks(
    page, live_server, cast, make_run, sign_in, screenshot
):
    run = make_run("resnet", display_name="dark-run", tags={"team": "vision"})
    services.run_log_batch(
        run=run, metrics=[{"name": "loss", "kind": "scalar", "values": [1.0, 0.6, 0.3]}]
    )
    sign_in(page, cast.contributor, "/w/lab/runs/")
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    assert background(page) == "rgb(255, 255, 255)"
    screenshot(page, "run_list_light")

    page.emulate_media(color_scheme="dark")
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert background(page) == "rgb(13, 17, 23)"
    screenshot(page, "run_list_dark")
    page.goto(f"{live_server.url}/w/lab/runs/{run.run_id}/?tab=metrics")
    page.locator(".rs-chart .js-plotly-plot").first.wait_for()
    screenshot(page, "run_metrics_dark")

    # The toggle overrides the system and is remembered.
    page.click("[data-theme-toggle]")
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    assert background(page) == "rgb(255, 255, 255)"


def test_slash_focuses_the_search_box_but_not_while_typing(page, live_server, cast, sign_in):
    sign_in(page, cast.reader, "/w/lab/runs/")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.name") == "q"
    page.fill("input[name=submitter]", "")
    page.focus("input[name=submitter]")
    page.keyboard.type("a/b")
    assert page.input_value("input[name=submitter]") == "a/b"


def test_a_favicon_and_styled_error_pages_with_a_way_home(
    page, live_server, cast, sign_in, screenshot
):
    sign_in(page, cast.reader, "/w/lab/")
    icon = page.get_attribute("link[rel=icon]", "href")
    assert page.request.get(f"{live_server.url}{icon}").status == 200
    response = page.goto(f"{live_server.url}/w/no-such-workspace/runs/")
    assert response.status == 404
    assert page.locator("h1").inner_text() == "Nothing here"
    assert page.get_by_role("link", name="Your workspaces").is_visible()
    screenshot(page, "error_404")
    page.emulate_media(color_scheme="dark")
    page.reload()
    screenshot(page, "error_404_dark")
    rule = alerts.alert_rule_create(
        workspace=cast.workspace,
        user=cast.owner.user,
        name="watch",
        statuses=["Failed"],
        channel="webhook",
        webhook_url="https://hooks.example.com/x",
    )
    page.emulate_media(color_scheme="light")
    response = page.goto(f"{live_server.url}/w/lab/alerts/{rule.pk}/")  # owners only
    assert response.status == 403
    assert "role" in page.locator("h1").inner_text()
    assert page.get_by_role("link", name="Your workspaces").is_visible()
    screenshot(page, "error_403")


def test_images_in_a_description_load_lazily():
    html = render_markdown("![plot](files/outputs/plot.png)")
    assert 'loading="lazy"' in html


def test_a_charts_data_downloads_as_csv(page, live_server, cast, make_run, sign_in):
    run = make_run("resnet", display_name="csv-run")
    services.run_log_batch(
        run=run, metrics=[{"name": "loss", "kind": "scalar", "values": [1.0, 0.5, 0.25]}]
    )
    sign_in(page, cast.reader, "/w/lab/")
    page.goto(f"{live_server.url}/w/lab/runs/{run.run_id}/?tab=metrics")
    chart = page.locator(".rs-chart .js-plotly-plot").first
    chart.wait_for()
    chart.hover()
    with page.expect_download() as info:
        page.locator(".rs-chart [data-title='Download the data as CSV']").first.click()
    text = open(info.value.path()).read()
    lines = text.strip().splitlines()
    assert lines[0] == "series,x,y"
    assert [line.split(",")[1:] for line in lines[1:4]] == [["0", "1"], ["1", "0.5"], ["2", "0.25"]]


def test_list_times_read_relative_with_the_exact_time_on_hover(
    page, live_server, cast, make_run, sign_in
):
    from datetime import timedelta

    from django.utils import timezone

    from runs.models import Run

    run = make_run("resnet", display_name="timed")
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(hours=3))
    sign_in(page, cast.reader, "/w/lab/runs/")
    cell = page.locator("#run-table tbody td.time time").first
    assert cell.inner_text() == "3 h ago"
    assert cell.get_attribute("title").startswith(
        (timezone.now() - timedelta(hours=3)).strftime("%Y-%m-%d")
    )
