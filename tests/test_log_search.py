"""runs/storage/search.py: finding text in a run file by streaming it from an offset."""

import io

import pytest

from runs import services
from runs.errors import InvalidInput
from runs.storage import CHUNK
from runs.storage.search import run_file_find

# On the local folder and on a real SeaweedFS bucket (where the file is read by ranged GETs).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("files_backend")]


@pytest.fixture
def log(make_run):
    run = make_run("x")
    # The needle straddles the first chunk boundary; another sits on the last line.
    head = b"a" * (CHUNK - 3) + b"\n"
    body = b"xxNEEDLExx\n" + b"b" * 100 + b"\n" + b"tail needle\n"
    services.run_file_write(run=run, path="logs/x.log", stream=io.BytesIO(head[:-4] + b"\n" + body))
    return run, len(head[:-4]) + 1


def test_a_match_across_chunks_gives_its_line_start(log):
    run, second_line = log
    found = run_file_find(run=run, path="logs/x.log", text="needle")
    assert found.line_start == second_line


def test_searching_on_from_inside_a_line_starts_at_the_next_line(log):
    run, second_line = log
    found = run_file_find(run=run, path="logs/x.log", text="needle", start=second_line + 1)
    tail = run_file_find(run=run, path="logs/x.log", text="TAIL")
    assert found.line_start == tail.line_start > second_line
    done = run_file_find(run=run, path="logs/x.log", text="needle", start=found.line_start + 1)
    assert done.line_start is None and done.exhausted


def test_the_scan_stops_at_its_budget_and_says_where(log):
    run, _ = log
    found = run_file_find(run=run, path="logs/x.log", text="needle", max_bytes=1000)
    assert found.line_start is None and not found.exhausted
    assert found.scanned_to <= 1000


def test_an_empty_or_huge_search_is_refused_naming_the_field(log):
    run, _ = log
    for text in ("", "x" * 201):
        with pytest.raises(InvalidInput) as exc:
            run_file_find(run=run, path="logs/x.log", text=text)
        assert exc.value.field == "find"


def write_log(run, data: bytes, path: str = "logs/u.log") -> str:
    services.run_file_write(run=run, path=path, stream=io.BytesIO(data))
    return path


def test_find_ignores_case_beyond_ascii_and_gives_the_right_byte_offset(make_run):
    run = make_run("x")
    # Multi-byte characters before the match shift byte offsets away from character offsets.
    first = "über ÅÄÖ start\n".encode()
    data = first + "Ära 1 époch done\n".encode() + "größe STRASSE\n".encode()
    path = write_log(run, data)
    found = run_file_find(run=run, path=path, text="ÉPOCH")
    assert found.line_start == len(first)
    assert data[found.line_start :].decode().startswith("Ära 1 époch")
    assert run_file_find(run=run, path=path, text="äRA").line_start == len(first)
    assert run_file_find(run=run, path=path, text="ÜBER").line_start == 0


def test_german_sharp_s_matches_ss_both_ways_as_casefold_says(make_run):
    run = make_run("x")
    head = b"nothing here\n"
    path = write_log(run, head + "Straße 1\n".encode() + b"STRASSE 2\n")
    assert run_file_find(run=run, path=path, text="STRASSE").line_start == len(head)
    second = len(head) + len("Straße 1\n".encode())
    assert run_file_find(run=run, path=path, text="straße", start=len(head) + 1).line_start == (
        second
    )


def test_a_non_ascii_match_across_a_chunk_boundary_is_found_at_its_line(make_run):
    run = make_run("x")
    head = b"a" * 100 + b"\n"
    # "ÉPOCH" straddles the first chunk boundary, with its É split between the two chunks.
    filler = b"b" * (CHUNK - len(head) - 1)
    data = head + filler + "Époch 7\n".encode()
    path = write_log(run, data)
    assert data[CHUNK - 1 : CHUNK + 1] == "É".encode()
    found = run_file_find(run=run, path=path, text="épocH 7")
    assert found.line_start == len(head)


def test_invalid_utf8_bytes_neither_match_nor_shift_the_line_found(make_run):
    run = make_run("x")
    head = b"bad \xff\xfe bytes \xe2\n"
    path = write_log(run, head + "ok ÉPOCH\n".encode())
    assert run_file_find(run=run, path=path, text="époch").line_start == len(head)


def test_the_viewer_marks_non_ascii_matches_ignoring_case(client, cast, make_run):
    run = make_run("x")
    write_log(run, "Straße und ÉPOCH 3\n".encode(), path="logs/m.log")
    client.force_login(cast.reader.user)
    url = f"/w/lab/runs/{run.run_id}/"
    html = client.get(url, {"tab": "outputs", "file": "logs/m.log", "find": "époch"}).content
    assert "<mark>ÉPOCH</mark>" in html.decode()
    html = client.get(url, {"tab": "outputs", "file": "logs/m.log", "find": "STRASSE"}).content
    assert "<mark>Straße</mark>" in html.decode()
