"""Charts and history checked by brute force, as a user who trusts them would want.

Random scalar series (NaN, ±inf, ints, repeated and decreasing steps, times that go back) are
logged through the real ingest path in batches of random sizes (so the pyramid's last, partial
block is merged into again and again), read back point by point, and every chart request is
compared with what a plain Python pass over those points says it must show: the exact count in
range, the exact raw points, and in a downsampled answer every bucket's min and max, every NaN
counted where it is. The history endpoint must page through exactly the points logged. Runs on
SQLite and on PostgreSQL (DATABASE_URL), as the suite does.
"""

import json
import math
import random

import pytest
from django.core.cache import cache

from runs import points, services, summary
from runs.downsample import RAW_FACTOR, series_downsample
from runs.models import MetricSeries, MetricSummary
from tests.test_summary import expected_blocks, stored_blocks

INF = math.inf
T0 = 1_700_000_000.0


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()


# --- random data, logged the way the SDK logs it -----------------------------------------------


def random_values(rng: random.Random, n: int) -> list:
    """Floats, ints, NaN, ±inf, long flat stretches and runs of NaN, in random proportions."""
    out: list = []
    while len(out) < n:
        kind = rng.random()
        if kind < 0.04:
            out.extend([math.nan] * rng.randint(1, 200))  # a stretch of NaN (a diverged loss)
        elif kind < 0.07:
            out.append(rng.choice([INF, -INF]))
        elif kind < 0.12:
            out.extend([rng.randint(-5, 5)] * rng.randint(1, 100))  # repeated int values
        elif kind < 0.15:
            out.append(rng.choice([2**53 + 1, -(2**40), 0]))
        elif kind < 0.16:
            out.append(rng.choice([1e300, -1e300, 5e-324]))
        else:
            out.append(round(rng.gauss(0, 1), rng.choice([0, 3, 9])))
    return out[:n]


def random_steps(rng: random.Random, n: int, *, monotone: bool) -> list[int]:
    steps, step = [], rng.randint(-50, 50)
    for _ in range(n):
        r = rng.random()
        if not monotone and r < 0.002:
            step -= rng.randint(1, 3_000)  # a restarted loop
        elif not monotone and r < 0.01:
            step -= 1
        elif r < 0.3:
            pass  # repeated
        else:
            step += rng.randint(1, 3)
        steps.append(step)
    return steps


def random_times(rng: random.Random, n: int, *, monotone: bool) -> list[float]:
    times, t = [], T0 + rng.random()
    for _ in range(n):
        r = rng.random()
        if not monotone and r < 0.003:
            t -= rng.uniform(0, 500)  # a clock set back
        elif r < 0.2:
            pass
        else:
            t += rng.choice([0.001, 0.25, 1.5, rng.random()])
        times.append(t)
    return times


def log_randomly(rng, run, name, values, steps, times) -> MetricSeries:
    start = 0
    while start < len(values):
        size = rng.choice([1, 2, 63, 64, 65, rng.randint(1, 600), rng.randint(500, 5_000)])
        end = min(len(values), start + size)
        services.run_log_batch(
            run=run,
            metrics=[
                {
                    "name": name,
                    "kind": "scalar",
                    "values": values[start:end],
                    "steps": steps[start:end],
                    "times": times[start:end],
                }
            ],
        )
        start = end
    return MetricSeries.objects.get(run=run, name=name)


def points_of(series) -> list[tuple]:
    return [row[1:] for row in points.read(series.pk)]


def stored_as(value) -> float | None:
    """What a logged value reads back as: NaN is NULL, an int is the float it rounds to."""
    value = float(value)
    return None if math.isnan(value) else value


# --- the brute force ---------------------------------------------------------------------------


def finite(value) -> bool:
    """Drawn as a point; NaN (stored None) and ±inf are marked instead."""
    return value is not None and math.isfinite(value)


def x_of(point, x: str, t0: float) -> float:
    return point[1] if x == "step" else point[3] if x == "time" else point[3] - t0


def in_window(points, x, t0, x_min, x_max) -> list[tuple]:
    return [
        p
        for p in points
        if (x_min is None or x_of(p, x, t0) >= x_min) and (x_max is None or x_of(p, x, t0) <= x_max)
    ]


def check_chart(series, points, *, x, buckets, x_min=None, x_max=None) -> bool:
    """Asserts the chart answer against the points; returns whether it was downsampled."""
    cache.clear()
    got = series_downsample(series=series, x=x, buckets=buckets, x_min=x_min, x_max=x_max)
    request = f"x={x} buckets={buckets} x_min={x_min!r} x_max={x_max!r}"
    t0 = points[0][3]
    assert got.count == len(points), request
    assert got.t0 == t0, request
    wanted = in_window(points, x, t0, x_min, x_max)
    assert got.in_range == len(wanted), request
    if not wanted:
        assert got.points == {"x": [], "y": []} and not got.nan["x"], request
        return False
    if len(wanted) <= RAW_FACTOR * buckets:
        # Raw: every point in logged order; NaN and ±inf are gaps, each marked.
        assert not got.downsampled, request
        ys = [v if v is not None and math.isfinite(v) else None for v in (p[2] for p in wanted)]
        assert got.points == {"x": [x_of(p, x, t0) for p in wanted], "y": ys}, request
        bad = [x_of(p, x, t0) for p, y in zip(wanted, ys, strict=True) if y is None]
        assert got.nan == {"x": bad, "count": [1] * len(bad)}, request
        return False

    assert got.downsampled and 1 <= got.buckets <= buckets, request
    # The buckets: runs of consecutive seqs of the layout's width, as the docs describe.
    _, width, origin = summary.layout(
        count=len(points), lo=wanted[0][0], hi=wanted[-1][0], buckets=buckets
    )
    groups: dict[int, list] = {}
    for p in wanted:
        groups.setdefault((p[0] - origin) // width, []).append(p)
    assert got.buckets == len(groups), request
    assert len(groups) <= buckets, request

    drawn = list(zip(got.points["x"], got.points["y"], strict=True))
    values_in_window = {p[2] for p in wanted if p[2] is not None}
    assert all(y is None or y in values_in_window for _, y in drawn), f"{request}: invented y"
    nan_marks = list(zip(got.nan["x"], got.nan["count"], strict=True))
    # NaN and ±inf alike: marked, not drawn, as in a raw window.
    assert sum(got.nan["count"]) == sum(not finite(p[2]) for p in wanted), request

    for key, group in groups.items():
        xs = [x_of(p, x, t0) for p in group]
        # M4 puts min and max between the bucket's first and last x.
        lo_x = min(xs[0], xs[-1])
        hi_x = max(xs[0], xs[-1])
        inside = [(xv, y) for xv, y in drawn if lo_x <= xv <= hi_x]
        real = [p[2] for p in group if finite(p[2])]
        nans = len(group) - len(real)
        where = f"{request} bucket {key} seqs {group[0][0]}..{group[-1][0]}"
        if nans:
            assert any(lo_x <= mx <= hi_x and c == nans for mx, c in nan_marks), (
                f"{where}: {nans} NaN not marked"
            )
        if not real:
            assert any(y is None for _, y in inside), f"{where}: no finite value, yet no gap"
            continue
        # Its finite extremes are drawn even when ±inf shares the bucket (marked above).
        for extreme in (min(real), max(real)):
            assert any(y == extreme for _, y in inside), f"{where}: {extreme!r} not drawn"
    return True


def random_windows(rng, points, count: int):
    """Random requests: each axis, open and closed ends, bounds on points' own x values (a
    zoom to what the chart showed) and anywhere, the widest and narrowest bucket counts."""
    t0 = points[0][3]
    for _ in range(count):
        x = rng.choice(["step", "time", "relative"])
        xs = [x_of(p, x, t0) for p in points]

        a, b = _bound(rng, xs), _bound(rng, xs)
        if a is not None and b is not None and a > b and rng.random() < 0.9:
            a, b = b, a
        buckets = rng.choice([1, 2, 3, rng.randint(1, 50), rng.randint(1, 5_000), 5_000])
        yield {"x": x, "buckets": buckets, "x_min": a, "x_max": b}


def _bound(rng, xs: list[float]) -> float | None:
    lo_all, hi_all = min(xs), max(xs)
    r = rng.random()
    if r < 0.15:
        return None
    if r < 0.55:
        return rng.choice(xs)
    if r < 0.9:
        return rng.uniform(lo_all, hi_all)
    return rng.choice([lo_all - 10, hi_all + 10, lo_all, hi_all])


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "monotone"), [(11, True), (12, False), (13, True), (14, False)])
def test_every_chart_window_shows_each_buckets_min_max_and_nan_counted_exactly(
    make_run, seed, monotone
):
    rng = random.Random(seed)
    run = make_run()
    n = rng.randint(9_000, 14_000)
    values = random_values(rng, n)
    steps = random_steps(rng, n, monotone=monotone)
    times = random_times(rng, n, monotone=monotone)
    series = log_randomly(rng, run, "loss", values, steps, times)
    points = points_of(series)

    # What was logged is what is stored, in logged order.
    assert [p[0] for p in points] == list(range(n))
    assert [p[1] for p in points] == steps and [p[3] for p in points] == times
    assert [p[2] for p in points] == [stored_as(v) for v in values]
    assert series.steps_sorted is monotone and series.times_sorted is monotone
    assert MetricSummary.objects.filter(series=series).exists()

    downsampled = sum(
        check_chart(series, points, x=x, buckets=b)
        for x in ("step", "time", "relative")
        for b in (1, 7, 64, 999, 5_000)
    )
    for request in random_windows(rng, points, 60):
        downsampled += check_chart(series, points, **request)
    assert downsampled >= 20  # the pyramid and the scans were really exercised


def test_history_pages_through_exactly_the_points_logged(cast, make_run):
    rng = random.Random(21)
    run = make_run()
    n = 7_000
    values = random_values(rng, n)
    steps = random_steps(rng, n, monotone=False)
    times = random_times(rng, n, monotone=False)
    log_randomly(rng, run, "loss", values, steps, times)

    for limit in (1, 97, 4_096, 100_000):
        got: dict[str, list] = {"seq": [], "step": [], "value": [], "time": []}
        after, pages = None, 0
        while True:
            query = {"name": "loss", "limit": limit}
            if after is not None:
                query["after_seq"] = after
            response = cast.reader.client.get(f"/api/v1/runs/{run.run_id}/metrics/history", query)
            assert response.status_code == 200, response.content
            page = json.loads(response.content)  # Python's json reads NaN/Infinity either way
            assert page["name"] == "loss" and page["kind"] == "scalar"
            assert len(page["points"]["seq"]) <= limit
            for key in got:
                got[key].extend(page["points"][key])
            pages += 1
            after = page["next_after_seq"]
            if after is None:
                break
            assert pages <= n + 1, "the cursor never ends"
            if limit == 1 and pages > 300:
                # One point a page: check the cursor's first 300 steps, not 7,000 requests.
                n_seen = len(got["seq"])
                for key in got:
                    got[key] = got[key][:n_seen]
                break
        seen = len(got["seq"])
        assert got["seq"] == list(range(seen))
        assert got["step"] == steps[:seen]
        assert got["time"] == times[:seen]
        read = [_number(v) for v in got["value"]]
        for i, (r, v) in enumerate(zip(read, values[:seen], strict=True)):
            expected = float(v)
            assert r == expected or (math.isnan(r) and math.isnan(expected)), (i, r, v)
        if limit != 1:
            assert seen == n
            assert pages == -(-n // limit)


def _number(value) -> float:
    """A value as history returns it: a number, or "NaN"/"Infinity"/"-Infinity"."""
    return float(value)


def test_a_long_series_logged_with_others_in_each_batch_charts_honestly(make_run):
    """Past level 4 of the pyramid (32,768 points), several series a batch, one of them short."""
    rng = random.Random(31)
    run = make_run()
    n = 40_000
    data = {
        name: (
            random_values(rng, n),
            random_steps(rng, n, monotone=monotone),
            random_times(rng, n, monotone=monotone),
        )
        for name, monotone in (("loss", True), ("acc", False))
    }
    start = 0
    while start < n:
        end = min(n, start + rng.choice([1, 64, 4_095, 4_097, rng.randint(1, 9_000)]))
        metrics = [
            {"name": name, "values": v[start:end], "steps": s[start:end], "times": t[start:end]}
            for name, (v, s, t) in data.items()
        ]
        metrics.append({"name": "lr", "values": [0.1], "steps": [start]})
        services.run_log_batch(run=run, metrics=metrics)
        start = end
    for name in data:
        series = MetricSeries.objects.get(run=run, name=name)
        assert summary.levels(series.count) == 4
        points = points_of(series)
        for request in random_windows(rng, points, 25):
            check_chart(series, points, **request)


def test_a_series_summarized_after_the_fact_charts_like_one_summarized_at_ingest(make_run):
    rng = random.Random(41)
    n = 20_000
    values = random_values(rng, n)
    steps = random_steps(rng, n, monotone=True)
    times = random_times(rng, n, monotone=True)
    at_ingest = log_randomly(random.Random(1), make_run(), "loss", values, steps, times)
    older_run = make_run()
    older = log_randomly(random.Random(2), older_run, "loss", values, steps, times)
    # As a database from before the pyramid has it: points only, no blocks, no flags.
    MetricSummary.objects.filter(series=older).delete()
    MetricSeries.objects.filter(pk=older.pk).update(
        steps_sorted=None, times_sorted=None, last_time=None
    )
    older.refresh_from_db()
    points = points_of(older)
    assert points == [(p[0], p[1], p[2], p[3]) for p in points_of(at_ingest)]
    requests = list(random_windows(rng, points, 40))

    def same_charts(a, b):
        for request in requests:
            cache.clear()
            got_a = series_downsample(series=a, **request).as_json()
            cache.clear()
            got_b = series_downsample(series=b, **request).as_json()
            assert got_a == got_b, request

    for request in requests:  # before: charted from the points, still honest
        check_chart(older, points, **request)

    assert services.series_summarize() == 1
    older.refresh_from_db()
    blocks = {
        name: sorted(
            MetricSummary.objects.filter(series=s).values_list(
                "level", "bucket", "count", "non_nan", "min_value", "max_value"
            )
        )
        for name, s in (("ingest", at_ingest), ("older", older))
    }
    assert blocks["older"] == blocks["ingest"]
    assert (older.steps_sorted, older.times_sorted, older.last_time) == (
        at_ingest.steps_sorted,
        at_ingest.times_sorted,
        at_ingest.last_time,
    )
    same_charts(at_ingest, older)

    # Both carry on alike: more points, one going back in time.
    more = {"name": "loss", "values": [1.0, math.nan, -INF, 7], "steps": [1, 2, 3, 4],
            "times": [T0 - 1, T0, T0 + 1, T0 + 2]}  # fmt: skip
    services.run_log_batch(run=at_ingest.run, metrics=[more])
    services.run_log_batch(run=older_run, metrics=[more])
    at_ingest.refresh_from_db()
    older.refresh_from_db()
    assert older.steps_sorted is False and older.times_sorted is False
    same_charts(at_ingest, older)
    points = points_of(older)
    for request in requests:
        check_chart(older, points, **request)


@pytest.mark.django_db(transaction=True)
def test_batches_logged_at_once_by_several_clients_keep_the_pyramid_equal_to_the_points(
    make_run,
):
    """Four clients log into the same series at the same time (and start a new one together):
    every point lands once, in a gapless seq order, and the pyramid merged block by block under
    the series' lock is the one the points give."""
    import threading

    from django.db import connection

    run = make_run()
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def client(seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            for _ in range(12):
                size = rng.choice([1, 63, 64, 65, rng.randint(1, 700)])
                values = random_values(rng, size)
                metrics = [{"name": "loss", "values": values}]
                if rng.random() < 0.5:
                    metrics.append({"name": "acc", "values": values[::-1]})
                services.run_log_batch(run=run, metrics=metrics)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for name in ("loss", "acc"):
        series = MetricSeries.objects.get(run=run, name=name)
        points = points_of(series)
        assert [p[0] for p in points] == list(range(series.count))
        assert stored_blocks(series) == expected_blocks(points, series.count), name
        rng = random.Random(5)
        for request in random_windows(rng, points, 10):
            check_chart(series, points, **request)


@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 511, 512, 513, 4_096, 4_097, 33_000])
def test_backfilling_a_series_of_any_length_gives_the_pyramid_and_flags_ingest_gives(make_run, n):
    """Around every block edge: the same points logged twice, one series then stripped to what
    a database from before the pyramid holds and summarized after the fact."""
    rng = random.Random(n)
    values = random_values(rng, n)
    monotone = n % 2 == 1
    steps = random_steps(rng, n, monotone=monotone)
    times = random_times(rng, n, monotone=monotone)
    built = log_randomly(random.Random(1), make_run(), "loss", values, steps, times)
    older = log_randomly(random.Random(2), make_run(), "loss", values, steps, times)
    MetricSummary.objects.filter(series=older).delete()
    MetricSeries.objects.filter(pk=older.pk).update(
        steps_sorted=None, times_sorted=None, last_time=None
    )

    assert services.series_summarize() == 1

    older.refresh_from_db()

    def blocks(series):
        return sorted(
            MetricSummary.objects.filter(series=series).values_list(
                "level", "bucket", "count", "non_nan", "min_value", "max_value"
            )
        )

    assert blocks(older) == blocks(built)
    flags = ("steps_sorted", "times_sorted", "last_time")
    assert [getattr(older, f) for f in flags] == [getattr(built, f) for f in flags]
    points = points_of(older)
    for request in random_windows(rng, points, 6):
        check_chart(older, points, **request)
