"""Whole numbers past 64 bits but inside a float's range, as metric values or times: JSON
carries them (orjson reads integers up to 2**64 - 1), a float column holds them, and the 64-bit
integer a database driver makes of a Python int does not. Each is stored as the float it is, or
refused with a 400 naming the entry — never a 500 (SQLite's driver raised OverflowError)."""

import json
import math

import pytest

from runs import points, services
from runs.models import MetricSeries

BIG = [2**63, 2**64 - 1, -(2**63) - 1, 2**64 + 1, 10**300]


@pytest.mark.parametrize("value", BIG)
def test_a_huge_whole_number_value_is_stored_as_its_float_and_reads_back(cast, make_run, value):
    run = make_run()
    body = json.dumps({"metrics": [{"name": "m", "values": [1, value, 2]}]})

    response = cast.contributor.client.post(
        f"/api/v1/runs/{run.run_id}/metrics/batch", body, content_type="application/json"
    )

    assert response.status_code == 200, response.content
    stored = [row[3] for row in points.read(MetricSeries.objects.get(run=run).pk)]
    assert stored == [1.0, float(value), 2.0]
    history = cast.reader.client.get(f"/api/v1/runs/{run.run_id}/metrics/history", {"name": "m"})
    assert history.json()["points"]["value"] == [1.0, float(value), 2.0]
    summary = run.metric_series.get(name="m")
    assert (summary.min_value, summary.max_value) == (
        min(1.0, float(value)),
        max(2.0, float(value)),
    )


@pytest.mark.parametrize("value", BIG)
def test_a_huge_whole_number_in_a_long_series_keeps_the_pyramid_and_charts_honest(make_run, value):
    run = make_run()
    values = [0.5] * 200
    values[100] = value

    services.run_log_batch(run=run, metrics=[{"name": "m", "values": values}])

    series = run.metric_series.get(name="m")
    assert series.max_value == max(0.5, float(value)) and series.min_value == min(0.5, float(value))
    from runs.downsample import series_downsample

    drawn = series_downsample(series=series, buckets=2).points["y"]
    assert float(value) in drawn


@pytest.mark.parametrize("time", [2**63, 2**64 - 1, 10**20])
def test_a_huge_whole_number_time_is_stored_as_its_float_or_refused_naming_it(cast, make_run, time):
    run = make_run()
    body = json.dumps({"metrics": [{"name": "m", "values": [1.0], "times": [time]}]})

    response = cast.contributor.client.post(
        f"/api/v1/runs/{run.run_id}/metrics/batch", body, content_type="application/json"
    )

    if response.status_code == 400:
        assert response.json()["error"]["field"].startswith("metrics[0].times")
        return
    assert response.status_code == 200, response.content
    (stored,) = [row[4] for row in points.read(MetricSeries.objects.get(run=run).pk)]
    assert stored == float(time) and math.isfinite(stored)
