"""Run management in a real browser: select runs, archive them after a confirm in the page,
find them on the Archived page, restore; bulk tag; an owner deletes for good from the run page;
a reader sees no Manage menu."""

import pytest

from runs.models import Run, RunActivity, RunTag

pytestmark = pytest.mark.django_db(transaction=True)


def names_on_page(page) -> list[str]:
    return [t.strip() for t in page.locator("#run-table tbody td.name a").all_inner_texts()]


def select(page, *names: str) -> None:
    for name in names:
        page.locator("#run-table tbody tr", has_text=name).locator("input[type=checkbox]").check()


@pytest.fixture
def lab(make_run):
    parent = make_run("sweep", display_name="sweep-parent")
    make_run("sweep", parent=parent, display_name="sweep-child")
    runs = {"sweep-parent": parent}
    for name in ("keep-me", "old-a", "old-b"):
        runs[name] = make_run("misc", display_name=name)
    return runs


def test_archive_in_bulk_find_them_archived_and_restore(
    page, live_server, cast, lab, sign_in, screenshot
):
    dialogs = []

    def answer(dialog):
        dialogs.append(dialog.message)
        # The first confirm is dismissed: nothing may change.
        dialog.dismiss() if len(dialogs) == 1 else dialog.accept()

    page.on("dialog", answer)
    sign_in(page, cast.contributor, "/w/lab/runs/")
    assert sorted(names_on_page(page)) == ["keep-me", "old-a", "old-b", "sweep-parent"]
    page.click("#manage-button")
    assert page.locator("#manage-form button[value=archive]").is_disabled()
    assert page.locator("#manage-form button[value=delete]").count() == 0  # owners only
    select(page, "old-a", "sweep-parent")  # a click in the table closes the menu
    assert page.locator("#manage-button [data-selected-count]").inner_text() == "2"
    page.click("#manage-button")
    screenshot(page, "manage_menu")
    page.click("#manage-form button[value=archive]")
    assert "Archive 2 runs" in dialogs[0]
    assert not Run.objects.filter(archived_at__isnull=False).exists()

    page.click("#manage-form button[value=archive]")  # the menu is still open
    page.wait_for_load_state()
    assert "Archived 2 runs (3 with their child runs)" in page.locator(".messages").inner_text()
    assert sorted(names_on_page(page)) == ["keep-me", "old-b"]

    page.click("#archived-link")
    page.wait_for_load_state()
    assert page.url.endswith("/w/lab/archived/")
    assert sorted(names_on_page(page)) == ["old-a", "sweep-parent"]
    assert page.locator("#activity-table tbody tr").count() == 2
    screenshot(page, "archived_page")

    select(page, "old-a")
    page.click("#manage-button")
    page.click("#manage-form button[value=restore]")
    page.wait_for_load_state()
    assert names_on_page(page) == ["sweep-parent"]
    page.goto(f"{live_server.url}/w/lab/runs/")
    assert sorted(names_on_page(page)) == ["keep-me", "old-a", "old-b"]


def test_bulk_tag_from_the_selection(page, live_server, cast, lab, sign_in):
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, cast.contributor, "/w/lab/runs/")
    select(page, "keep-me", "old-b")
    page.click("#manage-button")
    page.fill("#manage-form input[name=tags]", "stage=review, golden")
    page.click("#manage-form button[value=tag]")
    page.wait_for_load_state()
    assert "Tagged 2 runs" in page.locator(".messages").inner_text()
    tags = sorted(RunTag.objects.values_list("run__display_name", "key", "value"))
    assert tags == [
        ("keep-me", "golden", None),
        ("keep-me", "stage", "review"),
        ("old-b", "golden", None),
        ("old-b", "stage", "review"),
    ]


def test_an_owner_deletes_a_run_for_good_from_its_page(
    page, live_server, cast, lab, sign_in, screenshot
):
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    run = lab["sweep-parent"]
    sign_in(page, cast.owner, "/w/lab/")
    page.goto(f"{live_server.url}/w/lab/runs/{run.run_id}/")
    page.click("#run-manage button[value=archive]")
    page.wait_for_load_state()
    assert "Archived" in page.locator("#run-manage").inner_text()
    screenshot(page, "run_page_archived")
    page.click("#run-manage button[value=delete]")
    page.wait_for_load_state()
    assert "for good" in dialogs[-1]
    assert page.url.endswith("/w/lab/runs/")
    assert not Run.objects.filter(display_name__startswith="sweep").exists()
    assert RunActivity.objects.filter(action="delete", run_id=run.run_id).exists()


def test_a_reader_has_no_manage_menu(page, live_server, cast, lab, sign_in):
    sign_in(page, cast.reader, "/w/lab/runs/")
    assert page.locator("#manage-button").count() == 0
    page.goto(f"{live_server.url}/w/lab/runs/{lab['keep-me'].run_id}/")
    assert page.locator("#run-manage button").count() == 0
