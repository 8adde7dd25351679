"""Where points are stored (runs/points.py): a row each on SQLite, blocks of 64 seqs on
PostgreSQL. Whatever the batches' sizes, every point logged is read back as it was logged, by
every reader; on PostgreSQL the blocks stay whole but for the last; migration 0018 moves rows
stored before it into blocks."""

import importlib
import math
import random
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.core.cache import cache
from django.db import connection

from runs import points, selectors, services, summary
from runs.downsample import series_downsample
from runs.models import MetricPoint, MetricSeries, PointBlock
from tests.test_summary import log_in_batches

pytestmark = pytest.mark.django_db

migration = importlib.import_module("runs.migrations.0018_point_blocks")
INF = math.inf


def stored_as(value):
    return None if isinstance(value, float) and math.isnan(value) else value


@pytest.mark.parametrize("sizes", [[1], [63, 1, 2], [64], [65, 200], [7, 130, 1, 64, 300]])
def test_every_point_reads_back_as_logged_whatever_the_batch_sizes(make_run, sizes):
    rng = random.Random(len(sizes) * 1000 + sizes[0])
    n = 700
    values = [
        rng.choice([math.nan, INF, -INF]) if rng.random() < 0.05 else rng.gauss(0, 1e6)
        for _ in range(n)
    ]
    steps = [3 * i - rng.randrange(5) for i in range(n)]
    times = [1.7e9 + i / 3 for i in range(n)]
    run = make_run()
    series = log_in_batches(run, "m", values, steps=steps, times=times, sizes=sizes)

    expected = [(series.pk, i, steps[i], stored_as(values[i]), times[i]) for i in range(n)]
    assert points.read(series.pk) == expected
    with connection.cursor() as cursor:
        picked = [0, 63, 64, 65, 127, 128, 699, 700, 5_000]
        found = sorted(points.at(cursor, series.pk, picked))
    assert found == [row[1:] for row in expected if row[1] in picked]
    history = selectors.metric_point_rows(series=series, after_seq=60, limit=70)
    assert history == [row[1:] for row in expected[61:131]]
    got = selectors.metric_values(run=run)["m"]
    assert len(got) == n
    assert all(
        a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(got, values, strict=True)
    )
    if points.blocked():
        sizes_of = list(
            PointBlock.objects.filter(series=series)
            .order_by("block")
            .extra(select={"n": "cardinality(vals)"})
            .values_list("block", "n")
        )
        assert sizes_of == [(k, 64) for k in range(10)] + [(10, 700 - 640)]
        assert not MetricPoint.objects.exists()


def test_a_chart_over_blocks_matches_the_points(make_run):
    values = [float(i % 97) for i in range(20_000)]
    values[12_345] = 1e9
    values[777] = math.nan
    series = log_in_batches(make_run(), "loss", values, sizes=[3_000, 17, 5_000])
    cache.clear()
    chart = series_downsample(series=series, buckets=50)
    assert chart.downsampled
    assert max(y for y in chart.points["y"] if y is not None) == 1e9
    assert sum(chart.nan["count"]) == 1
    raw = series_downsample(series=series, buckets=1_000, x_min=100, x_max=300)
    assert raw.points["y"] == values[100:301]


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="only PostgreSQL keeps blocks")
def test_migration_0018_moves_rows_into_blocks(make_run):
    run = make_run()
    old = log_in_batches(run, "old", [0.0])
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {points.BLOCKS}")
    n = 200
    MetricPoint.objects.bulk_create(
        MetricPoint(series=old, seq=i, step=i * 2, value=None if i == 5 else i / 4, time=1e9 + i)
        for i in range(n)
    )
    MetricSeries.objects.filter(pk=old.pk).update(count=n, steps_sorted=None, times_sorted=None)

    migration.points_to_blocks(apps, SimpleNamespace(connection=connection))

    assert not MetricPoint.objects.exists()
    assert points.read(old.pk) == [
        (old.pk, i, i * 2, None if i == 5 else i / 4, 1e9 + i) for i in range(n)
    ]
    assert services.series_summarize() == 1
    old.refresh_from_db()
    assert (old.steps_sorted, old.last_time) == (True, 1e9 + n - 1)
    assert summary.levels(n) == 1
    # The series goes on from its last, partial block.
    services.run_log_batch(run=run, metrics=[{"name": "old", "values": [9.0] * 100}])
    assert [row[3] for row in points.read(old.pk)[n:]] == [9.0] * 100


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="only PostgreSQL keeps blocks")
def test_a_batch_never_appends_to_a_last_block_that_is_not_where_the_count_says(make_run):
    """Points' seqs are their places in the arrays: appending after a missing or short last
    block would shift every later point. The batch is refused whole instead."""
    run = make_run()
    series = log_in_batches(run, "m", [1.0] * 100)
    PointBlock.objects.filter(series=series, block=1).delete()

    with pytest.raises(points.BlocksOutOfStep):
        services.run_log_batch(run=run, metrics=[{"name": "m", "values": [2.0] * 100}])

    series.refresh_from_db()
    assert series.count == 100
    assert [row[3] for row in points.read(series.pk)] == [1.0] * 64
