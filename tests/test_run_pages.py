"""Run lists at scale (runs/selectors/run_pages.py): a page found by walking the sort's index is
the page the whole sorted set gives, through every page and both doors; the total is exact up
to LIST_TOTAL_MAX and says so past it; cursors are positions, not trust.

The walk only runs when the match set is big, so these tests shrink the bounds (LIST_TOTAL_MAX,
the window sizes, WALK_MAX) instead of creating a million runs; bench/studio.py measures the
real sizes."""

import re

import pytest
from django.db import connection
from django.http import QueryDict
from django.test import Client

from runs import query, selectors, services
from runs.models import Run
from runs.selectors import run_pages
from runs.selectors.run_pages import RunCount, RunSet, count_words, run_order

LIST = "/api/v1/workspaces/lab/runs"


def log(run, **metrics):
    services.run_log_batch(
        run=run,
        metrics=[{"name": n, "kind": "scalar", "values": v} for n, v in metrics.items()],
    )


@pytest.fixture
def runs(make_run):
    """40 runs: team vision/nlp alternating, model by i % 3, a `loss` whose max repeats every 7
    runs (ties), none on every 5th run (missing values), a `rank` tag on every 3rd."""
    made = []
    for i in range(40):
        tags = {"team": "vision" if i % 2 else "nlp", "model": ["vit", "gpt", "mlp"][i % 3]}
        if i % 3 == 0:
            tags["rank"] = f"r{i % 4}"
        run = make_run(display_name=f"run {i}", tags=tags)
        if i % 5:
            log(run, loss=[(i % 7) * 0.5, 0.01])
        made.append(run)
    return made


@pytest.fixture
def small_bounds(monkeypatch):
    """Totals past 4 runs are not counted; windows of 5, 20, then 8 candidates."""
    monkeypatch.setattr("runs.limits.LIST_TOTAL_MAX", 4)
    monkeypatch.setattr(run_pages, "WALK_FIRST", 5)
    monkeypatch.setattr(run_pages, "WALK_WINDOW_MAX", 8)


def expected(runs, *, keep, value, descending=True) -> list[str]:
    """The list's rule, in Python: by value (missing last either way), ties by id."""
    kept = [r for r in runs if keep(r)]
    valued = [r for r in kept if value(r) is not None]
    missing = [r for r in kept if value(r) is None]
    sign = -1 if descending else 1
    valued.sort(key=lambda r: (value(r), r.pk), reverse=descending)
    missing.sort(key=lambda r: sign * r.pk)
    return [r.run_id for r in valued + missing]


def loss_max(run):
    i = int(run.display_name.split()[1])
    return (i % 7) * 0.5 if i % 5 else None


def index(run):
    return int(run.display_name.split()[1])


def page_through(client, params, limit=3) -> tuple[list[str], list[dict]]:
    seen, answers, cursor = [], [], None
    while True:
        body = client.get(LIST, params | {"limit": limit} | ({"cursor": cursor} if cursor else {}))
        assert body.status_code == 200, body.content
        answer = body.json()
        answers.append(answer)
        seen += [r["run_id"] for r in answer["results"]]
        cursor = answer["next_cursor"]
        if cursor is None:
            return seen, answers


@pytest.mark.parametrize("walk_max", [50_000, 6])
def test_paging_by_a_metric_max_with_a_tag_filter_lists_every_run_once_in_order(
    cast, runs, small_bounds, monkeypatch, walk_max
):
    # walk_max 6: the walk gives up at once and the page is cut from the sorted set instead.
    monkeypatch.setattr(run_pages, "WALK_MAX", walk_max)
    seen, answers = page_through(
        cast.reader.client, {"tag": "team=vision", "sort": "-metrics.loss.max"}
    )

    assert seen == expected(runs, keep=lambda r: index(r) % 2, value=loss_max)
    assert {a["count_relation"] for a in answers} <= {"gte", "about"}
    assert all(a["count_is_estimate"] for a in answers)


def test_paging_ascending_by_a_tag_with_an_or_search_lists_every_run_once_in_order(
    cast, runs, small_bounds
):
    rank = {r.pk: (f"r{index(r) % 4}" if index(r) % 3 == 0 else None) for r in runs}
    seen, _ = page_through(
        cast.reader.client,
        {"q": "tags.model = 'vit' OR tags.model = 'gpt'", "sort": "tags.rank"},
        limit=4,
    )

    assert seen == expected(
        runs, keep=lambda r: index(r) % 3 != 2, value=lambda r: rank[r.pk], descending=False
    )


def test_the_default_api_order_stays_newest_first_with_a_bare_id_cursor(cast, runs, small_bounds):
    seen, answers = page_through(cast.reader.client, {"tag": "model=vit"}, limit=5)

    assert seen == [r.run_id for r in reversed(runs) if index(r) % 3 == 0]
    cursors = [a["next_cursor"] for a in answers if a["next_cursor"]]
    assert cursors and all(re.fullmatch(r"\d+", c) for c in cursors)


def test_a_walked_page_at_an_offset_is_the_sorted_sets_page(cast, runs, monkeypatch):
    monkeypatch.setattr(run_pages, "WALK_FIRST", 5)
    filterset = selectors.run_filterset(workspace=cast.workspace, params=QueryDict("tag=team=nlp"))
    assert filterset.is_valid()
    matching = RunSet(filterset.qs, filterset.probe_qs(), cast.workspace.pk)
    order = run_order("-metrics.loss.max")

    # count=None walks; an exact count cuts the page from the sorted set.
    for offset in (0, 4, 12, 18):
        walked = run_pages.run_page_ids(runs=matching, order=order, offset=offset, limit=4)
        sorted_set = run_pages.run_page_ids(
            runs=matching, order=order, offset=offset, limit=4, count=RunCount(20, "eq")
        )
        assert walked.ids == sorted_set.ids
        assert walked.has_next == sorted_set.has_next


def analyze() -> None:
    """PostgreSQL's estimates come from its statistics; fresh test tables have none yet."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE runs_run, runs_runtag, runs_metricseries")


def test_the_total_is_exact_up_to_the_bound_and_says_when_it_is_not(cast, runs, monkeypatch):
    analyze()
    monkeypatch.setattr("runs.limits.LIST_TOTAL_MAX", 30)
    few = cast.reader.client.get(LIST, {"tag": "team=vision"}).json()
    monkeypatch.setattr("runs.limits.LIST_TOTAL_MAX", 10)
    many = cast.reader.client.get(LIST).json()

    assert (few["count"], few["count_is_estimate"], few["count_relation"]) == (20, False, "eq")
    assert many["count_is_estimate"] is True
    # "at least" on both databases: PostgreSQL's planner estimate spans every workspace
    # (tests/security/test_scale_out_attacks.py).
    assert (many["count"], many["count_relation"]) == (11, "gte")


def test_an_estimate_below_the_bound_is_never_shown(cast, runs, monkeypatch):
    # PostgreSQL estimates `team = vision` (20 runs) at 9: past the bound that would be
    # smaller than what was counted, so the answer stays "at least 11".
    analyze()
    monkeypatch.setattr("runs.limits.LIST_TOTAL_MAX", 10)
    answer = cast.reader.client.get(LIST, {"tag": "team=vision"}).json()

    assert answer["count"] >= 11 and answer["count_is_estimate"]


def test_the_studio_pager_says_about_or_more_than_past_the_bound(cast, runs, monkeypatch):
    analyze()
    monkeypatch.setattr("runs.limits.LIST_TOTAL_MAX", 10)
    client = Client()
    client.force_login(cast.reader.user)

    html = client.get("/w/lab/runs/?sort=-metrics.loss.max").content.decode()
    pager = re.sub(r"<[^>]+>", "", re.search(r'id="pager-total">(.*?)</span>\s*<', html, re.S)[1])

    assert " ".join(pager.split()) == "Page 1 · more than 10 runs"  # on both databases
    assert "Runs 1–40 of more than 10" in html


def test_the_tree_list_walks_its_roots_and_keeps_children_under_their_parents(
    cast, make_run, small_bounds
):
    parents = [make_run(display_name=f"p{i}", tags={"team": "a"}) for i in range(8)]
    for i, parent in enumerate(parents):
        log(parent, loss=[float(i)])
        make_run(display_name=f"c{i}", parent=parent, tags={"team": "a"})
    client = Client()
    client.force_login(cast.reader.user)

    response = client.get("/w/lab/runs/?tag=team%3Da&sort=-metrics.loss.max&top_level=0")

    shown = [row[0].display_name for row in response.context["rows"]]
    assert shown == [x for i in reversed(range(8)) for x in (f"p{i}", f"c{i}")]


@pytest.mark.parametrize(
    "text",
    [
        "tags.team = 'vision'",
        "tags.model = 'vit' OR tags.model = 'gpt'",
        "NOT tags.rank = 'r0'",
        "metrics.loss.max > 1 AND tags.team != 'nlp'",
        "tags.rank",
        "run",
        "properties.p = '1' OR metrics.loss < 0.5",
    ],
)
def test_the_probing_form_of_a_search_matches_the_same_runs(cast, runs, text):
    everything = Run.objects.filter(workspace=cast.workspace)
    q = query.parse(text)

    members = set(everything.filter(q).values_list("pk", flat=True))
    probed = set(everything.filter(query.probing(q)).values_list("pk", flat=True))

    assert probed == members


def test_a_bad_sort_key_is_a_400_naming_it(cast, runs):
    response = cast.reader.client.get(LIST, {"sort": "metrics."})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "sort"


def test_the_post_search_takes_sort_too(cast, runs, small_bounds):
    body = {"tag": ["team=vision"], "sort": "-metrics.loss.max", "limit": 5}

    answer = cast.reader.client.post(f"{LIST}/search", body, format="json").json()

    keep = expected(runs, keep=lambda r: index(r) % 2, value=loss_max)
    assert [r["run_id"] for r in answer["results"]] == keep[:5]


@pytest.mark.parametrize(
    "count,words",
    [
        (RunCount(1, "eq"), "1 run"),
        (RunCount(1234, "eq"), "1,234 runs"),
        (RunCount(1001, "gte"), "more than 1,000 runs"),
        (RunCount(212_345, "about"), "about 210,000 runs"),
        (RunCount(1_046_000, "about"), "about 1,000,000 runs"),
    ],
)
def test_the_pager_words_never_pass_an_estimate_off_as_exact(count, words):
    assert count_words(count) == words
