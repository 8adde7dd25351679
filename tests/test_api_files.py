"""Run files through /api/v1/runs/{run_id}/files: upload, append, list, read whole or in part."""

import pytest
from django.core.files.storage import default_storage

from runs.models import RunFile
from runs.storage import storage_name

# Every test here runs on the local files folder and again on a real SeaweedFS bucket.
pytestmark = pytest.mark.usefixtures("files_backend")


@pytest.fixture
def run(make_run):
    return make_run()


def error(response) -> dict:
    return response.json()["error"]


def files_url(run, path: str = "") -> str:
    return f"/api/v1/runs/{run.run_id}/files" + (f"/{path}" if path else "")


def put(client, run, path, data: bytes):
    return client.put(files_url(run, path), data=data, content_type="application/octet-stream")


def append(client, run, path, data: bytes):
    return client.post(
        files_url(run, path) + "?append=1", data=data, content_type="application/octet-stream"
    )


def test_an_uploaded_file_downloads_whole_as_a_stream(cast, run):
    content = bytes(range(256)) * 5_000  # binary, and larger than one storage chunk would be

    response = put(cast.contributor.client, run, "outputs/model.bin", content)

    assert response.status_code == 201
    assert response.json() == {"path": "outputs/model.bin", "size": len(content)}
    download = cast.reader.client.get(files_url(run, "outputs/model.bin"))
    assert download.status_code == 200
    assert download.streaming
    assert b"".join(download.streaming_content) == content
    assert download["X-File-Size"] == str(len(content))
    assert download["Content-Type"] == "application/octet-stream"


def test_a_put_replaces_the_file(cast, run):
    put(cast.contributor.client, run, "notes.txt", b"a long first version")

    response = put(cast.contributor.client, run, "notes.txt", b"short")

    assert response.json()["size"] == 5
    assert (
        b"".join(cast.reader.client.get(files_url(run, "notes.txt")).streaming_content) == b"short"
    )
    assert RunFile.objects.get(run=run, path="notes.txt").size == 5


def test_a_range_read_returns_the_slice_and_where_to_go_on(cast, run):
    put(cast.contributor.client, run, "log.txt", b"0123456789")

    response = cast.reader.client.get(files_url(run, "log.txt"), {"offset": 3, "length": 4})

    assert response.status_code == 200
    assert response.content == b"3456"
    assert response["X-File-Size"] == "10"
    assert response["X-Next-Offset"] == "7"


def test_a_read_past_the_end_returns_nothing_and_the_same_offset(cast, run):
    put(cast.contributor.client, run, "log.txt", b"0123456789")

    tail = cast.reader.client.get(files_url(run, "log.txt"), {"offset": 8})
    beyond = cast.reader.client.get(files_url(run, "log.txt"), {"offset": 10, "length": 5})

    assert (tail.content, tail["X-Next-Offset"]) == (b"89", "10")
    assert (beyond.content, beyond["X-Next-Offset"], beyond["X-File-Size"]) == (b"", "10", "10")


@pytest.mark.parametrize(
    "params", [{"offset": -1}, {"offset": "x"}, {"length": 8 * 1024 * 1024 + 1}]
)
def test_a_bad_range_is_a_400(cast, run, params):
    put(cast.contributor.client, run, "log.txt", b"0123456789")

    response = cast.reader.client.get(files_url(run, "log.txt"), params)

    assert response.status_code == 400
    assert error(response)["field"] in params


def test_append_creates_the_file_then_appends_to_it(cast, run):
    first = append(cast.contributor.client, run, "logs/stdout.txt", b"line 1\n")
    second = append(cast.contributor.client, run, "logs/stdout.txt", b"line 2\n")

    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json() == {"path": "logs/stdout.txt", "size": 7}
    assert second.json() == {"path": "logs/stdout.txt", "size": 14}
    download = cast.reader.client.get(files_url(run, "logs/stdout.txt"))
    assert b"".join(download.streaming_content) == b"line 1\nline 2\n"
    assert RunFile.objects.filter(run=run, path="logs/stdout.txt").count() == 1


def test_tailing_a_log_follows_what_was_appended(cast, run):
    append(cast.contributor.client, run, "log", b"abc")
    read = cast.reader.client.get(files_url(run, "log"), {"offset": 0})
    append(cast.contributor.client, run, "log", b"def")

    more = cast.reader.client.get(files_url(run, "log"), {"offset": read["X-Next-Offset"]})

    assert (read.content, more.content) == (b"abc", b"def")
    assert more["X-Next-Offset"] == "6"


def test_a_post_without_append_is_a_400(cast, run):
    response = cast.contributor.client.post(
        files_url(run, "log"), data=b"x", content_type="application/octet-stream"
    )

    assert response.status_code == 400
    assert error(response)["field"] == "append"
    assert not RunFile.objects.filter(run=run).exists()


def test_the_file_list_is_sorted_and_filters_by_prefix(cast, run):
    for path in ("outputs/b.txt", "logs/x.log", "outputs/a.txt"):
        put(cast.contributor.client, run, path, b"12")

    everything = cast.reader.client.get(files_url(run)).json()["files"]
    outputs = cast.reader.client.get(files_url(run), {"prefix": "outputs/"}).json()["files"]

    assert [f["path"] for f in everything] == ["logs/x.log", "outputs/a.txt", "outputs/b.txt"]
    assert [f["path"] for f in outputs] == ["outputs/a.txt", "outputs/b.txt"]
    assert {f["size"] for f in everything} == {2}
    assert all(f["updated_at"] for f in everything)


def test_each_run_has_its_own_tree(cast, run, make_run):
    other = make_run()
    put(cast.contributor.client, run, "same.txt", b"mine")
    put(cast.contributor.client, other, "same.txt", b"theirs")

    download = cast.reader.client.get(files_url(run, "same.txt"))

    assert b"".join(download.streaming_content) == b"mine"
    assert default_storage.exists(storage_name(other, "same.txt"))


def test_a_reader_can_read_files_but_not_write_them(cast, run):
    put(cast.contributor.client, run, "a.txt", b"original")

    replaced = put(cast.reader.client, run, "a.txt", b"mine")
    appended = append(cast.reader.client, run, "a.txt", b"mine")
    created = put(cast.reader.client, run, "b.txt", b"mine")

    assert (replaced.status_code, appended.status_code, created.status_code) == (403, 403, 403)
    assert (
        b"".join(cast.reader.client.get(files_url(run, "a.txt")).streaming_content) == b"original"
    )
    assert list(RunFile.objects.filter(run=run).values_list("path", flat=True)) == ["a.txt"]
    assert not default_storage.exists(storage_name(run, "b.txt"))


def test_a_missing_file_is_a_404(cast, run):
    whole = cast.reader.client.get(files_url(run, "nope.txt"))
    part = cast.reader.client.get(files_url(run, "nope.txt"), {"offset": 0})

    assert (whole.status_code, part.status_code) == (404, 404)
    assert error(whole)["field"] == "path"


def test_a_file_of_an_unknown_run_is_a_404(cast):
    response = cast.reader.client.get("/api/v1/runs/nope/files/a.txt")

    assert response.status_code == 404
    assert error(response)["field"] == "run_id"


@pytest.mark.parametrize(
    "url_path",
    [
        "a/../b",
        "../escape",
        "a/%2e%2e/%2e%2e/b",
        "%2e%2e/%2e%2e/etc/passwd",
        "/etc/passwd",  # files//etc/passwd: the path captured is absolute
        "a/./b",
        "a//b",
        "a%00b",
        "back%5Cslash",
    ],
)
def test_a_path_that_leaves_the_tree_or_holds_control_characters_is_a_400(cast, run, url_path):
    written = put(cast.contributor.client, run, url_path, b"x")
    appended = append(cast.contributor.client, run, url_path, b"x")
    read = cast.reader.client.get(files_url(run, url_path))

    for response in (written, appended, read):
        assert response.status_code == 400, response.content
        assert error(response)["field"] == "path"
    assert not RunFile.objects.exists()


def test_a_newline_in_a_path_does_not_even_route(cast, run):
    # Django's <path:> converter stops at a newline, so the router answers before the view.
    written = put(cast.contributor.client, run, "bad%0Aname", b"x")

    assert written.status_code == 404
    assert not RunFile.objects.exists()


def test_a_path_that_is_too_long_is_a_400(cast, run):
    response = put(cast.contributor.client, run, "a" * 1025, b"x")

    assert response.status_code == 400
    assert "1024" in error(response)["message"]
