"""The run list at a few thousand runs, checked by brute force: every filter, sort, OR search and
cursor of the REST list and every page of the studio's list give exactly the runs (in exactly
the order) a plain Python pass over the runs says they must, and a total past LIST_TOTAL_MAX is
shown as an estimate or a bound, never as an exact number. Big enough that the pager's total is
past LIST_TOTAL_MAX and the pages are cut by walking the sort's index (runs/selectors/
run_pages.py), not from the sorted set. SQLite and PostgreSQL (DATABASE_URL)."""

import json
import math
import random
from dataclasses import dataclass, field

import pytest
from django.test import Client

from runs import limits, services
from runs.models import Run, RunStatus
from runs.selectors import run_pages
from runs.services import run_management

LIST = "/api/v1/workspaces/lab/runs"
TEAMS = ["vision", "audio", "text", "Vision", "vision-2", ""]


@dataclass
class Known:
    """What the test knows of a run from having made it (never read back from the list)."""

    pk: int
    run_id: str
    experiment: str
    display_name: str
    status: str
    parent: int | None
    tags: dict = field(default_factory=dict)
    properties: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # name → {"last", "min", "max"} (None: missing)
    archived: bool = False


def _summary(values: list[float]) -> dict:
    real = [v for v in values if not math.isnan(v)]
    last = values[-1]
    return {
        "last": None if math.isnan(last) else float(last),
        "min": min(real) if real else None,
        "max": max(real) if real else None,
    }


@pytest.fixture(scope="module")
def population(django_db_setup, django_db_blocker):
    """~2,600 runs in "lab" and 300 in the outsider's "elsewhere", made once for the module
    through the services (and deleted at the end: the data outlives each test's transaction)."""
    from django.contrib.auth import get_user_model

    from runs.models import Role
    from runs.services import RunSpec

    with django_db_blocker.unblock():
        users = get_user_model().objects
        owner = users.create_user("bf-owner", password="x")
        reader = users.create_user("bf-reader", password="x")
        stranger = users.create_user("bf-stranger", password="x")
        lab = services.workspace_create(name="lab", owner=owner)
        services.membership_set(workspace=lab, user=reader, role=Role.READER)
        elsewhere = services.workspace_create(name="elsewhere", owner=stranger)
        _, token = services.token_create(user=reader, name="tests")

        rng = random.Random(7)
        known: list[Known] = []
        for ws, n, who in ((lab, 2_600, owner), (elsewhere, 300, stranger)):
            experiments = [
                services.experiment_get_or_create(workspace=ws, name=name)[0]
                for name in ("train", "eval", "sweep")
            ]
            made: list[Known] = []
            for i in range(n):
                tags = {}
                if rng.random() < 0.8:
                    tags["team"] = rng.choice(TEAMS)
                if rng.random() < 0.5:
                    tags["rank"] = f"r{rng.randint(0, 40):02d}"
                properties = {"seed": str(rng.randint(0, 9))} if rng.random() < 0.4 else {}
                parent = rng.choice(made) if made and rng.random() < 0.1 else None
                exp = rng.choice(experiments)
                run = services.run_create(
                    experiment=exp,
                    spec=RunSpec(
                        display_name=rng.choice(["", f"sweep-{i}", f"baseline {i}", "x"]),
                        tags=tags,
                        properties=properties,
                    ),
                    submitter=who,
                    parent=Run.objects.get(pk=parent.pk) if parent else None,
                )
                status = rng.choice(
                    [RunStatus.RUNNING] * 3 + [RunStatus.COMPLETED, RunStatus.FAILED]
                )
                if status != RunStatus.RUNNING:
                    services.run_set_status(run=run, status=status)
                k = Known(run.pk, run.run_id, exp.name, run.display_name, status,
                          parent.pk if parent else None, tags, properties)  # fmt: skip
                metrics = []
                for name in ("loss", "acc"):
                    if rng.random() < 0.75:
                        values = [
                            rng.choice([math.nan, math.inf, -math.inf])
                            if rng.random() < 0.05
                            else round(rng.random(), rng.choice([1, 2, 6]))
                            for _ in range(rng.randint(1, 5))
                        ]
                        metrics.append({"name": name, "values": values})
                        k.metrics[name] = _summary(values)
                if metrics:
                    services.run_log_batch(run=run, metrics=metrics)
                made.append(k)
            if ws is lab:
                known = made
        # Archive one run in twenty of "lab" (through the run list's action): its descendants
        # go with it.
        from runs.models import Membership

        chosen = {k.pk for k in rng.sample(known, len(known) // 20)}
        run_management.run_bulk_apply(
            membership=Membership.objects.get(workspace=lab, user=owner),
            action="archive",
            run_ids=[k.run_id for k in known if k.pk in chosen],
        )
        by_pk = {k.pk: k for k in known}
        for k in known:  # parents come before their children
            k.archived = k.pk in chosen or (k.parent is not None and by_pk[k.parent].archived)
    yield {"known": known, "token": token, "reader": reader}
    with django_db_blocker.unblock():
        for ws in (lab, elsewhere):
            Run.objects.filter(workspace=ws).delete()
            ws.delete()
        users.filter(username__startswith="bf-").delete()


# --- the brute force ---------------------------------------------------------------------------


def metric(k: Known, name: str, agg: str):
    return k.metrics.get(name, {}).get(agg)


# Each search: the list's parameters, and the same filter written in Python.
SEARCHES = [
    ({}, lambda k: True),
    ({"top_level": "1"}, lambda k: k.parent is None),
    ({"q": "tags.team = 'vision'"}, lambda k: k.tags.get("team") == "vision"),
    (
        {"q": "tags.team = 'vision' OR tags.team = 'audio'"},
        lambda k: k.tags.get("team") in ("vision", "audio"),
    ),
    ({"tag": "team=text"}, lambda k: k.tags.get("team") == "text"),
    ({"tag": ["team", "rank"]}, lambda k: "team" in k.tags and "rank" in k.tags),
    ({"q": "metrics.loss.max > 0.5"}, lambda k: (metric(k, "loss", "max") or -1) > 0.5),
    (
        {"q": "metrics.loss.min < 0.2 OR tags.rank = 'r07'"},
        lambda k: (
            (metric(k, "loss", "min") is not None and metric(k, "loss", "min") < 0.2)
            or k.tags.get("rank") == "r07"
        ),
    ),
    (
        {"q": "status IN ('Failed', 'Completed')", "experiment": "eval"},
        lambda k: k.status in ("Failed", "Completed") and k.experiment == "eval",
    ),
    ({"status": ["Failed", "Running"]}, lambda k: k.status in ("Failed", "Running")),
    ({"q": "NOT tags.team = 'vision'"}, lambda k: k.tags.get("team") != "vision"),
    ({"property": "seed=3"}, lambda k: k.properties.get("seed") == "3"),
    ({"q": "sweep"}, lambda k: "sweep" in k.display_name.lower() or k.experiment == "sweep"),
    ({"archived": "1", "q": "tags.team = 'vision'"}, lambda k: k.tags.get("team") == "vision"),
    (
        {"archived": "all", "q": "metrics.acc.last >= 0.5"},
        lambda k: (metric(k, "acc", "last") or -1) >= 0.5,
    ),
]


def archived_as_asked(params: dict, k: Known) -> bool:
    """Archived runs are left out unless asked for: `archived=1` only them, `all` both."""
    wanted = params.get("archived", "0")
    return wanted == "all" or k.archived == (wanted == "1")


SORTS = [
    "",
    "created",
    "-created",
    "metrics.loss.max",
    "-metrics.loss.max",
    "metrics.acc.last",
    "-metrics.loss.min",
    "tags.team",
    "-tags.rank",
    "properties.seed",
    "status",
    "-display_name",
]


def sort_value(k: Known, sort: str):
    key = sort.lstrip("-")
    if key in ("", "created"):
        return k.pk  # runs made one after another: created follows the id (ties by id anyway)
    kind, _, rest = key.partition(".")
    if kind == "metrics":
        name, agg = rest.rsplit(".", 1)
        return metric(k, name, agg)
    if kind == "tags":
        return k.tags.get(rest)
    if kind == "properties":
        return k.properties.get(rest)
    return {"status": k.status, "display_name": k.display_name}[key]


def expected(known: list[Known], matches, sort: str, params: dict | None = None) -> list[str]:
    """Matching runs sorted: by the value (missing values last either way), ties by id; no
    sort: the newest (highest id) first."""
    params = params or {}
    rows = [k for k in known if matches(k) and archived_as_asked(params, k)]
    descending = sort.startswith("-") or sort == ""
    present = [k for k in rows if sort_value(k, sort) is not None]
    missing = [k for k in rows if sort_value(k, sort) is None]
    present.sort(key=lambda k: (sort_value(k, sort), k.pk), reverse=descending)
    missing.sort(key=lambda k: k.pk, reverse=descending)
    return [k.run_id for k in present + missing]


def _api_pages(client, params: dict, limit: int) -> tuple[list[str], list[dict]]:
    ids, pages, cursor = [], [], None
    while True:
        query = {**params, "limit": limit}
        if cursor:
            query["cursor"] = cursor
        response = client.get(LIST, query)
        assert response.status_code == 200, (params, response.content)
        page = json.loads(response.content)
        pages.append(page)
        ids += [r["run_id"] for r in page["results"]]
        cursor = page["next_cursor"]
        if not cursor:
            return ids, pages
        assert len(pages) < 200


def check_total(page: dict, matching: int) -> None:
    """Exact and labelled exact up to LIST_TOTAL_MAX; past it, labelled an estimate."""
    if matching <= limits.LIST_TOTAL_MAX:
        assert (page["count"], page["count_relation"], page["count_is_estimate"]) == (
            matching,
            "eq",
            False,
        )
    else:
        assert page["count_is_estimate"] is True
        assert page["count_relation"] in ("about", "gte")
        if page["count_relation"] == "gte":
            assert page["count"] == limits.LIST_TOTAL_MAX + 1 <= matching


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("search", range(len(SEARCHES)))
def test_every_api_search_sort_and_cursor_gives_exactly_the_brute_force_runs(population, search):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {population['token']}")
    params, matches = SEARCHES[search]
    rng = random.Random(search)
    known = population["known"]
    for sort in rng.sample(SORTS, 4) if search else SORTS:
        want = expected(known, matches, sort, params)
        query = {**params, **({"sort": sort} if sort else {})}
        got, pages = _api_pages(client, query, rng.choice([97, 250, 1_000]))
        assert got == want, (query, len(got), len(want))
        check_total(pages[0], len(want))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("search", "sort"),
    [(0, ""), (2, "-metrics.loss.max"), (3, "tags.team"), (7, "-created"), (13, "")],
)
def test_every_studio_page_lists_the_brute_force_runs_and_labels_an_estimate(
    population, search, sort
):
    """The studio's list shows top-level runs, 100 a page, with the pager's words."""
    client = Client()
    client.force_login(population["reader"])
    params, matches = SEARCHES[search]
    want = expected(
        population["known"], lambda k: k.parent is None and matches(k), sort or "-created", params
    )
    got, page_number = [], 1
    while True:
        response = client.get("/w/lab/runs/", {**params, "sort": sort, "page": page_number})
        assert response.status_code == 200
        rows = [row[0].run_id for row in response.context["rows"]]
        got += rows
        html = response.content.decode()
        words = response.context["total_words"]
        if len(want) <= limits.LIST_TOTAL_MAX:
            assert words == f"{len(want):,} runs"
        else:
            assert words.startswith(("about ", "more than ")), words
            assert "title=" in html.split('id="pager-total"')[1].split("</span>")[0]
        if len(rows) < 100 or page_number * 100 >= len(want):
            break
        page_number += 1
    assert got == want, (params, sort)
    assert run_pages.count_words(run_pages.RunCount(len(want), "eq")) == f"{len(want):,} runs"


def expected_tree(known: list[Known], matches, sort: str, params: dict) -> list[tuple[str, int]]:
    """The list with child runs: matching runs whose parent does not match are the roots, in
    the list's order; each is followed by its matching descendants, siblings in that order."""
    rows = [k for k in known if matches(k) and archived_as_asked(params, k)]
    shown = {k.pk for k in rows}
    order = {run_id: i for i, run_id in enumerate(expected(known, matches, sort, params))}
    children: dict[int, list[Known]] = {}
    for k in rows:
        if k.parent in shown:
            children.setdefault(k.parent, []).append(k)
    out: list[tuple[str, int]] = []

    def visit(k: Known, depth: int) -> None:
        out.append((k.run_id, depth))
        for child in sorted(children.get(k.pk, []), key=lambda c: order[c.run_id]):
            visit(child, depth + 1)

    for k in sorted((k for k in rows if k.parent not in shown), key=lambda k: order[k.run_id]):
        visit(k, 0)
    return out


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("search", "sort"),
    [(0, "-created"), (3, "-metrics.loss.max"), (9, "tags.rank"), (14, "-created")],
)
def test_the_studio_list_with_child_runs_is_the_brute_force_tree(population, search, sort):
    client = Client()
    client.force_login(population["reader"])
    params, matches = SEARCHES[search]
    want = expected_tree(population["known"], matches, sort, params)
    roots = sum(depth == 0 for _, depth in want)
    got, page_number = [], 1
    while True:
        query = {**params, "sort": sort, "top_level": "0", "page": page_number}
        response = client.get("/w/lab/runs/", query)
        assert response.status_code == 200
        page = response.context["page"]
        got += [(row[0].run_id, page.depths[row[0].pk]) for row in response.context["rows"]]
        words = response.context["total_words"]
        if roots <= limits.LIST_TOTAL_MAX:  # the pager counts the tree's roots
            assert words == f"{roots:,} top-level runs"
        else:
            assert words.startswith(("about ", "more than ")), words
        if not page.has_next:
            break
        page_number += 1
    assert got == want, (params, sort)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("search", "sort"),
    [
        (0, "-metrics.acc.last"),
        (7, "properties.seed"),
        (10, "-tags.team"),
        (14, "metrics.acc.last"),
    ],
)
def test_the_csv_export_and_the_body_search_hold_exactly_the_brute_force_runs(
    population, search, sort
):
    from rest_framework.test import APIClient

    params, matches = SEARCHES[search]
    known = population["known"]
    browser = Client()
    browser.force_login(population["reader"])
    response = browser.get("/w/lab/runs.csv", {**params, "sort": sort})
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0].split(",")[0] == "run_id"
    top_level = expected(known, lambda k: k.parent is None and matches(k), sort, params)
    assert [line.split(",")[0] for line in lines[1:]] == top_level

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {population['token']}")
    got, cursor = [], None
    while True:
        body = {**params, "sort": sort, "limit": 333, **({"cursor": cursor} if cursor else {})}
        page = api.post("/api/v1/workspaces/lab/runs/search", body, format="json").json()
        got += [r["run_id"] for r in page["results"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert got == expected(known, matches, sort, params)
