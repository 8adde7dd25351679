"""Attacks on where scalar points live (runs/points.py: blocks of 64 seqs on PostgreSQL, a row a
point on SQLite), from outside: random batches through the REST and MLflow doors, read back
point by point through every reader; batches refused mid-way; deletes; who may read."""

import json
import math
import random
import threading
import time

import pytest
from django.db import connection
from django.test import Client

from runs import limits, points, selectors, services
from runs.downsample import series_downsample
from runs.models import MetricSeries, PointBlock, Run, Workspace
from runs.services import RunSpec
from tests.test_summary import expected_blocks, reference, same, stored_blocks

pytestmark = pytest.mark.django_db

PG_ONLY = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="only PostgreSQL keeps points in blocks"
)
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


# --- a model of what was sent --------------------------------------------------------------


def sent_value(v) -> float:
    return NON_FINITE[v] if isinstance(v, str) else float(v)


def same_float(a, b) -> bool:
    """Equal as stored floats: NaN (NULL in the database, "NaN" in JSON) equals NaN, and -0.0
    is not 0.0."""
    a, b = (
        math.nan if x is None else NON_FINITE.get(x, x) if isinstance(x, str) else x for x in (a, b)
    )
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    # SQLite writes a whole REAL as an integer (its storage optimisation), and -0.0 reads back
    # as 0.0; PostgreSQL keeps the sign.
    signed = connection.vendor == "postgresql"
    return a == b and (not signed or math.copysign(1, a) == math.copysign(1, b))


class Model:
    """Per series: the points the server must hold, as (seq, step, value, time or a
    (lo, hi) window for the server's clock)."""

    def __init__(self):
        self.series: dict[str, list[tuple]] = {}

    def count(self, name: str) -> int:
        return len(self.series.get(name, []))

    def add(self, metric: dict, before: float, after: float) -> None:
        rows = self.series.setdefault(metric["name"], [])
        start = len(rows)
        n = len(metric["values"])
        steps = metric.get("steps") or [None] * n
        times = metric.get("times") or [None] * n
        for i in range(n):
            seq = start + i
            step = seq if steps[i] is None else steps[i]
            t = (before, after) if times[i] is None else float(times[i])
            rows.append((seq, step, sent_value(metric["values"][i]), t))


def _nan(value):
    return math.nan if value is None else value


def same_time(expected, got) -> bool:
    if isinstance(expected, tuple):
        return expected[0] - 1e-3 <= got <= expected[1] + 1e-3
    return got == expected


def check_rows(expected: list[tuple], got: list[tuple], where: str) -> None:
    """`got`: (seq, step, value, time) rows as a reader gave them."""
    assert len(got) == len(expected), (where, len(got), len(expected))
    for e, g in zip(expected, got, strict=True):
        assert g[0] == e[0] and g[1] == e[1], (where, e, g)
        assert same_float(e[2], g[2]), (where, e, g)
        assert same_time(e[3], g[3]), (where, e, g)


# --- random batches --------------------------------------------------------------------------

VALUE_POOL = [
    0,
    -0.0,
    5e-324,
    -5e-324,
    1e308,
    -1e308,
    2**53 + 1,
    -(2**63),
    2**63 - 1,
    7,
    "NaN",
    "Infinity",
    "-Infinity",
]


def random_values(rng, n, *, odd: float) -> list:
    return [rng.choice(VALUE_POOL) if rng.random() < odd else rng.gauss(0, 1e3) for _ in range(n)]


def random_metric(rng, name: str, count: int) -> dict:
    """A series' entry of a batch, its size often ending on, or one past, a block's edge."""
    edge = -count % points.BLOCK or points.BLOCK
    n = rng.choice(
        [1, 2, 63, 64, 65, 127, 128, 129, edge, edge + 1, edge - 1 or 1, rng.randint(1, 300)]
    )
    metric = {"name": name, "values": random_values(rng, n, odd=rng.choice([0, 0.1, 0.5]))}
    shape = rng.random()
    if shape < 0.4:  # steps that go back, negative, huge, some left to the default
        metric["steps"] = [
            None if rng.random() < 0.1 else rng.choice([count + i, -i, 2**62 - i, i % 7])
            for i in range(n)
        ]
    if rng.random() < 0.6:  # times: floats, ints, far past and future, some the server's
        metric["times"] = [
            None
            if rng.random() < 0.1
            else rng.choice([1.7e9 + count + i / 3, 1_700_000_000 + i, 0, -5.5, 9e15, 123])
            for i in range(n)
        ]
    return metric


def post_batch(client, run, metrics, **extra):
    return client.post(
        f"/api/v1/runs/{run.run_id}/metrics/batch", {"metrics": metrics, **extra}, format="json"
    )


def rest_history(client, run, name, *, after_seq, limit):
    response = client.get(
        f"/api/v1/runs/{run.run_id}/metrics/history",
        {"name": name, "after_seq": after_seq, "limit": limit},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    cols = body["points"]
    return list(zip(cols["seq"], cols["step"], cols["value"], cols["time"], strict=True)), body[
        "next_after_seq"
    ]


def mlflow(member, method: str, route: str, body: dict):
    url = f"/mlflow/lab/api/2.0/mlflow/{route}"
    headers = {"HTTP_AUTHORIZATION": f"Bearer {member.token}"}
    if method == "get":
        return Client().get(url, body, **headers)
    return Client().post(url, json.dumps(body), content_type="application/json", **headers)


def mlflow_history(member, run, name, *, max_results):
    rows, token = [], None
    while True:
        params = {"run_id": run.run_id, "metric_key": name, "max_results": max_results}
        if token:
            params["page_token"] = token
        response = mlflow(member, "get", "metrics/get-history", params)
        assert response.status_code == 200, response.content
        page = response.json()
        rows += [(m["step"], m["value"], m["timestamp"]) for m in page["metrics"]]
        token = page.get("next_page_token")
        if not token:
            return rows


def check_every_reader(cast, run, model: Model, rng) -> None:
    client = cast.reader.client
    for name, expected in model.series.items():
        series = MetricSeries.objects.get(run=run, name=name)
        assert series.count == len(expected)
        # The raw store.
        rows = [r[1:] for r in points.read(series.pk)]
        check_rows(expected, rows, f"{name}: read")
        # REST history, paged from assorted places.
        for _ in range(3):
            after, limit = rng.randint(-1, len(expected)), rng.choice([1, 63, 64, 65, 200, 10_000])
            got, nxt = rest_history(client, run, name, after_seq=after, limit=limit)
            want = expected[after + 1 : after + 1 + limit]
            check_rows(want, got, f"{name}: history after {after} limit {limit}")
            assert nxt == (want[-1][0] if after + 1 + limit < len(expected) else None)
        got, after = [], -1
        while after is not None:
            page, after = rest_history(client, run, name, after_seq=after, limit=97)
            got += page
        check_rows(expected, got, f"{name}: history paged whole")
        # REST values.
        response = client.get(f"/api/v1/runs/{run.run_id}/metrics/values", {"name": name})
        assert response.status_code == 200
        got = response.json()["metrics"][name]
        assert len(got) == len(expected)
        assert all(same_float(e[2], g) for e, g in zip(expected, got, strict=True)), name
        # The MLflow door's history, paged.
        got = mlflow_history(cast.reader, run, name, max_results=rng.choice([1, 64, 100, 1000]))
        assert [g[0] for g in got] == [e[1] for e in expected]
        assert all(same_float(e[2], g[1]) for e, g in zip(expected, got, strict=True)), name
        for e, g in zip(expected, got, strict=True):
            if not isinstance(e[3], tuple):
                assert g[2] == round(e[3] * 1000), (e, g)
        # Charts: raw windows by step and by time, and downsampled answers as a scan gives them.
        series.refresh_from_db()
        for x, column in (("step", 1), ("time", 3)):
            # The stored times, checked above: the server's clock is only known to a window.
            xs = sorted({r[column] for r in rows})
            lo, hi = sorted([rng.choice(xs), rng.choice(xs)])
            if abs(lo) > 2**53 or abs(hi) > 2**53:
                continue  # bounds are floats: past 2**53 they are not the steps given
            chart = series_downsample(series=series, x=x, buckets=1_000, x_min=lo, x_max=hi)
            inside = [r for r in rows if lo <= r[column] <= hi]
            if len(inside) <= 4_000:  # raw: every point of the window, in logged order
                assert chart.points["x"] == [r[column] for r in inside], (name, x, lo, hi)
                assert len(chart.points["y"]) == len(inside)
                for r, y in zip(inside, chart.points["y"], strict=True):
                    # The chart draws NaN and ±inf as gaps (marked apart, not as y).
                    assert same_float(r[2], y) or y is None and not math.isfinite(_nan(r[2]))
        for buckets in (1, 7, 50):
            same(
                series_downsample(series=series, buckets=buckets),
                reference(series, buckets=buckets),
            )
        # The pyramid ingest kept is the one a rebuild from the points makes.
        stored = [(e[0], e[1], None if math.isnan(e[2]) else e[2]) for e in expected]
        assert stored_blocks(series) == expected_blocks(stored, len(stored)), name
        services.series_summarize(series_ids=[series.pk], force=True)
        assert stored_blocks(series) == expected_blocks(stored, len(stored)), name
        if points.blocked():
            lengths = list(
                PointBlock.objects.filter(series=series)
                .order_by("block")
                .extra(select={"n": "cardinality(vals)"})
                .values_list("block", "n")
            )
            full, rest = divmod(len(expected), points.BLOCK)
            assert lengths == [(k, 64) for k in range(full)] + ([(full, rest)] if rest else [])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_batches_through_the_rest_door_read_back_point_by_point_everywhere(
    cast, make_run, seed
):
    rng = random.Random(seed)
    run = make_run()
    model = Model()
    names = ["loss", "acc/top1", "lr"]
    for _ in range(18):
        chosen = rng.sample(names, rng.randint(1, 3))
        metrics = [random_metric(rng, name, model.count(name)) for name in chosen]
        before = time.time()
        response = post_batch(cast.contributor.client, run, metrics)
        after = time.time()
        assert response.status_code == 200, response.content
        for metric in metrics:
            model.add(metric, before, after)
    check_every_reader(cast, run, model, rng)


def test_random_batches_through_the_mlflow_door_read_back_point_by_point_everywhere(cast, make_run):
    rng = random.Random(7)
    run = make_run()
    model = Model()
    for _ in range(12):
        rows, by_name = [], {}
        for name in rng.sample(["loss", "val"], rng.randint(1, 2)):
            metric = random_metric(rng, name, model.count(name))
            n = len(metric["values"][:200])  # MLflow's 1,000 metrics a batch
            stamps = [rng.choice([1_700_000_000_000 + i, 0, 2**62, 5]) for i in range(n)]
            steps = [rng.choice([i, 0, 2**62, 3]) for i in range(n)]
            by_name[name] = {
                "name": name,
                "values": metric["values"][:n],
                "steps": steps,
                "times": [s / 1000 for s in stamps],
            }
            rows += [
                {"key": name, "value": v, "timestamp": s, "step": st}
                for v, s, st in zip(metric["values"][:n], stamps, steps, strict=True)
            ]
        response = mlflow(
            cast.contributor, "post", "runs/log-batch", {"run_id": run.run_id, "metrics": rows}
        )
        assert response.status_code == 200, response.content
        for metric in by_name.values():
            model.add(metric, 0, 0)
    check_every_reader(cast, run, model, rng)


# --- batches refused mid-way leave the blocks as they were ------------------------------------


def stored_points(run) -> dict[str, list]:
    return {
        s.name: points.read(s.pk)
        for s in MetricSeries.objects.filter(run=run, kind="scalar").order_by("name")
    }


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "words", "values": [1.0]},  # a string series given a number: kind_mismatch
        {"name": "late", "values": [1.0] * 200 + ["ten"]},
        {"name": "late", "values": [1.0] * 200, "steps": [0] * 199 + [2.5]},
        {"name": "late", "values": [1.0] * 200, "times": [0] * 199 + ["now"]},
        {"name": "late", "values": [1.0] * 200 + [None]},
    ],
)
def test_a_batch_refused_for_its_last_series_leaves_every_block_as_it_was(cast, make_run, bad):
    run = make_run()
    client = cast.contributor.client
    assert (
        post_batch(client, run, [{"name": "words", "kind": "string", "values": ["a"]}]).status_code
        == 200
    )
    # 63 and 65 points: one series a point short of a block's end, one a point past it.
    first = [
        {"name": "a", "values": [float(i) for i in range(63)]},
        {"name": "b", "values": [float(i) for i in range(65)]},
    ]
    assert post_batch(client, run, first).status_code == 200
    before = stored_points(run)

    response = post_batch(
        client, run, [{"name": "a", "values": [7.0] * 130}, {"name": "b", "values": [8.0] * 3}, bad]
    )

    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"].startswith("metrics")
    assert stored_points(run) == before
    assert (
        post_batch(
            client, run, [{"name": "a", "values": [9.0, 9.5]}, {"name": "b", "values": [9.0]}]
        ).status_code
        == 200
    )
    after = stored_points(run)
    assert [r[1:4] for r in after["a"][61:]] == [
        (61, 61, 61.0),
        (62, 62, 62.0),
        (63, 63, 9.0),
        (64, 64, 9.5),
    ]
    assert [r[1:4] for r in after["b"][64:]] == [(64, 64, 64.0), (65, 65, 9.0)]


def test_a_replayed_batch_adds_no_point_and_the_next_one_goes_on_at_the_right_seq(cast, make_run):
    run = make_run()
    client = cast.contributor.client
    body = [{"name": "m", "values": [float(i) for i in range(100)]}]
    assert post_batch(client, run, body, idempotency_key="k1").json()["duplicate"] is False
    replay = post_batch(client, run, [{"name": "m", "values": [5.0] * 30}], idempotency_key="k1")
    assert replay.status_code == 200 and replay.json()["duplicate"] is True
    assert post_batch(client, run, [{"name": "m", "values": [-1.0] * 30}]).status_code == 200
    rows = points.read(MetricSeries.objects.get(run=run, name="m").pk)
    assert [r[1] for r in rows] == list(range(130))
    assert [r[3] for r in rows] == [float(i) for i in range(100)] + [-1.0] * 30


def test_the_mlflow_doors_retried_request_adds_no_point(cast, make_run):
    run = make_run()
    body = {
        "run_id": run.run_id,
        "metrics": [
            {"key": "m", "value": i, "timestamp": 1_700_000_000_000 + i, "step": i}
            for i in range(70)
        ],
    }
    for _ in range(2):
        assert mlflow(cast.contributor, "post", "runs/log-batch", body).status_code == 200
    got = mlflow_history(cast.reader, run, "m", max_results=1000)
    assert [g[0] for g in got] == list(range(70))


# --- deletes ---------------------------------------------------------------------------------


def blocks_of(series_ids) -> list:
    return [r[0] for r in points.read(list(series_ids))]


def logged_run(cast, experiment: str, *, workspace=None, n: int = 130):
    exp, _ = services.experiment_get_or_create(
        workspace=workspace or cast.workspace, name=experiment
    )
    run = services.run_create(experiment=exp, spec=RunSpec(), submitter=cast.owner.user)
    services.run_log_batch(run=run, metrics=[{"name": "m", "values": [1.0] * n}])
    return run, MetricSeries.objects.get(run=run).pk


def test_deleting_a_run_with_its_child_removes_their_points_and_no_one_elses(cast):
    run, mine = logged_run(cast, "e1")
    child = services.run_create(
        experiment=run.experiment, spec=RunSpec(), parent=run, submitter=cast.owner.user
    )
    services.run_log_batch(run=child, metrics=[{"name": "c", "values": [2.0] * 70}])
    theirs_run, theirs = logged_run(cast, "e1")
    kids = MetricSeries.objects.get(run=child).pk

    services.run_delete(run=run)

    assert blocks_of([mine, kids]) == []
    assert blocks_of([theirs]) == [theirs] * 130
    if points.blocked():
        assert not PointBlock.objects.filter(series_id__in=[mine, kids]).exists()


def test_deleting_an_experiment_or_a_workspace_removes_their_points_and_no_one_elses(cast):
    _, in_experiment = logged_run(cast, "gone")
    _, kept = logged_run(cast, "kept")
    elsewhere = Workspace.objects.get(name="elsewhere")
    _, in_workspace = logged_run(cast, "x", workspace=elsewhere)

    # What the admin's delete does: the ORM's cascade (the points tables have no foreign key).
    Run.objects.filter(experiment__name="gone").first().experiment.delete()
    assert blocks_of([in_experiment]) == []
    elsewhere.delete()
    assert blocks_of([in_workspace]) == []
    assert blocks_of([kept]) == [kept] * 130


# --- who may read ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["reader", "contributor", "owner"])
def test_members_read_a_runs_blocks_through_every_door(cast, make_run, role):
    run = make_run()
    services.run_log_batch(run=run, metrics=[{"name": "m", "values": [0.5] * 130}])
    client = cast.by_role(role).client
    got, _ = rest_history(client, run, "m", after_seq=60, limit=10)
    assert [g[0] for g in got] == list(range(61, 71))
    series = client.get(f"/api/v1/runs/{run.run_id}/metrics/series", {"name": "m"})
    assert series.status_code == 200 and series.json()["count"] == 130
    assert len(mlflow_history(cast.by_role(role), run, "m", max_results=64)) == 130
    page = Client()
    page.force_login(cast.by_role(role).user)
    chart = page.get("/charts/metric/", {"run": run.run_id, "metric": "m"})
    assert chart.status_code == 200 and chart.json()["series"][0]["count"] == 130


def test_an_outsider_gets_the_usual_not_found_and_never_a_point(cast, make_run):
    run = make_run()
    services.run_log_batch(run=run, metrics=[{"name": "m", "values": [0.123456] * 130}])
    client = cast.outsider.client
    missing = f"{run.run_id}x"
    for path, params in [
        ("metrics/history", {"name": "m", "after_seq": 63, "limit": 5}),
        ("metrics/values", {"name": "m"}),
        ("metrics/series", {"name": "m", "x_min": 0, "x_max": 100}),
        ("metrics", {}),
    ]:
        theirs = client.get(f"/api/v1/runs/{run.run_id}/{path}", params)
        nobodys = client.get(f"/api/v1/runs/{missing}/{path}", params)
        assert theirs.status_code == nobodys.status_code == 404, path
        assert theirs.content.replace(run.run_id.encode(), b"<id>") == nobodys.content.replace(
            missing.encode(), b"<id>"
        )
        assert b"0.123456" not in theirs.content
    answer = mlflow(
        cast.outsider, "get", "metrics/get-history", {"run_id": run.run_id, "metric_key": "m"}
    )
    assert answer.status_code in (403, 404) and b"0.123456" not in answer.content
    page = Client()
    page.force_login(cast.outsider.user)
    chart = page.get("/charts/metric/", {"run": run.run_id, "metric": "m"})
    assert chart.status_code == 404 and b"0.123456" not in chart.content


# --- the biggest batch the server takes --------------------------------------------------------


@pytest.mark.parametrize("already", [63, 1, 64 * 3 - 1])
def test_the_largest_batch_lands_whole_after_a_partial_block(cast, make_run, already):
    run = make_run()
    client = cast.contributor.client
    assert post_batch(client, run, [{"name": "m", "values": [-1.0] * already}]).status_code == 200
    n = limits.MAX_POINTS_PER_BATCH
    values = [float(i) for i in range(n)]
    values[5] = "NaN"
    response = post_batch(
        client,
        run,
        [{"name": "m", "values": values, "steps": list(range(n)), "times": [1.5e9] * n}],
    )
    assert response.status_code == 200, response.content
    rows = points.read(MetricSeries.objects.get(run=run, name="m").pk)
    assert [r[1] for r in rows] == list(range(already + n))
    assert [r[3] for r in rows[already:]] == [None if i == 5 else float(i) for i in range(n)]
    assert [r[2] for r in rows[already:]] == list(range(n))
    one_more = post_batch(client, run, [{"name": "m", "values": [1.0] * (n + 1)}])
    assert one_more.status_code == 400 and one_more.json()["error"]["code"] == "batch_too_large"
    if points.blocked():
        total = already + n
        assert PointBlock.objects.filter(series__run=run).count() == -(-total // points.BLOCK)


# --- two batches of one series at once -------------------------------------------------------


def _at_once(run, batches: list[list[dict]]) -> list[BaseException]:
    barrier = threading.Barrier(len(batches))
    errors: list[BaseException] = []

    def send(metrics: list[dict]) -> None:
        try:
            barrier.wait()
            services.run_log_batch(run=run, metrics=metrics)
        except BaseException as e:  # noqa: BLE001 - reported by the caller's assertion
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("already", [0, 30, 63, 64, 100])
def test_two_batches_of_one_series_at_once_lose_shift_or_repeat_no_point(make_run, already):
    run = make_run()
    if already:
        services.run_log_batch(run=run, metrics=[{"name": "m", "values": [0.0] * already}])
    one = [
        {"name": "m", "values": [1.0] * 100, "steps": [1] * 100},
        {"name": "n", "values": [1.0] * 3},
    ]
    two = [
        {"name": "n", "values": [2.0] * 70},
        {"name": "m", "values": [2.0] * 37, "steps": [2] * 37},
    ]

    assert _at_once(run, [one, two]) == []

    rows = points.read(MetricSeries.objects.get(run=run, name="m").pk)
    assert [r[1] for r in rows] == list(range(already + 137))
    logged = [(r[2], r[3]) for r in rows[already:]]
    # One batch whole, then the other whole: each point with its own step.
    assert logged in ([(1, 1.0)] * 100 + [(2, 2.0)] * 37, [(2, 2.0)] * 37 + [(1, 1.0)] * 100)
    other = [r[3] for r in points.read(MetricSeries.objects.get(run=run, name="n").pk)]
    assert other in ([1.0] * 3 + [2.0] * 70, [2.0] * 70 + [1.0] * 3)
    for name, n in (("m", already + 137), ("n", 73)):
        series = MetricSeries.objects.get(run=run, name=name)
        assert series.count == n
        stored = [(r[1], r[2], r[3]) for r in points.read(series.pk)]
        assert stored_blocks(series) == expected_blocks(stored, n)


# --- page tokens before the first point --------------------------------------------------------


@pytest.mark.parametrize("token", ["-2", "-100", str(-(2**63))])
def test_a_page_token_before_the_first_point_reads_from_the_start_on_either_database(
    cast, make_run, token
):
    """The MLflow door takes any 64-bit page token; one below -1 read from the start on SQLite
    but gave an empty history on PostgreSQL (its block range ended before block 0)."""
    run = make_run()
    services.run_log_batch(
        run=run, metrics=[{"name": "m", "values": [float(i) for i in range(200)]}]
    )
    answer = mlflow(
        cast.reader,
        "get",
        "metrics/get-history",
        {"run_id": run.run_id, "metric_key": "m", "max_results": 10, "page_token": token},
    ).json()
    assert [m["value"] for m in answer["metrics"]] == [float(i) for i in range(10)]
    assert answer["next_page_token"] == "9"
    series = MetricSeries.objects.get(run=run)
    rows = selectors.metric_point_rows(series=series, after_seq=int(token), limit=3)
    assert [r[:3] for r in rows] == [(0, 0, 0.0), (1, 1, 1.0), (2, 2, 2.0)]


# --- times no door can give back -------------------------------------------------------------


@pytest.mark.parametrize(
    "times", [[1e308], [1e301], [1e301, None], [0, -9.3e15], [2**63 - 1], [1.0, 1e300, 2.0]]
)
def test_a_time_past_the_bound_is_refused_alone_as_beside_a_default(cast, make_run, times):
    """The bound on times was only checked on the path that copies a column holding a null:
    [1e308] was stored, [1e308, null] refused."""
    run = make_run()
    metric = {"name": "m", "values": [1.0] * len(times), "times": times}
    response = post_batch(cast.contributor.client, run, [metric])
    assert response.status_code == 400, response.content
    bad = next(j for j, t in enumerate(times) if t is not None and abs(t) > 9.2e15)
    assert response.json()["error"]["field"] == f"metrics[0].times[{bad}]"
    assert "POINT_TIME_ABS_MAX" in response.json()["error"]["message"]
    assert not MetricSeries.objects.filter(run=run).exists()


def test_the_furthest_times_allowed_read_back_through_the_mlflow_door(cast, make_run):
    """A time past what int64 milliseconds carry made get-history a 500 (1e308: round(inf);
    1e299: a timestamp orjson cannot write)."""
    run = make_run()
    most = limits.POINT_TIME_ABS_MAX
    metric = {"name": "m", "values": [1.0, 2.0, 3.0], "times": [-most, 0, most]}
    assert post_batch(cast.contributor.client, run, [metric]).status_code == 200
    got = mlflow_history(cast.reader, run, "m", max_results=2)
    assert [g[2] for g in got] == [round(-most * 1000), 0, round(most * 1000)]
    # The MLflow door's own largest timestamp lies past the bound: refused, not stored.
    body = {"run_id": run.run_id, "metrics": [{"key": "m", "value": 1, "timestamp": 2**63 - 1}]}
    refused = mlflow(cast.contributor, "post", "runs/log-batch", body)
    assert refused.status_code == 400, refused.content
    assert len(mlflow_history(cast.reader, run, "m", max_results=10)) == 3


# --- the append to a partial block, at its edges -----------------------------------------------


@pytest.mark.parametrize("already", [1, 10, 63])
@pytest.mark.parametrize(
    "metric",
    [
        {"values": ["NaN"]},
        {"values": ["NaN"] * 70},
        {"values": ["Infinity", "-Infinity", -0.0, 5e-324]},
        {"values": [2**63 - 1, -(2**63), 2**53 + 1, 1e308]},
        {"values": [1, 2], "steps": [-(2**63), 2**63 - 1]},
        {"values": [1, 2, 3], "steps": [0, None, 1], "times": [None, 1_700_000_000, -1.5]},
        {"values": [2**70, 7]},  # an int past 64 bits: stored as its float
    ],
)
def test_odd_points_appended_to_a_partial_block_read_back_as_sent(cast, make_run, already, metric):
    run = make_run()
    client = cast.contributor.client
    assert post_batch(client, run, [{"name": "m", "values": [0.5] * already}]).status_code == 200
    model = Model()
    model.add({"name": "m", "values": [0.5] * already}, 0, time.time())
    before = time.time()
    response = post_batch(client, run, [{"name": "m", **metric}])
    assert response.status_code == 200, response.content
    model.add({"name": "m", **metric}, before, time.time())
    check_every_reader(cast, run, model, random.Random(already))


@pytest.mark.django_db(transaction=True)
def test_one_batch_sent_twice_at_once_with_its_key_is_stored_once(make_run):
    run = make_run()
    services.run_log_batch(run=run, metrics=[{"name": "m", "values": [0.0] * 40}])
    results: list = []

    def send() -> None:
        try:
            results.append(
                services.run_log_batch(
                    run=run, metrics=[{"name": "m", "values": [1.0] * 50}], idempotency_key="k"
                ).duplicate
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert sorted(results) == [False, True]
    rows = points.read(MetricSeries.objects.get(run=run).pk)
    assert [r[1] for r in rows] == list(range(90))
    assert [r[3] for r in rows] == [0.0] * 40 + [1.0] * 50


def block_lengths(series_id: int) -> list[tuple[int, int, int, int]]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT block, cardinality(steps), cardinality(vals), cardinality(times) "
            f"FROM {points.BLOCKS} WHERE series_id = %s ORDER BY block",
            [series_id],
        )
        return cursor.fetchall()


@PG_ONLY
def test_a_refused_batch_leaves_the_partial_blocks_three_arrays_as_long_as_before(cast, make_run):
    run = make_run()
    client = cast.contributor.client
    assert post_batch(client, run, [{"name": "m", "values": [1.0] * 100}]).status_code == 200
    series = MetricSeries.objects.get(run=run)
    before = block_lengths(series.pk)
    assert before == [(0, 64, 64, 64), (1, 36, 36, 36)]

    refused = post_batch(
        client, run, [{"name": "m", "values": [2.0] * 50}, {"name": "x", "values": ["x"]}]
    )

    assert refused.status_code == 400
    assert block_lengths(series.pk) == before
    assert post_batch(client, run, [{"name": "m", "values": [3.0] * 30}]).status_code == 200
    assert block_lengths(series.pk) == [(0, 64, 64, 64), (1, 64, 64, 64), (2, 2, 2, 2)]
