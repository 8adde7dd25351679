"""The run detail page in a real browser: in-place edits, a neutralised <script>, the log
viewer and its live tail, Download all, live status, and a screenshot of every tab."""

import io
import struct
import zipfile
import zlib

import pytest

from runs import services
from runs.models import RunStatus

pytestmark = pytest.mark.django_db(transaction=True)


def png(width: int = 48, height: int = 32) -> bytes:
    """A small gradient PNG, written by hand so the tests need no imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 5 % 256, y * 8 % 256, 160)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


LOG_LINES = [f"epoch {i // 10} step {i}: loss={1 / (i + 1):.4f}" for i in range(40)]
FILES = {
    "logs/driver.log": ("\n".join(LOG_LINES) + "\n").encode(),
    "logs/azureml/job_prep.log": b"preparing\ndone\n",
    "outputs/model.txt": b"weights go here\n",
    "outputs/images/sample/0_sample.png": png(),
}


@pytest.fixture
def seeded(cast, make_run):
    run = make_run(
        "mnist",
        display_name="resnet baseline",
        description="Trains **ResNet-18** on MNIST.\n\n| lr | batch |\n|---|---|\n| 0.1 | 64 |",
        tags={"team": "vision", "candidate": None},
        compute_target="local",
    )
    services.run_add_properties(run=run, properties={"git_commit": "1a2b3c4", "framework": "torch"})
    services.run_log_batch(
        run=run,
        metrics=[
            {"name": "loss", "kind": "scalar", "values": [1 / (i + 1) for i in range(50)]},
            {"name": "accuracy", "kind": "scalar", "values": [i / 50 for i in range(50)]},
            {
                "name": "confusion",
                "kind": "row",
                "values": [{"class": c, "tp": 9 - c, "fp": c} for c in range(4)],
            },
            {"name": "note", "kind": "string", "values": ["warm-up done", "lr decayed"]},
            {"name": "sample", "kind": "image", "values": ["outputs/images/sample/0_sample.png"]},
        ],
    )
    for path, data in FILES.items():
        services.run_file_write(run=run, path=path, stream=io.BytesIO(data))
    for index, lr in enumerate((0.1, 0.01, 0.001)):
        child = make_run("mnist", parent=run, display_name=f"lr={lr}", run_type="child")
        services.run_log_batch(
            run=child,
            metrics=[{"name": "accuracy", "kind": "scalar", "values": [0.5, 0.7 + index / 10]}],
        )
        if index == 0:
            grandchild = make_run("mnist", parent=child, display_name="fold 1", run_type="child")
            services.run_set_status(run=grandchild, status=RunStatus.COMPLETED)
        services.run_set_status(run=child, status=RunStatus.COMPLETED)
    return run


def url(live_server, run, query: str = "") -> str:
    return f"{live_server.url}/w/lab/runs/{run.run_id}/{query}"


def test_contributor_edits_display_name_tags_and_description(
    page, live_server, cast, seeded, sign_in, screenshot
):
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, cast.contributor, next_path=f"/w/lab/runs/{seeded.run_id}/")
    assert page.locator("h1#run-name").inner_text() == "resnet baseline"
    screenshot(page, "run_overview")

    page.click("summary[aria-label='Edit display name']")
    name = page.locator("input[name=display_name]")
    assert name.is_visible()
    name.fill("resnet <b>tuned</b>")
    name.press("Enter")
    page.wait_for_load_state()
    assert page.locator("h1#run-name").inner_text() == "resnet <b>tuned</b>"

    page.click("summary:has-text('Add tag')")
    page.fill("input[aria-label='Tag key']", "stage")
    page.fill("input[aria-label='Tag value']", "review")
    page.click("#run-tags button:has-text('Add')")
    page.wait_for_load_state()
    assert page.locator(".rd-tag[data-tag=stage]").inner_text().startswith("stage:review")

    page.click("summary[aria-label='Edit tag team']")
    page.fill("input[aria-label='Value of team']", "perception")
    page.click(".rd-tag[data-tag=team] button:has-text('Save')")
    page.wait_for_load_state()
    assert "perception" in page.locator(".rd-tag[data-tag=team]").inner_text()

    page.click("button[aria-label='Remove tag candidate']")
    page.wait_for_load_state()
    assert page.locator(".rd-tag[data-tag=candidate]").count() == 0

    page.click("summary:has-text('Edit description')")
    hostile = (
        "## Results\n\n**best** run so far, see [the paper](https://example.org/p).\n\n"
        "<script>window.pwned = 1; alert('script ran')</script>\n\n"
        '<img src="x" onerror="window.pwned = 2; alert(\'onerror ran\')">\n\n'
        "[click me](javascript:alert('link ran'))\n"
    )
    page.fill("textarea[name=description]", hostile)
    page.click("button[data-preview]")
    preview = page.locator("#description-preview")
    preview.locator("strong").wait_for()
    assert preview.locator("strong").inner_text() == "best"
    assert preview.locator("script").count() == 0
    screenshot(page, "run_description_preview")

    page.click(".rd-description-form button[type=submit]")
    page.wait_for_load_state()
    view = page.locator("#description-view")
    assert view.locator("h2").inner_text() == "Results"
    assert view.locator("a[href='https://example.org/p']").get_attribute("rel") == (
        "nofollow noopener noreferrer"
    )
    assert view.locator("script").count() == 0
    assert view.locator("[onerror]").count() == 0
    assert view.locator("a[href^='javascript']").count() == 0
    view.locator("a:has-text('click me')").click()
    page.wait_for_timeout(300)
    assert page.evaluate("window.pwned") is None
    assert dialogs == []
    screenshot(page, "run_overview_edited")


def test_reader_sees_no_edit_controls(page, live_server, cast, seeded, sign_in):
    sign_in(page, cast.reader, next_path=f"/w/lab/runs/{seeded.run_id}/")
    assert page.locator("h1#run-name").inner_text() == "resnet baseline"
    assert page.locator("summary[aria-label='Edit display name']").count() == 0
    assert page.locator("summary:has-text('Add tag')").count() == 0
    assert page.locator("summary:has-text('Edit description')").count() == 0
    assert page.locator("button:has-text('Cancel run')").count() == 0


def test_open_a_log_page_it_and_follow_it_live(
    page, live_server, cast, seeded, sign_in, screenshot
):
    sign_in(page, cast.reader, next_path=f"/w/lab/runs/{seeded.run_id}/?tab=outputs")
    page.click(".rd-file a:has-text('driver.log')")
    page.wait_for_load_state()
    log = page.locator("#log-view")
    assert log.locator("tr").count() == len(LOG_LINES)
    assert log.locator("tr").first.locator(".lc").inner_text() == LOG_LINES[0]
    assert log.locator("tr").nth(9).locator(".ln").get_attribute("data-n") == "10"
    screenshot(page, "run_outputs_log")

    services.run_file_write(
        run=seeded, path="logs/driver.log", stream=io.BytesIO(b"epoch 4 live line\n"), append=True
    )
    last = log.locator("tr").last
    page.wait_for_function(
        f"document.querySelectorAll('#log-view tr').length === {len(LOG_LINES) + 1}",
        timeout=10_000,
    )
    assert last.locator(".lc").inner_text() == "epoch 4 live line"
    assert last.locator(".ln").get_attribute("data-n") == str(len(LOG_LINES) + 1)


def test_download_all_streams_a_zip_of_the_runs_files(
    page, live_server, cast, seeded, sign_in, tmp_path
):
    sign_in(page, cast.reader, next_path=f"/w/lab/runs/{seeded.run_id}/?tab=outputs")
    with page.expect_download() as info:
        page.click("[data-download-all]")
    download = info.value
    assert download.suggested_filename == f"{seeded.run_id}.zip"
    target = tmp_path / "all.zip"
    download.save_as(target)
    with zipfile.ZipFile(target) as archive:
        assert sorted(archive.namelist()) == sorted(FILES)
        assert archive.read("logs/driver.log") == FILES["logs/driver.log"]


def test_status_updates_live_and_polling_stops_when_the_run_ends(
    page, live_server, cast, seeded, sign_in
):
    sign_in(page, cast.reader, next_path=f"/w/lab/runs/{seeded.run_id}/")
    assert page.locator("#run-status .rd-badge").inner_text() == "Running"
    services.run_log_batch(
        run=seeded, metrics=[{"name": "loss", "kind": "scalar", "values": [0.001]}]
    )
    services.run_set_status(run=seeded, status=RunStatus.COMPLETED)
    page.wait_for_function(
        "document.querySelector('#run-status .rd-badge').textContent.trim() === 'Completed'",
        timeout=10_000,
    )
    assert page.locator("#run-page").get_attribute("data-live") == "0"
    assert "0.001" in page.locator("#run-metric-summary").inner_text()


def test_contributor_cancels_a_running_run(page, live_server, cast, seeded, sign_in):
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, cast.contributor, next_path=f"/w/lab/runs/{seeded.run_id}/")
    page.click("button:has-text('Cancel run')")
    page.wait_for_load_state()
    # It runs on a compute target: its worker is asked to stop it first.
    assert page.locator("#run-status .rd-badge").inner_text() == "CancelRequested"
    page.click("button:has-text('Cancel run')")  # a second cancel does not wait for the worker
    page.wait_for_load_state()
    assert page.locator("#run-status .rd-badge").inner_text() == "Canceled"
    assert page.locator("button:has-text('Cancel run')").count() == 0
    page.click(".rd-tabs a:has-text('Events')")
    # The tab loads after the click returns: wait for its rows (read at once, it found none).
    page.locator("#run-events tbody tr").nth(2).wait_for()
    assert page.locator("#run-events tbody tr").count() == 3  # created, requested, canceled


def test_every_tab_renders(page, live_server, cast, seeded, sign_in, screenshot):
    sign_in(page, cast.reader, next_path=f"/w/lab/runs/{seeded.run_id}/")
    page.click(".rd-tabs a:has-text('Metrics')")
    page.locator(".rs-chart[data-metric=loss]").wait_for()  # the tab loads after the click
    assert page.locator(".rs-chart[data-metric=loss]").count() == 1
    assert page.locator("#metric-confusion th:has-text('tp')").count() == 1
    image = page.locator(".rd-gallery img")
    page.wait_for_function("document.querySelector('.rd-gallery img').naturalWidth === 48")
    assert image.count() == 1
    page.wait_for_timeout(1500)  # let the charts draw
    screenshot(page, "run_metrics")

    page.click(".rd-tabs a:has-text('Child runs')")
    page.locator("#run-children tbody tr").nth(3).wait_for()
    rows = page.locator("#run-children tbody tr")
    assert rows.count() == 4
    assert rows.nth(1).get_attribute("data-depth") == "2"  # the grandchild, under its parent
    assert page.locator(".rd-best-badge").count() == 1
    page.wait_for_timeout(1000)
    screenshot(page, "run_children")

    page.click(".rd-tabs a:has-text('Outputs')")
    page.wait_for_load_state()
    page.click(".rd-file a:has-text('0_sample.png')")
    page.wait_for_function("document.querySelector('.rd-image').naturalWidth === 48")
    screenshot(page, "run_outputs_image")

    page.click(".rd-tabs a:has-text('Events')")
    page.locator("#run-events tbody tr").first.wait_for()
    assert page.locator("#run-events tbody tr").count() >= 1
    screenshot(page, "run_events")
