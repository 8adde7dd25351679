"""The studio's lists in a real browser: sign in, filter and search (with OR), add a metric max
column and sort by it, save a shared view and open it as a teammate."""

import pytest

from runs import services
from runs.models import CustomView, RunStatus

pytestmark = pytest.mark.django_db(transaction=True)


def log(run, **metrics):
    services.run_log_batch(
        run=run,
        metrics=[{"name": n, "kind": "scalar", "values": v} for n, v in metrics.items()],
    )


@pytest.fixture
def lab(make_run):
    """A few runs in two experiments with tags and a loss metric each."""
    runs = {}
    for i, (exp, team, losses) in enumerate(
        [
            ("resnet", "vision", [0.9, 0.4]),
            ("resnet", "vision", [1.7, 0.2]),
            ("whisper", "audio", [0.6, 0.5]),
            ("bert", "nlp", [2.5, 1.1]),
            ("bert", "nlp", [0.8, 0.7]),
        ]
    ):
        run = make_run(
            exp,
            display_name=f"{exp}-{i}",
            tags={"team": team, "note": "<script>alert(1)</script>"},
            description=f"Run {i} of {exp}",
        )
        log(run, loss=losses, accuracy=[0.5 + i / 10])
        runs[run.display_name] = run
    services.run_set_status(run=runs["resnet-0"], status=RunStatus.COMPLETED)
    services.run_set_status(run=runs["bert-3"], status=RunStatus.FAILED)
    return runs


def names_on_page(page) -> list[str]:
    return page.locator("#run-table tbody td.name a").all_inner_texts()


def test_search_filter_add_a_metric_column_and_sort_by_it(
    page, live_server, cast, lab, sign_in, screenshot
):
    sign_in(page, cast.reader, "/w/lab/")
    assert page.locator("h1").inner_text() == "All experiments"
    assert page.locator("table.experiments").get_by_text("resnet").is_visible()
    screenshot(page, "experiments")

    page.get_by_role("link", name="All runs", exact=True).first.click()
    # A click does not wait for the next page: read its rows once they are there.
    page.wait_for_url("**/w/lab/runs/**")
    page.locator("#run-table tbody td.name a").first.wait_for()
    assert sorted(names_on_page(page)) == sorted(lab)

    # Search with OR.
    page.fill("input[name=q]", "tags.team = 'audio' OR display_name LIKE 'bert%'")
    page.press("input[name=q]", "Enter")
    page.wait_for_load_state()
    assert sorted(names_on_page(page)) == ["bert-3", "bert-4", "whisper-2"]

    # A filter on top of the search: status.
    page.click("details.status-filter > summary")
    page.check("details.status-filter input[value=Failed]")
    page.click(".filters button[type=submit]")
    page.wait_for_load_state()
    assert names_on_page(page) == ["bert-3"]

    # A syntax error is shown next to the kept input.
    page.fill("input[name=q]", "metrics.loss <")
    page.press("input[name=q]", "Enter")
    page.wait_for_load_state()
    assert "expected a value after '<'" in page.locator("#q-error").inner_text()
    assert page.input_value("input[name=q]") == "metrics.loss <"

    # Clear, add the loss max column and sort by it (biggest first, then smallest first).
    page.click("a.clear")
    page.click("details.columns-menu > summary")
    page.fill("input.add-column-input, .add-column input", "metrics.loss.max")
    page.click("details.columns-menu button[type=submit]")
    page.wait_for_load_state()
    header = page.locator("#run-table thead th", has_text="loss (max)")
    header.wait_for()  # the table redraws in place (no page load)
    with page.expect_navigation():
        header.locator("a").click()
    assert names_on_page(page) == ["bert-3", "resnet-1", "resnet-0", "bert-4", "whisper-2"]
    page.locator("#run-table thead th", has_text="loss (max)").locator("a").click()
    page.wait_for_load_state()
    assert names_on_page(page)[0] == "whisper-2"
    assert "<script>" not in page.locator("#run-table").inner_html()

    # Select two runs: Compare links to them.
    page.locator("#run-table tbody tr", has_text="bert-4").locator("input[type=checkbox]").check()
    page.locator("#run-table tbody tr", has_text="whisper-2").locator(
        "input[type=checkbox]"
    ).check()
    href = page.get_attribute("#compare-button", "href")
    assert href.startswith("/w/lab/compare/?run=")
    assert lab["bert-4"].run_id in href and lab["whisper-2"].run_id in href
    screenshot(page, "run_list")


def test_save_a_shared_view_and_open_it_as_a_teammate(
    page, browser, live_server, cast, lab, sign_in, screenshot
):
    sign_in(page, cast.contributor, "/w/lab/runs/")
    page.fill("input[name=q]", "tags.team IN ('vision', 'nlp')")
    page.press("input[name=q]", "Enter")
    page.wait_for_load_state()
    page.click("details.columns-menu > summary")
    page.fill(".add-column input", "metrics.loss.min")
    page.click("details.columns-menu button[type=submit]")
    page.wait_for_load_state()
    page.locator("#run-table thead th", has_text="loss (min)").locator("a").click()
    page.wait_for_load_state()
    expected = names_on_page(page)
    assert len(expected) == 4

    page.click("details.save-view > summary")
    page.fill(".save-view-form input[name=name]", "Vision and NLP by loss")
    page.check(".save-view-form input[name=shared]")
    page.click(".save-view-form button[type=submit]")
    page.wait_for_load_state()
    view = CustomView.objects.get()
    assert page.url.endswith(f"/w/lab/views/{view.pk}/")
    assert view.shared and view.params["sort"] == "-metrics.loss.min"
    assert "Saved view" in page.locator(".messages").inner_text()

    teammate = browser.new_context()
    other = teammate.new_page()
    try:
        sign_in(other, cast.reader, f"/w/lab/views/{view.pk}/")
        assert "Vision and NLP by loss" in other.locator("h1").inner_text()
        assert names_on_page(other) == expected
        assert other.locator("#run-table thead th", has_text="loss (min)").is_visible()
        assert other.get_by_role("button", name="Save a copy").is_visible()
        assert other.get_by_role("button", name="Delete view").count() == 0
        other.click("details.views-menu > summary")
        assert (
            other.locator("details.views-menu .menu")
            .get_by_text("Vision and NLP by loss")
            .is_visible()
        )
        screenshot(other, "shared_view")
        other.get_by_role("button", name="Save a copy").click()
        other.wait_for_load_state()
        assert "your own copy" in other.locator(".messages").inner_text()
        assert other.get_by_role("button", name="Delete view").is_visible()
    finally:
        teammate.close()


def test_a_resized_column_keeps_its_width_after_a_reload_and_a_column_change(
    page, live_server, cast, lab, sign_in, screenshot
):
    sign_in(page, cast.reader, "/w/lab/runs/")
    header = page.locator("#run-table thead th:not(.sel)").nth(1)
    key = header.get_attribute("title")
    grip = header.locator(".col-resize")
    before = grip.bounding_box()
    # Drag the browser's own resize grip (the bottom-right corner) 150px to the right.
    page.mouse.move(before["x"] + before["width"] - 2, before["y"] + before["height"] - 2)
    page.mouse.down()
    page.mouse.move(
        before["x"] + before["width"] + 148, before["y"] + before["height"] - 2, steps=8
    )
    page.mouse.up()
    widened = grip.bounding_box()["width"]
    assert widened > before["width"] + 100

    def width_of(column_key):
        return page.locator(
            f'#run-table thead th[title="{column_key}"] .col-resize'
        ).bounding_box()["width"]

    page.reload()
    page.wait_for_load_state()
    assert abs(width_of(key) - widened) < 2

    # Adding a column redraws the head in place; the remembered width comes back with it.
    page.click("details.columns-menu > summary")
    page.fill("input.add-column-input, .add-column input", "metrics.loss.max")
    page.click("details.columns-menu button[type=submit]")
    page.locator("#run-table thead th", has_text="loss (max)").wait_for()
    assert abs(width_of(key) - widened) < 2
    page.keyboard.press("Escape")
    screenshot(page, "run_list_resized_column")

    # Another list (an experiment's) has widths of its own.
    page.goto(f"{live_server.url}/w/lab/experiments/resnet/")
    assert width_of(key) < widened - 100


def test_a_running_runs_status_turns_completed_in_the_list_without_a_reload(
    page, live_server, cast, lab, sign_in
):
    sign_in(page, cast.reader, "/w/lab/runs/")
    run = lab["whisper-2"]
    cell = f'#run-table [data-status-for="{run.run_id}"]'
    assert page.get_attribute(cell, "data-status") == "Running"
    page.evaluate("window.__same_page = true")
    services.run_set_status(run=run, status=RunStatus.COMPLETED)
    # The list polls every 5 s while the tab is visible (studio.js's rsPoll).
    page.wait_for_function(
        f"document.querySelector('{cell}').dataset.status === 'Completed'", timeout=15000
    )
    assert "Completed" in page.inner_text(cell)
    assert page.evaluate("window.__same_page") is True
