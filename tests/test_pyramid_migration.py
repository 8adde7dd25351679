"""Migration 0017: a series whose pyramid kept ±inf as a block's extreme (as blocks were built
before it) charts from its points until `metrics_summarize` rebuilds it with finite extremes;
other series keep their pyramid."""

import importlib
import math
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.core.cache import cache
from django.db import connection

from runs import services
from runs.downsample import series_downsample
from runs.models import MetricSeries, MetricSummary

pytestmark = pytest.mark.django_db

migration = importlib.import_module("runs.migrations.0017_pyramid_finite_extremes")


def test_a_series_whose_blocks_kept_infinity_is_charted_from_its_points_then_rebuilt(make_run):
    run = make_run()
    values = [float(i % 50) for i in range(5_000)]
    values[100] = math.inf
    services.run_log_batch(
        run=run,
        metrics=[{"name": "loss", "values": values}, {"name": "acc", "values": [0.5] * 5_000}],
    )
    loss = MetricSeries.objects.get(run=run, name="loss")
    acc = MetricSeries.objects.get(run=run, name="acc")
    # The block of seqs 64-127 as it was stored before: +inf its max, counted as a value.
    MetricSummary.objects.filter(series=loss, level=1, bucket=1).update(
        max_value=math.inf, non_nan=64
    )

    migration.unsummarize_series_with_infinite_blocks(apps, SimpleNamespace(connection=connection))

    loss.refresh_from_db()
    acc.refresh_from_db()
    assert loss.steps_sorted is None and loss.times_sorted is None
    assert acc.steps_sorted is True and acc.times_sorted is True  # no ±inf: untouched
    cache.clear()
    chart = series_downsample(series=loss, buckets=10)  # from the points meanwhile
    assert chart.downsampled
    assert max(y for y in chart.points["y"] if y is not None) == 49.0
    assert sum(chart.nan["count"]) == 1  # the +inf, marked

    assert services.series_summarize() == 1

    loss.refresh_from_db()
    assert loss.steps_sorted is True
    block = MetricSummary.objects.get(series=loss, level=1, bucket=1)
    assert (block.count, block.non_nan, block.max_value) == (64, 63, 49.0)
    cache.clear()
    assert series_downsample(series=loss, buckets=10).as_json() == chart.as_json()
