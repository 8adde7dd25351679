"""runs/storage/search.py: finding text in a run file by streaming it from an offset."""

import io

import pytest

from runs import services
from runs.errors import InvalidInput
from runs.storage import CHUNK
from runs.storage.search import run_file_find

pytestmark = pytest.mark.django_db


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
