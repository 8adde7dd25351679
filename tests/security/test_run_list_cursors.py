"""The REST run list's `sort` and `cursor` (runs/api/views/run_pages.py): a cursor is a position
the client hands back, so anything may come in its place — another sort's cursor, a forged one,
values of the wrong type, a lone surrogate, an id past 64 bits, a date past datetime's range.
Each is a 400 naming `cursor`, never a 5xx and never a page read from a position the server did
not give."""

import base64
import json

import pytest

from runs import services
from runs.selectors import run_pages

LIST = "/api/v1/workspaces/lab/runs"


@pytest.fixture
def runs(make_run):
    made = []
    for i in range(6):
        run = make_run(display_name=f"run {i}", tags={"rank": f"r{i}"})
        services.run_log_batch(
            run=run, metrics=[{"name": "loss", "kind": "scalar", "values": [i * 0.5]}]
        )
        made.append(run)
    return made


@pytest.fixture
def small_bounds(monkeypatch):
    monkeypatch.setattr("runs.limits.LIST_TOTAL_MAX", 2)
    monkeypatch.setattr(run_pages, "WALK_FIRST", 2)


def test_a_cursor_from_another_sort_is_a_400_naming_it(cast, runs, small_bounds):
    first = cast.reader.client.get(LIST, {"sort": "-metrics.loss.max", "limit": 2}).json()

    response = cast.reader.client.get(
        LIST, {"sort": "metrics.loss.max", "cursor": first["next_cursor"]}
    )

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "cursor"


def _forged(*parts) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "sort,cursor",
    [
        ("-metrics.loss.max", "not base64 at all!"),
        ("-metrics.loss.max", _forged("-metrics.loss.max", "text", 3)),
        ("-metrics.loss.max", _forged("-metrics.loss.max", 1.0, 2**70)),
        ("-metrics.loss.max", _forged("-metrics.loss.max", 1.0, True)),
        ("tags.rank", _forged("tags.rank", "\ud800", 3)),
        ("tags.rank", _forged("tags.rank", "a\x00b", 3)),
        ("created", _forged("created", "99999-01-01T00:00:00", 3)),
        ("created", _forged("created", "2024-01-01T00:00:00+99:00", 3)),
        ("duration", _forged("duration", [], 3)),
        ("", "12a"),
        ("", "9" * 30),
    ],
)
def test_a_forged_cursor_is_a_400_naming_it(cast, runs, sort, cursor):
    response = cast.reader.client.get(LIST, {"sort": sort, "cursor": cursor})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "cursor"


@pytest.mark.parametrize(
    "sort",
    ["x" * 100_000, "tags.\u0000", "-" * 50, "metrics.loss.max;DROP TABLE runs_run"],
)
def test_a_hostile_sort_is_a_400_naming_it_and_the_list_still_answers(cast, runs, sort):
    response = cast.reader.client.get(LIST, {"sort": sort})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "sort"
    assert len(cast.reader.client.get(LIST).json()["results"]) == len(runs)


def test_an_outsider_sorting_or_paging_another_workspaces_runs_gets_its_404(cast, runs):
    first = cast.reader.client.get(LIST, {"sort": "-metrics.loss.max", "limit": 2}).json()

    for params in (
        {"sort": "-metrics.loss.max"},
        {"cursor": first["next_cursor"], "sort": "-metrics.loss.max"},
    ):
        response = cast.outsider.client.get(LIST, params)
        assert response.status_code == 404
        assert "results" not in response.json()
