"""What a daily user does that the other browser tests left out: switching the theme with charts
on the page, Find with non-ASCII text, bulk untag / cancel / delete from the run list's
selection, filtering the parallel coordinates by dragging along an axis, and the child runs'
bar chart of close values. Screenshots in light and dark mode."""

import io

import pytest

from runs import services
from runs.models import Run, RunActivity, RunStatus, RunTag

pytestmark = pytest.mark.django_db(transaction=True)


def select(page, *names: str) -> None:
    for name in names:
        page.locator("#run-table tbody tr", has_text=name).locator("input[type=checkbox]").check()


def test_switching_the_theme_recolours_charts_already_drawn(
    page, live_server, cast, make_run, sign_in, screenshot
):
    runs = []
    for i in range(2):
        run = make_run("themes", display_name=f"t{i}", tags={"lr": f"0.{i + 1}"})
        services.run_log_batch(
            run=run, metrics=[{"name": "loss", "kind": "scalar", "values": [1.0, 0.5 - i / 10]}]
        )
        runs.append(run)
    page.emulate_media(color_scheme="light")
    sign_in(page, cast.reader, "/w/lab/")
    page.goto(f"{live_server.url}/w/lab/compare/?run={runs[0].run_id}&run={runs[1].run_id}")
    page.wait_for_selector("#compare-bar .main-svg")
    page.locator(".compare-metrics .rs-chart .js-plotly-plot").first.wait_for()

    def backgrounds() -> list[str]:
        return page.evaluate(
            "Array.from(document.querySelectorAll('.js-plotly-plot'))"
            ".map(gd => gd.layout.paper_bgcolor)"
        )

    assert set(backgrounds()) == {"#ffffff"}
    page.click("[data-theme-toggle]")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".every(gd => gd.layout.paper_bgcolor === 'rgba(0,0,0,0)')"
    )
    font = page.evaluate("document.querySelector('#compare-bar').layout.font.color")
    assert font == "#e6edf3"
    screenshot(page, "compare_theme_switched_dark")
    page.click("[data-theme-toggle]")
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".every(gd => gd.layout.paper_bgcolor === '#ffffff')"
    )
    screenshot(page, "compare_theme_switched_light")


def test_find_in_a_log_ignores_case_beyond_ascii(
    page, live_server, cast, make_run, sign_in, screenshot
):
    run = make_run("logs", display_name="unicode-log")
    lines = [f"step {i:05d} époch {i // 100} straße" for i in range(3_000)]
    lines[1_234] = "step 01234 ÉPOCH FINAL Straße"
    text = "\n".join(lines) + "\n"
    services.run_file_write(run=run, path="logs/u.log", stream=io.BytesIO(text.encode()))
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        if scheme == "light":
            sign_in(page, cast.reader, "/w/lab/")
        page.goto(f"{live_server.url}/w/lab/runs/{run.run_id}/?tab=outputs&file=logs/u.log")
        page.fill(".rd-find input[name=find]", "époch final")
        page.press(".rd-find input[name=find]", "Enter")
        page.wait_for_load_state()
        match = page.locator("#log-match")
        assert match.locator("td.ln").get_attribute("data-n") == "1235"
        assert match.locator("mark").inner_text() == "ÉPOCH FINAL"
        screenshot(page, f"log_find_unicode_{scheme}")
    # ß and SS are the same letters to Find (Unicode case folding).
    page.fill(".rd-find input[name=find]", "FINAL STRASSE")
    page.press(".rd-find input[name=find]", "Enter")
    page.wait_for_load_state()
    assert page.locator("#log-match mark").inner_text() == "FINAL Straße"


@pytest.fixture
def lab(make_run):
    runs = {}
    for name in ("keep-me", "old-a", "old-b"):
        runs[name] = make_run("misc", display_name=name, tags={"stage": "draft", "team": "cv"})
    return runs


def test_remove_tags_and_cancel_runs_in_bulk_from_the_selection(
    page, live_server, cast, lab, sign_in, screenshot
):
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    sign_in(page, cast.contributor, "/w/lab/runs/")
    select(page, "old-a", "old-b")
    page.click("#manage-button")
    page.fill("#manage-form input[name=keys]", "stage")
    screenshot(page, "bulk_manage_menu")
    page.click("#manage-form button[value=untag]")
    page.wait_for_load_state()
    assert "2 runs" in dialogs[-1]
    assert "2 runs" in page.locator(".messages").inner_text()
    tagged = sorted(RunTag.objects.filter(key="stage").values_list("run__display_name", flat=True))
    assert tagged == ["keep-me"]

    select(page, "old-a", "old-b")
    page.click("#manage-button")
    page.click("#manage-form button[value=cancel]")
    page.wait_for_load_state()
    assert "Cancel 2 runs?" in dialogs[-1]
    statuses = dict(Run.objects.values_list("display_name", "status"))
    assert statuses["keep-me"] == RunStatus.RUNNING
    assert {statuses["old-a"], statuses["old-b"]} <= {
        RunStatus.CANCEL_REQUESTED,
        RunStatus.CANCELED,
    }
    page.emulate_media(color_scheme="dark")
    screenshot(page, "bulk_cancelled_dark")


def test_an_owner_deletes_runs_for_good_in_bulk_and_a_contributor_cannot(
    page, live_server, cast, lab, sign_in
):
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, cast.contributor, "/w/lab/runs/")
    select(page, "old-a")
    page.click("#manage-button")
    assert page.locator("#manage-form button[value=delete]").count() == 0  # owners only
    page.context.clear_cookies()
    sign_in(page, cast.owner, "/w/lab/runs/")
    select(page, "old-a", "old-b")
    page.click("#manage-button")
    page.click("#manage-form button[value=delete]")
    page.wait_for_load_state()
    assert sorted(Run.objects.values_list("display_name", flat=True)) == ["keep-me"]
    assert RunActivity.objects.filter(action="delete").count() == 2
    names = [t.strip() for t in page.locator("#run-table tbody td.name a").all_inner_texts()]
    assert names == ["keep-me"]


def test_dragging_along_a_parallel_coordinates_axis_keeps_only_those_runs(
    page, live_server, cast, make_run, sign_in, screenshot
):
    ids = []
    for i, lr in enumerate(("0.1", "0.03", "0.01", "0.003", "0.001")):
        run = make_run("sweep", display_name=f"trial-{i}")
        services.run_add_properties(run=run, properties={"lr": lr, "seed": str(i % 3)})
        services.run_log_batch(
            run=run, metrics=[{"name": "loss", "kind": "scalar", "values": [1.0, 0.2 * i]}]
        )
        ids.append(run.run_id)
    sign_in(page, cast.reader, "/w/lab/")
    page.goto(f"{live_server.url}/w/lab/compare/?" + "&".join(f"run={i}" for i in ids))
    page.locator("#compare-parcoords .parcoords").first.wait_for()
    page.locator("#hyperparameters").scroll_into_view_if_needed()
    # Drag down the middle of the first axis (lr): plotly's own brush sets a constraint range.
    axis = page.locator("#compare-parcoords .axis-brush").first.bounding_box()
    x = axis["x"] + axis["width"] / 2
    page.mouse.move(x, axis["y"] + axis["height"] * 0.05)
    page.mouse.down()
    page.mouse.move(x, axis["y"] + axis["height"] * 0.5, steps=8)
    page.mouse.up()
    constraint = page.evaluate(
        "document.querySelector('#compare-parcoords').data[0].dimensions[0].constraintrange"
    )
    assert constraint, "dragging along the axis sets a filter"
    screenshot(page, "compare_parcoords_filtered")


def test_the_child_runs_tab_reads_in_dark_mode_and_its_close_bars_do_not_start_at_zero(
    page, live_server, cast, make_run, sign_in, screenshot
):
    parent = make_run("sweep", display_name="sweep")
    for i, acc in enumerate((0.912, 0.918, 0.925)):
        child = make_run("sweep", parent=parent, display_name=f"trial-{i}", tags={"opt": "adam"})
        services.run_add_properties(run=child, properties={"lr": f"0.0{i + 1}"})
        services.run_log_batch(
            run=child, metrics=[{"name": "accuracy", "kind": "scalar", "values": [0.5, acc]}]
        )
    page.emulate_media(color_scheme="dark")
    sign_in(page, cast.reader, "/w/lab/")
    page.goto(f"{live_server.url}/w/lab/runs/{parent.run_id}/?tab=children")
    page.locator(".rs-chart-children .js-plotly-plot").wait_for()
    page.wait_for_function(
        "(document.querySelector('.rs-chart-children .js-plotly-plot').layout || {}).yaxis"
    )
    low, _ = page.evaluate(
        "document.querySelector('.rs-chart-children .js-plotly-plot').layout.yaxis.range"
    )
    assert 0.85 < low < 0.912  # close accuracies: the axis hugs them instead of starting at 0
    for select in ("select[name=kv]", ".rs-chart-children select"):
        colours = page.locator(select).first.evaluate(
            "el => [getComputedStyle(el).backgroundColor, getComputedStyle(el).color]"
        )
        assert colours[0] != "rgb(255, 255, 255)", (select, colours)  # not light on white
        assert colours[0] != colours[1]
    screenshot(page, "children_tab_dark")


def download_csv(page, chart: str) -> list[list[str]]:
    import csv

    page.locator(chart).hover()
    with page.expect_download() as info:
        page.locator(f"{chart} [data-title='Download the data as CSV']").first.click()
    with open(info.value.path(), newline="") as f:
        return list(csv.reader(f))


def test_the_compare_pages_charts_download_their_runs_as_csv_without_formulas(
    page, live_server, cast, make_run, sign_in
):
    ids = []
    names = ['=HYPERLINK("http://evil.example","x")', "<b>bold</b>", "plain"]
    for i, name in enumerate(names):
        run = make_run("csv", display_name=name)
        services.run_add_properties(run=run, properties={"lr": f"0.{i + 1}", "opt": f"o{i % 2}"})
        services.run_log_batch(
            run=run, metrics=[{"name": "loss", "kind": "scalar", "values": [1.0, 0.1 * i]}]
        )
        ids.append(run.run_id)
    sign_in(page, cast.reader, "/w/lab/")
    page.goto(f"{live_server.url}/w/lab/compare/?" + "&".join(f"run={i}" for i in ids))
    page.wait_for_selector("#compare-scatter .main-svg")
    scatter = download_csv(page, "#compare-scatter")
    assert scatter[0] == ["series", "x", "y"]
    # Each point is named by its run, as typed, and a formula stays text.
    assert [row[0] for row in scatter[1:]] == [
        "'" + names[0],
        "<b>bold</b>",
        "plain",
    ]
    assert [row[1:] for row in scatter[1:]] == [["0.1", "0"], ["0.2", "0.1"], ["0.3", "0.2"]]
    page.locator("#compare-parcoords .parcoords").first.wait_for()
    table = download_csv(page, "#compare-parcoords")
    assert table[0] == ["lr", "opt", "loss (last)"]
    assert table[1:] == [["0.1", "o0", "0"], ["0.2", "o1", "0.1"], ["0.3", "o0", "0.2"]]


def test_every_status_pill_reads_in_dark_mode(
    page, live_server, cast, make_run, sign_in, screenshot
):
    for status in (RunStatus.NOT_STARTED, RunStatus.RUNNING, RunStatus.FAILED):
        make_run("pills", display_name=f"pill-{status}", status=status)
    page.emulate_media(color_scheme="dark")
    sign_in(page, cast.reader, "/w/lab/runs/")
    pills = page.locator("#run-table tbody .status")
    assert pills.count() == 3
    for i in range(3):
        background, colour = pills.nth(i).evaluate(
            "el => [getComputedStyle(el).backgroundColor, getComputedStyle(el).color]"
        )
        assert colour != "rgb(230, 237, 243)", pills.nth(i).inner_text()  # not the page's text
        assert background != colour
    screenshot(page, "status_pills_dark")


# A 1×1 PNG (the smallest real image a browser decodes).
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def test_a_descriptions_image_loads_lazily_from_the_runs_files(
    page, live_server, cast, make_run, sign_in
):
    filler = "\n\n".join(f"Paragraph {i}." for i in range(80))  # the image starts far below
    run = make_run(
        "imgs", display_name="pictured", description=f"{filler}\n\n![plot](files/outputs/p.png)"
    )
    services.run_file_write(run=run, path="outputs/p.png", stream=io.BytesIO(PNG))
    sign_in(page, cast.reader, "/w/lab/")
    page.goto(f"{live_server.url}/w/lab/runs/{run.run_id}/")
    image = page.locator("#description-view img").first
    assert image.get_attribute("loading") == "lazy"
    image.scroll_into_view_if_needed()
    page.wait_for_function("el => el.complete && el.naturalWidth === 1", arg=image.element_handle())


def test_a_live_runs_chart_summary_follows_the_points_as_they_arrive(
    page, live_server, cast, make_run, sign_in
):
    run = make_run("live", display_name="live-chart")
    services.run_log_batch(
        run=run, metrics=[{"name": "loss", "kind": "scalar", "values": [2.0, 1.5, 1.2]}]
    )
    sign_in(page, cast.reader, "/w/lab/")
    page.goto(f"{live_server.url}/w/lab/runs/{run.run_id}/?tab=metrics")
    stats = page.locator(".rd-chart-card .rd-chart-stats")
    assert "3 points" in stats.inner_text()
    services.run_log_batch(
        run=run, metrics=[{"name": "loss", "kind": "scalar", "values": [0.9, 0.5, 0.25]}]
    )
    page.wait_for_function(
        "document.querySelector('.rd-chart-card .rd-chart-stats').innerText.includes('6 points')",
        timeout=15_000,
    )
    assert "last 0.25" in stats.inner_text() and "min 0.25" in stats.inner_text()
