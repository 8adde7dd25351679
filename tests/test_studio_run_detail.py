"""The run detail page (runs/views/run_detail.py): access for every role on every view and
write, the Markdown sanitiser, log paging by offset, the streamed zip, the live fragments and
a pinned query count."""

import io
import zipfile

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from runs import services, storage
from runs.models import RunStatus, RunTag, StatusEvent
from runs.rich_text import render_markdown

ROLES = ["owner", "contributor", "reader"]


@pytest.fixture
def browser(cast):
    """browser("reader") → a Django test client signed in as that member (session auth)."""

    def make(role: str, *, csrf: bool = False) -> Client:
        client = Client(enforce_csrf_checks=csrf)
        if role != "anonymous":
            client.force_login(cast.by_role(role).user)
        return client

    return make


@pytest.fixture
def run(make_run):
    return make_run(display_name="baseline", tags={"team": "vision"}, compute_target="")


def page_url(run, suffix: str = "") -> str:
    return f"/w/{run.workspace.name}/runs/{run.run_id}/{suffix}"


def write(run, path: str, data: bytes, append: bool = False):
    return services.run_file_write(run=run, path=path, stream=io.BytesIO(data), append=append)


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


# --- access: every view for every role ------------------------------------------------------

GET_VIEWS = [
    "",
    "?tab=overview",
    "?tab=metrics",
    "?tab=children",
    "?tab=outputs",
    "?tab=outputs&file=logs/a.log",
    "?tab=events",
    "?fragment=live",
    "?tab=children&fragment=live",
    "?fragment=log&file=logs/a.log&offset=0",
    "files/logs/a.log",
    "download/",
]


@pytest.mark.parametrize("suffix", GET_VIEWS)
def test_members_see_every_view_and_outsiders_get_404(browser, run, suffix):
    write(run, "logs/a.log", b"hello\n")
    for role in ROLES:
        response = browser(role).get(page_url(run, suffix))
        assert response.status_code == 200, (role, suffix)
        body(response)
    assert browser("outsider").get(page_url(run, suffix)).status_code == 404
    anonymous = browser("anonymous").get(page_url(run, suffix))
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/")


def test_a_run_under_another_workspace_name_is_404(browser, run, cast):
    response = browser("owner").get(f"/w/elsewhere/runs/{run.run_id}/")
    assert response.status_code == 404


WRITES = [
    ("edit/", {"display_name": "renamed"}),
    ("edit/", {"description": "new words"}),
    ("tags/", {"action": "set", "key": "stage", "value": "review"}),
    ("tags/", {"action": "remove", "key": "team"}),
    ("cancel/", {}),
    ("preview/", {"description": "**hi**"}),
]


@pytest.mark.parametrize(("suffix", "data"), WRITES)
def test_readers_get_403_and_outsiders_404_on_every_write(browser, run, suffix, data):
    assert browser("reader").post(page_url(run, suffix), data).status_code == 403
    assert browser("outsider").post(page_url(run, suffix), data).status_code == 404
    anonymous = browser("anonymous").post(page_url(run, suffix), data)
    assert anonymous.status_code == 302
    run.refresh_from_db()
    assert run.display_name == "baseline"
    assert run.description == ""
    assert run.status == RunStatus.RUNNING
    assert dict(run.tags.values_list("key", "value")) == {"team": "vision"}


@pytest.mark.parametrize(("suffix", "data"), WRITES)
def test_every_write_needs_a_csrf_token(browser, run, suffix, data):
    assert browser("contributor", csrf=True).post(page_url(run, suffix), data).status_code == 403


@pytest.mark.parametrize("suffix", ["edit/", "tags/", "cancel/", "preview/", "download/"])
def test_writes_refuse_get_and_downloads_refuse_post(browser, run, suffix):
    method = "post" if suffix == "download/" else "get"
    assert getattr(browser("contributor"), method)(page_url(run, suffix)).status_code == 405


def test_readers_see_no_edit_controls(browser, run):
    html = browser("reader").get(page_url(run)).content.decode()
    for marker in ("/edit/", "/tags/", "/cancel/", "Edit display name", "Add tag", "Cancel run"):
        assert marker not in html
    html = browser("contributor").get(page_url(run)).content.decode()
    for marker in ("/edit/", "/tags/", "/cancel/", "Edit display name", "Add tag", "Cancel run"):
        assert marker in html


# --- writes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "contributor"])
def test_contributors_rename_a_run_in_place(browser, run, role):
    response = browser(role).post(page_url(run, "edit/"), {"display_name": "  tuned  "})
    assert response.status_code == 302
    assert response["Location"] == page_url(run)
    run.refresh_from_db()
    assert run.display_name == "tuned"
    assert run.description == ""  # the other field is left alone


def test_saving_the_description_keeps_its_text_and_returns_to_the_tab(browser, run):
    text = "# Notes\n\n  indented code\n"
    response = browser("contributor").post(
        page_url(run, "edit/"), {"description": text, "tab": "metrics"}
    )
    assert response["Location"] == page_url(run) + "?tab=metrics"
    run.refresh_from_db()
    assert run.description == text


def test_a_too_long_name_is_refused_with_a_message_and_nothing_changes(browser, run):
    client = browser("contributor")
    response = client.post(page_url(run, "edit/"), {"display_name": "x" * 300}, follow=True)
    assert "display_name" in response.content.decode()
    run.refresh_from_db()
    assert run.display_name == "baseline"


def test_tags_are_added_edited_made_bare_and_removed(browser, run):
    client = browser("contributor")
    client.post(page_url(run, "tags/"), {"action": "set", "key": "stage", "value": "review"})
    client.post(page_url(run, "tags/"), {"action": "set", "key": "team", "value": "perception"})
    client.post(page_url(run, "tags/"), {"action": "set", "key": "candidate", "value": ""})
    assert dict(run.tags.values_list("key", "value")) == {
        "team": "perception",
        "stage": "review",
        "candidate": None,
    }
    client.post(page_url(run, "tags/"), {"action": "remove", "key": "team"})
    assert set(run.tags.values_list("key", flat=True)) == {"stage", "candidate"}


def test_a_bad_tag_key_is_refused_with_the_services_message(browser, run):
    response = browser("contributor").post(
        page_url(run, "tags/"), {"action": "set", "key": "bad\x01key", "value": "v"}, follow=True
    )
    assert "control character" in response.content.decode()
    assert not RunTag.objects.filter(run=run, key__startswith="bad").exists()


def test_cancel_ends_an_interactive_run_and_records_who(browser, run, cast):
    browser("contributor").post(page_url(run, "cancel/"))
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELED
    event = StatusEvent.objects.filter(run=run).last()
    assert (event.to_status, event.by) == (RunStatus.CANCELED, cast.contributor.user)
    html = browser("contributor").get(page_url(run)).content.decode()
    assert "Cancel run" not in html


def test_cancelling_a_finished_run_says_why_and_changes_nothing(browser, run):
    services.run_set_status(run=run, status=RunStatus.COMPLETED)
    response = browser("contributor").post(page_url(run, "cancel/"), follow=True)
    assert "cannot become Canceled" in response.content.decode()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED


def test_the_preview_renders_through_the_sanitiser(browser, run):
    response = browser("contributor").post(
        page_url(run, "preview/"), {"description": "**bold** <script>alert(1)</script>"}
    )
    html = response.content.decode()
    assert "<strong>bold</strong>" in html
    assert "<script" not in html


# --- escaping -------------------------------------------------------------------------------


def test_user_text_is_escaped_everywhere(browser, make_run):
    evil = "<img src=x onerror=alert(1)>"
    run = make_run(display_name=evil, tags={evil: evil})
    services.run_add_properties(run=run, properties={evil: evil})
    services.run_log_batch(
        run=run,
        metrics=[
            {"name": evil, "kind": "scalar", "values": [1.0]},
            {"name": "s", "kind": "string", "values": [evil]},
            {"name": "r", "kind": "row", "values": [{evil: evil}]},
        ],
    )
    make_run(parent=run, display_name=evil)
    write(run, f"logs/{evil}.log", f"{evil}\n".encode())
    client = browser("contributor")
    for suffix in [
        "",
        "?tab=metrics",
        "?tab=children",
        f"?tab=outputs&file=logs/{evil}.log",
        "?tab=events",
        "?fragment=live",
    ]:
        html = client.get(page_url(run, suffix)).content.decode()
        assert "<img src=x" not in html, suffix
        assert "&lt;img src=x onerror=alert(1)&gt;" in html, suffix


# --- the Markdown sanitiser -----------------------------------------------------------------


def test_markdown_keeps_formatting_links_images_tables_and_code():
    html = render_markdown(
        "# Title\n\n**b** [link](https://example.org/a) ![plot](files/outputs/plot.png)\n\n"
        "| a | b |\n|---|--:|\n| 1 | 2 |\n\n```python\nx = 1 < 2\n```\n\n- one\n- two\n"
    )
    assert "<h1>Title</h1>" in html
    assert "<strong>b</strong>" in html
    assert '<a href="https://example.org/a" rel="nofollow noopener noreferrer">link</a>' in html
    assert '<img alt="plot" src="files/outputs/plot.png" loading="lazy">' in html
    assert '<th align="right">b</th>' in html
    assert '<code class="language-python">x = 1 &lt; 2' in html
    assert "<li>one</li>" in html


def test_markdown_strips_script_tags():
    html = render_markdown("hi <script>alert(1)</script>")
    assert "<script" not in html
    assert "</script" not in html


def test_markdown_strips_event_handlers():
    html = render_markdown('<img src=x onerror=alert(1)> <a href="/x" onclick="go()">a</a>')
    assert "onerror" not in html
    assert "onclick" not in html
    assert '<img src="x" loading="lazy">' in html


@pytest.mark.parametrize(
    "text",
    [
        "[x](javascript:alert(1))",
        '<a href="JaVaScRiPt:alert(1)">x</a>',
        '<a href="  javascript:alert(1)">x</a>',
        "![x](data:image/png;base64,AAAA)",
        '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    ],
)
def test_markdown_neutralises_javascript_and_data_urls(text):
    html = render_markdown(text).lower()
    assert "javascript:" not in html
    assert "data:" not in html


def test_markdown_drops_styles_iframes_and_forms():
    html = render_markdown(
        '<p style="position:fixed">p</p><iframe src="https://e.org"></iframe>'
        '<form action="/x"><input name=a></form><svg onload=alert(1)></svg>'
    )
    for bad in ("style=", "<iframe", "<form", "<input", "<svg", "onload"):
        assert bad not in html


def test_markdown_code_blocks_may_only_carry_a_language_class():
    html = render_markdown('<code class="rd-button evil">x</code>')
    assert "class=" not in html


# --- outputs + logs: paging by offset -------------------------------------------------------


@pytest.fixture
def big_log(run):
    """~200 KiB of numbered lines: more than three 64 KiB pages."""
    lines = [f"line {n:06d} " + "x" * 60 for n in range(1, 3001)]
    write(run, "logs/big.log", ("\n".join(lines) + "\n").encode())
    return lines


def test_a_page_holds_whole_lines_and_points_at_the_next(run, big_log):
    page = storage.run_file_page(run=run, path="logs/big.log")
    assert page.start == 0
    assert page.lines[0] == big_log[0]
    assert page.end <= storage.TEXT_PAGE_BYTES
    assert page.lines == big_log[: len(page.lines)]
    following = storage.run_file_page(run=run, path="logs/big.log", offset=page.end)
    assert following.lines[0] == big_log[len(page.lines)]


def test_an_offset_inside_a_line_moves_to_the_next_line(run, big_log):
    page = storage.run_file_page(run=run, path="logs/big.log", offset=5)
    assert page.lines[0] == big_log[1]
    assert page.start == len(big_log[0]) + 1


def test_reading_a_page_never_reads_the_whole_file(run, big_log, monkeypatch):
    asked = []
    real = storage.run_file_read

    def spy(**kwargs):
        asked.append(kwargs["length"])
        return real(**kwargs)

    monkeypatch.setattr(storage.reads, "run_file_read", spy)  # where run_file_page finds it
    storage.run_file_page(run=run, path="logs/big.log", offset=100_000)
    assert asked and max(asked) <= storage.TEXT_PAGE_BYTES + 1


def test_the_log_viewer_pages_forward_backward_and_to_the_tail(browser, run, big_log):
    client = browser("reader")
    base = page_url(run, "?tab=outputs&file=logs/big.log")
    first = client.get(base)
    html = first.content.decode()
    page = first.context["viewer"]["page"]
    assert first.context["viewer"]["first_line"] == 1
    assert 'data-n="1"' in html and big_log[0] in html
    assert big_log[-1] not in html

    second = client.get(base + f"&offset={page.end}&line={1 + len(page.lines)}")
    viewer = second.context["viewer"]
    assert viewer["page"].lines[0] == big_log[len(page.lines)]
    assert viewer["first_line"] == 1 + len(page.lines)

    back = client.get(base + f"&before={viewer['page'].start}")
    assert back.context["viewer"]["page"].lines[-1] == big_log[len(page.lines) - 1]

    tail = client.get(base + "&tail=1")
    viewer = tail.context["viewer"]
    assert viewer["page"].lines[-1] == big_log[-1]
    assert viewer["page"].at_end
    assert viewer["first_line"] == len(big_log) - len(viewer["page"].lines) + 1


def test_the_live_tail_fragment_returns_only_new_whole_lines(browser, run):
    write(run, "logs/live.log", b"one\ntwo\n")
    client = browser("reader")
    size = 8
    write(run, "logs/live.log", b"three\nfour (unfinished", append=True)
    response = client.get(page_url(run, f"?fragment=log&file=logs/live.log&offset={size}&line=3"))
    html = response.content.decode()
    assert ">three<" in html and "unfinished" not in html  # the run is live: whole lines only
    assert 'data-n="3"' in html
    assert f'data-next-offset="{size + 6}"' in html
    assert 'data-next-line="4"' in html
    services.run_set_status(run=run, status=RunStatus.COMPLETED)
    html = client.get(
        page_url(run, f"?fragment=log&file=logs/live.log&offset={size + 6}&line=4")
    ).content.decode()
    assert "four (unfinished" in html  # finished: the last line as it is


def test_a_binary_file_is_not_shown_as_text(browser, run):
    write(run, "outputs/model.bin", bytes(range(256)) * 10)
    response = browser("reader").get(page_url(run, "?tab=outputs&file=outputs/model.bin"))
    assert response.context["viewer"]["kind"] == "binary"


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "logs/missing.log"])
def test_bad_or_unknown_paths_are_refused(browser, run, path):
    client = browser("reader")
    viewer = client.get(page_url(run), {"tab": "outputs", "file": path}).context["viewer"]
    assert viewer["error"]
    assert client.get(page_url(run), {"fragment": "log", "file": path}).status_code == 404
    assert client.get(page_url(run, f"files/{path.lstrip('/')}")).status_code == 404


def test_a_file_downloads_streamed_as_an_attachment(browser, run):
    content = b"a,b\n" * 100_000
    write(run, "outputs/data file.csv", content)
    response = browser("reader").get(page_url(run, "files/outputs/data file.csv"))
    assert response.streaming
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == 'attachment; filename="data file.csv"'
    assert body(response) == content


def test_images_show_inline_but_html_and_svg_download(browser, run):
    write(run, "outputs/plot.png", b"\x89PNG\r\n\x1a\nfake")
    write(run, "outputs/page.html", b"<script>alert(1)</script>")
    write(run, "outputs/pic.svg", b"<svg onload=alert(1)></svg>")
    client = browser("reader")
    image = client.get(page_url(run, "files/outputs/plot.png"))
    assert image["Content-Type"] == "image/png"
    assert image["Content-Disposition"].startswith("inline")
    for path in ("outputs/page.html", "outputs/pic.svg"):
        response = client.get(page_url(run, f"files/{path}"))
        assert response["Content-Type"] == "application/octet-stream"
        assert response["Content-Disposition"].startswith("attachment")
        assert "sandbox" in response["Content-Security-Policy"]


# --- Download all: a streamed zip -----------------------------------------------------------


def test_download_all_streams_a_zip_whose_entries_are_the_runs_paths(browser, run):
    files = {
        "logs/driver.log": b"hello\n" * 50_000,
        "outputs/model.bin": bytes(range(256)) * 9_000,  # > 2 storage chunks
        "outputs/images/a.png": b"\x89PNG fake",
    }
    for path, data in files.items():
        write(run, path, data)
    response = browser("reader").get(page_url(run, "download/"))
    assert response.streaming
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == f'attachment; filename="{run.run_id}.zip"'
    chunks = list(response.streaming_content)
    assert len(chunks) > 3  # produced piece by piece, not built whole
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as archive:
        assert sorted(archive.namelist()) == sorted(files)
        assert archive.testzip() is None
        for path, data in files.items():
            assert archive.read(path) == data


def test_the_zip_generator_yields_before_reading_everything(run):
    write(run, "a.log", b"a" * (3 * storage.CHUNK))
    write(run, "b.log", b"b" * 10)
    stream = storage.run_files_zip(run=run, files=list(run.files.order_by("path")))
    first = next(stream)
    assert first.startswith(b"PK\x03\x04")  # the first entry's header, before the rest exists
    assert len(first) < storage.CHUNK


def test_an_empty_run_downloads_an_empty_zip(browser, run):
    data = body(browser("reader").get(page_url(run, "download/")))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == []


# --- tabs -----------------------------------------------------------------------------------


def test_the_child_runs_tab_shows_the_tree_with_metric_columns_and_the_best(browser, run, make_run):
    first = make_run(parent=run, display_name="first")
    second = make_run(parent=run, display_name="second")
    grandchild = make_run(parent=first, display_name="grandchild")
    make_run(parent=grandchild, display_name="great-grandchild")
    for child, values in ((first, [0.9, 0.4]), (second, [0.8, 0.2]), (grandchild, [0.5])):
        services.run_log_batch(
            run=child, metrics=[{"name": "loss", "kind": "scalar", "values": values}]
        )
    services.run_log_batch(run=second, metrics=[{"name": "acc", "kind": "scalar", "values": [0.7]}])

    response = browser("reader").get(page_url(run, "?tab=children"))
    context = response.context
    names = [(row["run"].display_name, row["depth"]) for row in context["rows"]]
    assert names == [("first", 1), ("grandchild", 2), ("great-grandchild", 3), ("second", 1)]
    assert context["metric_names"] == ["acc", "loss"]
    assert context["chosen"] == ["acc"]  # the first scalar metric by default

    response = browser("reader").get(page_url(run, "?tab=children&metric=loss&metric=acc"))
    context = response.context
    assert context["chosen"] == ["loss", "acc"]
    assert context["goal"] == "min"  # a loss: lower is better
    assert context["best_pk"] == second.pk
    html = response.content.decode()
    assert 'class="rs-chart-children"' in html and 'data-metric="loss"' in html
    assert 'data-best="min"' in html


def test_the_metrics_tab_shows_charts_tables_strings_and_images(browser, run):
    write(run, "outputs/images/s/0_s.png", b"\x89PNG fake")
    services.run_log_batch(
        run=run,
        metrics=[
            {"name": "loss", "kind": "scalar", "values": [0.5, 0.25]},
            {"name": "table", "kind": "row", "values": [{"x": 1, "y": 2}, {"x": 3, "z": 4}]},
            {"name": "words", "kind": "string", "values": ["hello"]},
            {"name": "lists", "kind": "list", "values": [[1, 2]]},
            {"name": "pics", "kind": "image", "values": ["outputs/images/s/0_s.png"]},
        ],
    )
    response = browser("reader").get(page_url(run, "?tab=metrics"))
    html = response.content.decode()
    assert f'<div class="rs-chart" data-run="{run.run_id}" data-metric="loss"' in html
    tables = {t["series"].name: t for t in response.context["tables"]}
    assert tables["table"]["columns"] == ["x", "y", "z"]
    assert [cells for _, cells in tables["table"]["rows"]] == [[1, 2, None], [3, None, 4]]
    assert ">hello<" in html and "1, 2" in html
    assert f'src="{page_url(run, "files/outputs/images/s/0_s.png")}"' in html


def test_the_events_tab_lists_status_changes(browser, run, cast):
    services.run_set_status(run=run, status=RunStatus.FAILED, by=cast.owner.user, reason="OOM")
    response = browser("reader").get(page_url(run, "?tab=events"))
    events = list(response.context["events"])
    assert [(e.from_status, e.to_status) for e in events][-1] == ("Running", "Failed")
    assert "OOM" in response.content.decode()


def test_a_failed_run_shows_its_error(browser, run):
    services.run_set_status(
        run=run, status=RunStatus.FAILED, error_code="UserError", error_message="ValueError: boom"
    )
    html = browser("reader").get(page_url(run)).content.decode()
    assert "UserError" in html and "ValueError: boom" in html


# --- live -----------------------------------------------------------------------------------


def test_a_live_run_polls_and_a_finished_one_does_not(browser, run):
    client = browser("reader")
    assert 'data-live="1"' in client.get(page_url(run)).content.decode()
    fragment = client.get(page_url(run, "?fragment=live")).content.decode()
    assert 'id="run-status"' in fragment and 'data-terminal="0"' in fragment
    assert 'id="run-details"' in fragment and 'id="run-metric-summary"' in fragment
    assert "<html" not in fragment
    services.run_set_status(run=run, status=RunStatus.COMPLETED)
    assert 'data-live="0"' in client.get(page_url(run)).content.decode()
    fragment = client.get(page_url(run, "?fragment=live")).content.decode()
    assert 'data-terminal="1"' in fragment


# --- query count ----------------------------------------------------------------------------


def _populate(run, make_run, n: int):
    services.run_set_tags(run=run, set_tags={f"t{i}": str(i) for i in range(n)})
    services.run_add_properties(run=run, properties={f"p{i}": str(i) for i in range(n)})
    services.run_log_batch(
        run=run,
        metrics=[{"name": f"m{i}", "kind": "scalar", "values": [1.0, 2.0]} for i in range(n)]
        + [{"name": f"r{i}", "kind": "row", "values": [{"a": i}]} for i in range(n)],
    )
    for i in range(n):
        child = make_run(parent=run, display_name=f"c{i}", tags={"k": "v"})
        services.run_log_batch(
            run=child, metrics=[{"name": "m0", "kind": "scalar", "values": [float(i)]}]
        )
        make_run(parent=child, display_name=f"g{i}")
        write(run, f"outputs/f{i}.txt", b"x\n")
        services.run_set_status(run=child, status=RunStatus.COMPLETED)


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


# Session, user, the run, the membership, the workspace switcher (base.html), the tab counts,
# then what each tab reads: a fixed number whatever the run holds (the child-run tree reads one
# query per level, so both runs below have the same depth).
QUERIES = {
    "": 10,  # + the run's inputs (MLflow datasets and models)
    "?tab=metrics": 9,
    "?tab=children": 13,  # + the children's tag keys and property keys (the column picker)
    "?tab=outputs&file=outputs/f0.txt": 10,
    "?tab=events": 7,
    "?fragment=live": 7,
}


@pytest.mark.parametrize("suffix", QUERIES)
def test_the_query_count_does_not_grow_with_tags_metrics_children_or_files(
    browser, make_run, suffix
):
    small = make_run(display_name="small")
    large = make_run(display_name="large")
    _populate(small, make_run, 2)
    _populate(large, make_run, 10)
    client = browser("reader")
    client.get(page_url(small, suffix))  # warm the session
    counts = (_queries(client, page_url(small, suffix)), _queries(client, page_url(large, suffix)))
    assert counts == (QUERIES[suffix], QUERIES[suffix])
