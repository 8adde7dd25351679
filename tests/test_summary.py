"""The chart pyramid (runs/summary.py): kept at ingest, equal to the points it summarizes, and
read instead of them — on SQLite and PostgreSQL."""

import copy
import math
import random

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs import downsample, points, services, summary
from runs.downsample import series_downsample
from runs.models import MetricSeries, MetricSummary

INF = math.inf


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()


def log_in_batches(run, name, values, *, steps=None, times=None, sizes=(100_000,), rng=None):
    """Logs values in batches whose sizes cycle through `sizes` (or are drawn by `rng`)."""
    start, i = 0, 0
    while start < len(values):
        size = rng.choice(sizes) if rng else sizes[i % len(sizes)]
        end = min(len(values), start + size)
        metric = {"name": name, "kind": "scalar", "values": values[start:end]}
        if steps is not None:
            metric["steps"] = steps[start:end]
        if times is not None:
            metric["times"] = times[start:end]
        services.run_log_batch(run=run, metrics=[metric])
        start, i = end, i + 1
    return MetricSeries.objects.get(run=run, name=name)


def random_series(rng, n, *, nan=0.03, inf=0.01):
    values = []
    for _ in range(n):
        r = rng.random()
        if r < nan:
            values.append(math.nan)
        elif r < nan + inf:
            values.append(rng.choice([INF, -INF]))
        else:
            values.append(round(rng.gauss(0, 1), 6))
    return values


def points_of(series):
    return [row[1:] for row in points.read(series.pk)]


def expected_blocks(points, count):
    """Every pyramid block, computed from the points the slow, obvious way: the count, and the
    count, min and max of the finite values (NaN and ±inf are marked, not drawn)."""
    out = {}
    for level in range(1, summary.levels(count) + 1):
        w = summary.width(level)
        for bucket in range(-(-count // w)):
            chunk = [p[2] for p in points[bucket * w : (bucket + 1) * w]]
            real = [v for v in chunk if v is not None and math.isfinite(v)]
            out[(level, bucket)] = (
                len(chunk),
                len(real),
                min(real) if real else None,
                max(real) if real else None,
            )
    return out


def stored_blocks(series):
    return {
        (s.level, s.bucket): (s.count, s.non_nan, s.min_value, s.max_value)
        for s in MetricSummary.objects.filter(series=series)
    }


def reference(series, **kwargs):
    """The same request answered the way it was before the pyramid: points scanned, x filter
    applied in SQL (the bucket layout is the same, so the answers must be equal)."""
    cache.clear()
    old = copy.copy(series)
    old.steps_sorted = old.times_sorted = False
    downsample.USE_SUMMARY = False
    try:
        return series_downsample(series=old, **kwargs)
    finally:
        downsample.USE_SUMMARY = True
        cache.clear()


def same(a, b):
    """Equal answers, NaN-free floats compared exactly."""
    assert a.as_json() == b.as_json()


# --- kept at ingest ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_pyramid_kept_batch_by_batch_equals_the_one_built_from_the_points(make_run, seed):
    rng = random.Random(seed)
    run = make_run()
    n = rng.choice([40_000, 70_001])
    values = random_series(rng, n)
    # Batches of every shape: single points, one short of a block, crossing several levels.
    series = log_in_batches(
        run, "loss", values, sizes=(1, 3, 63, 64, 65, 500, 511, 4_097, 20_000), rng=rng
    )

    assert series.count == n and series.steps_sorted and series.times_sorted
    assert stored_blocks(series) == expected_blocks(points_of(series), n)


def test_a_short_series_keeps_no_summary_rows(make_run):
    run = make_run()
    series = log_in_batches(run, "lr", [0.1] * summary.BASE, sizes=(7,))
    assert not MetricSummary.objects.filter(series=series).exists()
    series = log_in_batches(run, "lr", [0.2], sizes=(1,))  # the 65th point starts level 1
    assert stored_blocks(series) == expected_blocks(points_of(series), summary.BASE + 1)


def test_steps_or_times_that_go_back_are_flagged(make_run):
    run = make_run()
    steps = list(range(1000)) + list(range(1000))  # a restarted loop repeats its steps
    series = log_in_batches(run, "loss", [1.0] * 2000, steps=steps, sizes=(1000,))
    assert series.steps_sorted is False and series.times_sorted is True
    times = [1_700_000_000.0 + i for i in range(100)]
    times[50] = 1.0
    series = log_in_batches(run, "acc", [1.0] * 100, times=times)
    assert series.steps_sorted is True and series.times_sorted is False


# --- read instead of the points ----------------------------------------------------------------


@pytest.mark.parametrize("seed", [4, 5])
def test_charts_from_the_pyramid_equal_charts_from_the_points(make_run, seed):
    """Random series with NaN, ±inf and repeated steps; whole series and random windows by step,
    time and relative time; every bucket's count, min and max equal to the raw scan's."""
    rng = random.Random(seed)
    run = make_run()
    n = 60_000
    values = random_series(rng, n)
    steps = sorted(rng.randrange(0, n // 3) for _ in range(n))  # repeats, never goes back
    times = [1_700_000_000.0 + i * 0.25 for i in range(n)]
    series = log_in_batches(
        run, "loss", values, steps=steps, times=times, sizes=(777, 25_000), rng=rng
    )
    assert series.steps_sorted and series.times_sorted

    requests = [{"buckets": b} for b in (1, 7, 100, 1000, 5000)]
    for _ in range(12):
        x = rng.choice(["step", "time", "relative"])
        if x == "step":
            a, b = sorted(rng.randrange(0, n // 3) for _ in range(2))
        else:
            a, b = sorted(rng.uniform(0, n * 0.25) for _ in range(2))
            if x == "time":
                a, b = a + times[0], b + times[0]
        requests.append({"x": x, "x_min": a, "x_max": b, "buckets": rng.choice([10, 200, 1000])})
    downsampled = 0
    for kwargs in requests:
        got = series_downsample(series=series, **kwargs)
        same(got, reference(series, **kwargs))
        downsampled += got.downsampled
    assert downsampled >= 10  # most requests really went through the pyramid

    # And bucket by bucket against the points themselves, the obvious way.
    points = points_of(series)
    for lo, hi, buckets in [(0, n - 1, 500), (12_345, 54_321, 300), (70, 40_000, 9)]:
        level, width, _ = summary.layout(count=n, lo=lo, hi=hi, buckets=buckets)
        assert level >= 1
        with connection.cursor() as cursor:
            rows = summary.aggregate(
                cursor, series_id=series.pk, lo=lo, hi=hi, level=level, bucket_width=width
            )
        assert len(rows) <= buckets
        for j, count, non_nan, low, high, first, last in rows:
            chunk = [p[2] for p in points[first : last + 1]]
            real = [v for v in chunk if v is not None and math.isfinite(v)]
            assert (first, last) == (max(lo, j * width), min(hi, (j + 1) * width - 1))
            assert (count, non_nan) == (len(chunk), len(real))
            assert (low, high) == ((min(real), max(real)) if real else (None, None))


def test_a_window_of_a_series_whose_steps_go_back_scans_the_points_honestly(make_run):
    run = make_run()
    n = 30_000
    steps = [i % 10_000 for i in range(n)]  # three passes over the same steps
    values = [float(i) for i in range(n)]
    series = log_in_batches(run, "loss", values, steps=steps, sizes=(10_000,))
    assert series.steps_sorted is False

    result = series_downsample(series=series, x_min=2_000, x_max=2_999, buckets=100)

    # Points of all three passes, in logged order, and nothing outside the window.
    assert result.in_range == 3_000
    assert max(result.points["y"]) == 22_999.0 and min(result.points["y"]) == 2_000.0
    assert all(2_000 <= x <= 2_999 for x in result.points["x"])
    same(result, reference(series, x_min=2_000, x_max=2_999, buckets=100))
    # Without a window the pyramid still serves it: buckets by seq keep the logged order.
    same(series_downsample(series=series, buckets=100), reference(series, buckets=100))


def _instructions(fn) -> int:
    """SQLite virtual-machine steps spent in fn: a measure of rows read that no clock skews."""
    steps = [0]

    def tick():
        steps[0] += 1
        return 0

    connection.ensure_connection()
    connection.connection.set_progress_handler(tick, 100)
    try:
        fn()
    finally:
        connection.connection.set_progress_handler(None, 100)
    return steps[0]


def test_a_chart_reads_about_as_much_for_a_long_series_as_for_a_short_one(make_run):
    run = make_run()
    short = log_in_batches(run, "short", [math.sin(i / 100) for i in range(20_000)])
    long = log_in_batches(run, "long", [math.sin(i / 100) for i in range(320_000)])

    def chart(series, **kwargs):
        cache.clear()
        with CaptureQueriesContext(connection) as queries:
            result = series_downsample(series=series, buckets=50, **kwargs)
        assert result.downsampled
        return len(queries)

    # Queries: the first point's time, the grouped blocks, the window's ragged ends (a couple a
    # level) and the buckets' first and last points: a handful, whatever the length.
    assert chart(long) <= 10
    assert chart(long, x_min=100_001, x_max=300_000) <= 10 + 2 * 20  # + a binary search a side
    if connection.vendor != "sqlite":
        return
    short_steps = _instructions(lambda: chart(short))
    long_steps = _instructions(lambda: chart(long))
    assert long_steps < 2 * short_steps  # 16× the points, about the same work
    downsample.USE_SUMMARY = False
    try:  # the scan it replaces grows with the series (this is what the test would catch)
        assert _instructions(lambda: chart(long)) > 8 * _instructions(lambda: chart(short))
    finally:
        downsample.USE_SUMMARY = True


# --- series from before the pyramid ------------------------------------------------------------


def test_older_series_chart_from_their_points_until_summarized_then_from_the_pyramid(make_run):
    run = make_run()
    rng = random.Random(9)
    n = 50_000
    values = random_series(rng, n)
    series = log_in_batches(run, "loss", values, sizes=(3_000,))
    expected = stored_blocks(series)
    # As a database migrated from before the pyramid has it: points, no blocks, no flags.
    MetricSummary.objects.filter(series=series).delete()
    MetricSeries.objects.filter(pk=series.pk).update(
        steps_sorted=None, times_sorted=None, last_time=None
    )
    series.refresh_from_db()
    before = series_downsample(series=series, buckets=500)
    assert before.downsampled and before.count == n

    # A batch logged meanwhile does not start a partial pyramid.
    services.run_log_batch(run=run, metrics=[{"name": "loss", "values": [0.5] * 100}])
    assert not MetricSummary.objects.filter(series=series).exists()

    call_command("metrics_summarize", stdout=open("/dev/null", "w"))  # noqa: SIM115

    series.refresh_from_db()
    assert series.steps_sorted and series.times_sorted and series.last_time
    points = points_of(series)
    assert stored_blocks(series) == expected_blocks(points, n + 100)
    assert {k: v for k, v in stored_blocks(series).items() if k in expected} != {}
    same(series_downsample(series=series, buckets=500), reference(series, buckets=500))
    # Ingest carries on from the rebuilt pyramid.
    services.run_log_batch(run=run, metrics=[{"name": "loss", "values": [9.0] * 5_000}])
    series.refresh_from_db()
    assert stored_blocks(series) == expected_blocks(points_of(series), n + 5_100)
    assert services.series_summarize() == 0  # nothing left to do


def test_deleting_a_run_deletes_its_pyramid(make_run):
    run = make_run()
    series = log_in_batches(run, "loss", [1.0] * 10_000)
    assert MetricSummary.objects.filter(series=series).exists()
    run.delete()
    assert not MetricSummary.objects.filter(series_id=series.pk).exists()


def test_summarizing_short_older_series_sets_their_flags_from_their_points(make_run):
    run = make_run()
    ordered = log_in_batches(run, "lr", [0.1] * 10)
    restarted = log_in_batches(run, "epoch", [1.0] * 6, steps=[0, 1, 2, 0, 1, 2])
    grown = log_in_batches(run, "loss", [1.0] * 50)
    empty = MetricSeries.objects.create(run=run, name="seeded", kind="scalar", count=3)
    MetricSeries.objects.filter(run=run).update(steps_sorted=None, times_sorted=None)
    # Longer by now than its stored count says: it gets the full rebuild.
    points.insert([(grown.pk, 50, range(50, 200), [2.0] * 150, [4e9 + s for s in range(50, 200)])])

    assert services.series_summarize() == 4

    flags = {
        s.name: (s.steps_sorted, s.times_sorted)
        for s in MetricSeries.objects.filter(pk__in=[ordered.pk, restarted.pk, grown.pk, empty.pk])
    }
    assert flags == {
        "lr": (True, True),
        "epoch": (False, True),
        "loss": (True, True),
        "seeded": (True, True),
    }
    assert stored_blocks(grown) == expected_blocks(points_of(grown), 200)
