"""Issue 10's "broken today" items in a real browser: a view saved on an experiment's page keeps
its experiment, no chart offers to send its data to plotly's cloud, the log viewer's Tail shows
the last line and the live header follows the file, child rows sit under their parent, URL
columns keep the name, and a duration reads the same in the list and on the run page."""

import io
from datetime import timedelta

import pytest
from django.utils import timezone

from runs import services
from runs.models import CustomView, Run, RunStatus

pytestmark = pytest.mark.django_db(transaction=True)


def names_on_page(page) -> list[str]:
    return [t.strip() for t in page.locator("#run-table tbody td.name a").all_inner_texts()]


def test_a_view_saved_on_an_experiments_page_keeps_the_experiment(
    page, live_server, cast, make_run, sign_in, screenshot
):
    make_run("resnet", display_name="resnet-a")
    make_run("bert", display_name="bert-a")
    sign_in(page, cast.contributor, "/w/lab/experiments/resnet/")
    assert names_on_page(page) == ["resnet-a"]
    page.click("details.save-view > summary")
    page.fill(".save-view-form input[name=name]", "Only resnet")
    page.click(".save-view-form button[type=submit]")
    page.wait_for_load_state()
    view = CustomView.objects.get()
    assert view.params["filters"]["experiment"] == ["resnet"]

    # A run of another experiment, made later, stays out of the view.
    make_run("bert", display_name="bert-later")
    page.goto(f"{live_server.url}/w/lab/views/{view.pk}/")
    assert names_on_page(page) == ["resnet-a"]
    assert page.locator("select[name=experiment]").input_value() == "resnet"
    screenshot(page, "view_saved_on_experiment")


def test_urls_columns_keep_the_name_column(page, live_server, cast, make_run, sign_in):
    run = make_run("resnet", display_name="named-run")
    services.run_log_batch(run=run, metrics=[{"name": "loss", "kind": "scalar", "values": [1.0]}])
    sign_in(page, cast.reader, "/w/lab/")
    page.goto(f"{live_server.url}/w/lab/runs/?col=metrics.loss.last&col=status")
    headers = page.locator("#run-table thead th a").all_inner_texts()
    assert headers[0] == "Display name"
    assert names_on_page(page) == ["named-run"]


def test_child_rows_sit_under_their_parent_newest_first(
    page, live_server, cast, make_run, sign_in, screenshot
):
    # Created in this order: old parent, its children, then an unrelated newer run, then a
    # child of the old parent made last (newest of all).
    old = make_run("sweep", display_name="sweep-parent")
    first = make_run("sweep", display_name="child-1", parent=old)
    make_run("sweep", display_name="child-2", parent=old)
    make_run("other", display_name="unrelated-newer")
    make_run("sweep", display_name="grandchild", parent=first)
    make_run("sweep", display_name="child-3", parent=old)
    sign_in(page, cast.reader, "/w/lab/runs/?top_level=0")
    assert names_on_page(page) == [
        "unrelated-newer",
        "sweep-parent",
        "child-3",
        "child-2",
        "child-1",
        "grandchild",
    ]
    # Paged by top-level run: the range counts the two roots, not the six rows.
    assert page.locator("#run-range").inner_text() == "Top-level runs 1–2 of 2"
    # Collapse the parent: its whole subtree hides; expand: it is back.
    parent_row = page.locator("#run-table tbody tr", has_text="sweep-parent")
    parent_row.locator("button.tree-toggle").click()
    visible = page.locator("#run-table tbody tr:visible td.name a").all_inner_texts()
    assert [v.strip() for v in visible] == ["unrelated-newer", "sweep-parent"]
    screenshot(page, "run_tree_collapsed")
    parent_row.locator("button.tree-toggle").click()
    visible = page.locator("#run-table tbody tr:visible td.name a").all_inner_texts()
    assert len(visible) == 6
    screenshot(page, "run_tree")


def test_a_duration_reads_the_same_in_the_list_and_on_the_run_page(
    page, live_server, cast, make_run, sign_in
):
    run = make_run("resnet", display_name="short")
    started = timezone.now() - timedelta(minutes=5)
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.COMPLETED, started_at=started, ended_at=started + timedelta(seconds=0.5)
    )
    sign_in(page, cast.reader, "/w/lab/")
    page.goto(f"{live_server.url}/w/lab/runs/?col=display_name&col=duration")
    in_list = page.locator("#run-table tbody td.num").first.inner_text().strip()
    page.goto(f"{live_server.url}/w/lab/runs/{run.run_id}/")
    details = page.locator("#run-details").inner_text()
    assert in_list == "0.5s"
    assert "0.5s" in details


def test_no_chart_offers_to_send_its_data_to_plotlys_cloud(
    page, live_server, cast, make_run, sign_in, screenshot
):
    run = make_run("resnet", display_name="charted")
    services.run_log_batch(
        run=run, metrics=[{"name": "loss", "kind": "scalar", "values": [1.0, 0.5, 0.25]}]
    )
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    sign_in(page, cast.reader, f"/w/lab/runs/{run.run_id}/?tab=metrics")
    chart = page.locator(".rs-chart").first
    chart.locator(".js-plotly-plot").wait_for()
    chart.hover()
    buttons = page.locator(".modebar-btn")
    assert buttons.count() > 0
    titles = [b.get_attribute("data-title") or "" for b in buttons.all()]
    assert not [t for t in titles if "cloud" in t.lower() or "chart studio" in t.lower()]
    page.goto(f"{live_server.url}/w/lab/compare/?run={run.run_id}")
    page.locator(".js-plotly-plot").first.wait_for()
    page.locator(".js-plotly-plot").first.hover()
    titles = [b.get_attribute("data-title") or "" for b in page.locator(".modebar-btn").all()]
    assert titles and not [t for t in titles if "cloud" in t.lower() or "studio" in t.lower()]
    assert all(url.startswith(live_server.url) for url in requests)


def test_tail_shows_the_last_line_and_the_live_header_follows_the_file(
    page, live_server, cast, make_run, sign_in, screenshot
):
    run = make_run("resnet", display_name="logger")
    services.run_set_status(run=run, status=RunStatus.RUNNING)
    lines = "".join(f"line {i:06d} " + "x" * 60 + "\n" for i in range(20_000))
    services.run_file_write(run=run, path="logs/big.log", stream=io.BytesIO(lines.encode()))
    sign_in(page, cast.reader, "/w/lab/")
    page.goto(f"{live_server.url}/w/lab/runs/{run.run_id}/?tab=outputs&file=logs/big.log")
    page.click("[data-pager=tail]")
    page.wait_for_load_state()
    last = page.locator("#log-view tbody tr").last
    assert "line 019999" in last.inner_text()
    assert last.is_visible()
    box = last.bounding_box()
    scroller = page.locator(".rd-log-scroll").bounding_box()
    assert box["y"] + box["height"] <= scroller["y"] + scroller["height"] + 1
    assert box["y"] + box["height"] <= page.viewport_size["height"] + 1
    size_before = page.locator("[data-log-size]").inner_text()

    # The file grows while the page follows it: new lines show and the header says so.
    more = "".join(f"more {i:06d} " + "y" * 90 + "\n" for i in range(3_000))
    services.run_file_write(
        run=run, path="logs/big.log", stream=io.BytesIO(more.encode()), append=True
    )
    page.locator("#log-view tbody tr", has_text="more 002999").wait_for(timeout=15_000)
    newest = page.locator("#log-view tbody tr", has_text="more 002999").bounding_box()
    scroller = page.locator(".rd-log-scroll").bounding_box()
    assert scroller["y"] <= newest["y"] <= scroller["y"] + scroller["height"]  # followed
    assert page.locator("[data-log-size]").inner_text() != size_before
    total = len(lines.encode()) + len(more.encode())
    assert f"of {total}" in page.locator("[data-log-range]").inner_text()
    screenshot(page, "log_tail_live")


def test_plotly_loads_only_on_the_tabs_that_draw_a_chart(
    page, live_server, cast, make_run, sign_in
):
    run = make_run("resnet", display_name="charted")
    services.run_log_batch(run=run, metrics=[{"name": "loss", "kind": "scalar", "values": [1.0]}])
    scripts = []
    page.on("request", lambda r: scripts.append(r.url) if "plotly" in r.url else None)
    sign_in(page, cast.reader, "/w/lab/")
    for tab in ("overview", "outputs", "events"):
        page.goto(f"{live_server.url}/w/lab/runs/{run.run_id}/?tab={tab}")
        page.wait_for_load_state("load")
    assert scripts == []
    page.goto(f"{live_server.url}/w/lab/runs/{run.run_id}/?tab=metrics")
    page.locator(".rs-chart .js-plotly-plot").first.wait_for()
    assert len(scripts) == 1


def test_a_wide_list_keeps_the_name_in_view_ids_whole_and_shows_the_total(
    page, live_server, cast, make_run, sign_in, screenshot
):
    for i in range(3):
        run = make_run(
            "resnet",
            display_name=f"wide-{i}",
            tags={f"t{k}": "v" * 20 for k in range(12)},
        )
    sign_in(page, cast.reader, "/w/lab/")
    page.set_viewport_size({"width": 900, "height": 700})
    cols = "&".join(f"col=tags.t{k}" for k in range(12))
    page.goto(f"{live_server.url}/w/lab/runs/?col=display_name&col=run_id&{cols}")
    assert "of 3" in page.locator("#run-range").inner_text()
    assert "3 runs" in page.locator("#pager-total").inner_text()
    id_cell = page.locator("#run-table tbody tr").first.locator("td code").first
    name_cell = page.locator("#run-table tbody td.name").first
    assert id_cell.bounding_box()["height"] <= name_cell.bounding_box()["height"] + 1
    before = name_cell.bounding_box()["x"]
    page.locator(".table-wrap").evaluate("el => { el.scrollLeft = 600; }")
    assert page.locator(".table-wrap").evaluate("el => el.scrollLeft") > 0
    assert abs(name_cell.bounding_box()["x"] - before) < 2  # stuck to the left edge
    assert run.run_id  # the last run made, listed first
    screenshot(page, "run_list_wide_scrolled")


def test_find_in_a_big_log_jumps_to_each_match_on_the_server(
    page, live_server, cast, make_run, sign_in, screenshot
):
    run = make_run("resnet", display_name="searchable")
    lines = [f"line {i:06d} " + "x" * 60 for i in range(30_000)]
    lines[12_345] = "line 012345 CUDA Error: out of memory"
    lines[27_000] = "line 027000 cuda error again"
    text = "\n".join(lines) + "\n"
    services.run_file_write(run=run, path="logs/big.log", stream=io.BytesIO(text.encode()))
    sign_in(page, cast.reader, "/w/lab/")
    page.goto(f"{live_server.url}/w/lab/runs/{run.run_id}/?tab=outputs&file=logs/big.log")
    page.fill(".rd-find input[name=find]", "cuda error")
    page.press(".rd-find input[name=find]", "Enter")
    page.wait_for_load_state()
    match = page.locator("#log-match")
    assert "CUDA Error: out of memory" in match.inner_text()
    assert match.locator("mark").inner_text() == "CUDA Error"
    assert match.locator("td.ln").get_attribute("data-n") == "12346"
    assert "line 12346" in page.locator("[data-find-status]").inner_text()
    screenshot(page, "log_find")
    page.click("[data-find-next]")
    page.wait_for_load_state()
    assert "027000 cuda error again" in page.locator("#log-match").inner_text()
    page.click("[data-find-next]")
    page.wait_for_load_state()
    assert "No more matches" in page.locator("[data-find-status]").inner_text()


def test_adding_and_removing_a_column_redraws_the_table_without_a_page_load(
    page, live_server, cast, make_run, sign_in, screenshot
):
    run = make_run("resnet", display_name="cols", tags={"team": "vision"})
    services.run_log_batch(run=run, metrics=[{"name": "loss", "kind": "scalar", "values": [0.5]}])
    sign_in(page, cast.reader, "/w/lab/runs/")
    page.evaluate("window.__sameDocument = true")
    page.click("details.columns-menu > summary")
    page.check("details.columns-menu input[value=run_id]")
    page.locator("#run-table thead th", has_text="Run id").wait_for()
    assert page.evaluate("window.__sameDocument === true")
    assert "col=run_id" in page.url
    assert run.run_id in page.locator("#run-table tbody").inner_text()

    page.fill(".add-column input", "tags.team")
    page.click("details.columns-menu button[type=submit]")
    page.locator("#run-table thead th", has_text="team").wait_for()
    assert page.locator("#run-table tbody td.kv").first.inner_text() == "vision"
    page.uncheck("details.columns-menu input[value=experiment]")
    page.wait_for_function(
        "!document.querySelector('#run-table thead').innerText.includes('Experiment')"
    )
    assert page.evaluate("window.__sameDocument === true")
    assert "Columns (7)" in page.locator("details.columns-menu > summary").inner_text()
    resize = page.locator("#run-table thead th .col-resize").first
    assert resize.evaluate("el => getComputedStyle(el).resize") == "horizontal"
    screenshot(page, "run_list_columns")
