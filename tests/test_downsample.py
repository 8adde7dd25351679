"""The chart downsampler (runs/downsample.py) and its REST endpoint, on SQLite and PostgreSQL."""

import math

import pytest
from django.core.cache import cache

from runs import services
from runs.downsample import RAW_FACTOR, series_downsample
from runs.errors import InvalidInput
from runs.models import MetricSeries


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()


def log(run, name, values, *, steps=None, times=None):
    """Logs values in batches of the ingest limit; returns the fresh series."""
    size = 100_000
    for start in range(0, len(values), size):
        metric = {"name": name, "kind": "scalar", "values": values[start : start + size]}
        if steps is not None:
            metric["steps"] = steps[start : start + size]
        if times is not None:
            metric["times"] = times[start : start + size]
        services.run_log_batch(run=run, metrics=[metric])
    return MetricSeries.objects.get(run=run, name=name)


def test_a_single_spike_in_200k_points_survives_downsampling(make_run):
    run = make_run()
    n = 200_000
    values = [math.sin(i / 5000) for i in range(n)]
    values[123_457] = 50.0
    values[31_337] = -40.0
    series = log(run, "loss", values)

    result = series_downsample(series=series, buckets=1000)

    assert result.downsampled
    assert result.count == n and result.in_range == n
    # Buckets are whole blocks of the pyramid: at most the count asked for, at least half.
    assert 500 <= result.buckets <= 1000
    assert len(result.points["x"]) <= RAW_FACTOR * 1000
    assert max(result.points["y"]) == 50.0
    assert min(result.points["y"]) == -40.0
    # The spike sits in its own bucket's x span, near step 123457.
    spike_x = result.points["x"][result.points["y"].index(50.0)]
    assert abs(spike_x - 123_457) <= n / 1000
    # The line covers the whole series, first point to last.
    assert result.points["x"][0] == 0 and result.points["x"][-1] == n - 1


def test_buckets_split_the_series_evenly_and_keep_order(make_run):
    run = make_run()
    series = log(run, "acc", [float(i % 7) for i in range(10_000)])

    result = series_downsample(series=series, buckets=100)

    assert 50 <= result.buckets <= 100
    assert result.points["x"] == sorted(result.points["x"])
    assert min(result.points["y"]) == 0.0 and max(result.points["y"]) == 6.0


def test_a_short_series_comes_back_raw(make_run):
    run = make_run()
    series = log(run, "loss", [0.5, 0.4, 0.3], steps=[10, 20, 30])

    result = series_downsample(series=series, buckets=100)

    assert not result.downsampled
    assert result.points == {"x": [10, 20, 30], "y": [0.5, 0.4, 0.3]}


def test_up_to_four_points_a_bucket_still_come_back_raw(make_run):
    run = make_run()
    series = log(run, "loss", [float(i) for i in range(RAW_FACTOR * 10)])
    assert not series_downsample(series=series, buckets=10).downsampled
    series = log(run, "loss", [1.0])
    assert series_downsample(series=series, buckets=10).downsampled


def test_nan_points_are_gaps_and_are_counted(make_run):
    run = make_run()
    values = [1.0, "NaN", 3.0, "NaN", "NaN", 6.0]
    series = log(run, "loss", values)

    result = series_downsample(series=series)

    assert result.points["y"] == [1.0, None, 3.0, None, None, 6.0]
    assert result.nan == {"x": [1, 3, 4], "count": [1, 1, 1]}


def test_nan_is_counted_per_bucket_and_an_all_nan_bucket_breaks_the_line(make_run):
    run = make_run()
    values = [float(i) for i in range(1000)]
    # 10 buckets of 1,000 points are 8 buckets of two 64-point pyramid blocks (128 points).
    for i in range(128, 256):
        values[i] = "NaN"  # bucket 1 is all NaN
    values[555] = "NaN"  # one NaN inside bucket 4
    series = log(run, "loss", values)

    result = series_downsample(series=series, buckets=10)

    assert result.downsampled and result.buckets == 8
    assert result.nan["count"] == [128, 1]
    assert None in result.points["y"]
    gap = result.points["y"].index(None)
    assert 128 <= result.points["x"][gap] <= 255
    assert all(y is None or math.isfinite(y) for y in result.points["y"])


def test_x_range_asks_for_a_finer_window(make_run):
    run = make_run()
    n = 50_000
    values = [0.0] * n
    values[20_010] = 9.0
    values[20_011] = -9.0
    series = log(run, "loss", values)

    coarse = series_downsample(series=series, buckets=100)
    fine = series_downsample(series=series, buckets=100, x_min=20_000, x_max=20_100)

    assert coarse.downsampled and coarse.in_range == n
    assert fine.in_range == 101 and not fine.downsampled
    assert fine.points["x"][0] == 20_000 and fine.points["x"][-1] == 20_100
    assert fine.points["y"][10:12] == [9.0, -9.0]
    assert fine.x_range == [20_000, 20_100]

    wider = series_downsample(series=series, buckets=100, x_min=10_000, x_max=40_000)
    assert wider.downsampled and wider.in_range == 30_001
    assert min(wider.points["x"]) >= 10_000 and max(wider.points["x"]) <= 40_000
    assert max(wider.points["y"]) == 9.0 and min(wider.points["y"]) == -9.0


def test_time_and_relative_x(make_run):
    run = make_run()
    times = [1_700_000_000.0 + i * 0.5 for i in range(10)]
    series = log(run, "loss", [float(i) for i in range(10)], times=times)

    by_time = series_downsample(series=series, x="time")
    relative = series_downsample(series=series, x="relative", x_min=1.0, x_max=2.0)

    assert by_time.points["x"] == times
    assert by_time.t0 == times[0]
    assert relative.points == {"x": [1.0, 1.5, 2.0], "y": [2.0, 3.0, 4.0]}


def test_repeated_steps_keep_logged_order(make_run):
    run = make_run()
    series = log(run, "loss", [1.0, 2.0, 3.0, 4.0], steps=[0, 1, 0, 1])
    result = series_downsample(series=series)
    assert result.points == {"x": [0, 1, 0, 1], "y": [1.0, 2.0, 3.0, 4.0]}


def test_bad_parameters_name_the_field(make_run):
    run = make_run()
    series = log(run, "loss", [1.0])
    with pytest.raises(InvalidInput) as exc:
        series_downsample(series=series, x="wall")
    assert exc.value.field == "x"
    with pytest.raises(InvalidInput) as exc:
        series_downsample(series=series, buckets=0)
    assert exc.value.field == "buckets"


# --- the REST endpoint -------------------------------------------------------------------------


def test_series_endpoint_downsamples_for_a_reader(cast, make_run):
    run = make_run()
    values = [0.0] * 20_000
    values[7_777] = 5.0
    log(run, "loss", values)

    response = cast.reader.client.get(
        f"/api/v1/runs/{run.run_id}/metrics/series", {"name": "loss", "buckets": 200}
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["name"] == "loss" and body["downsampled"] is True
    assert body["count"] == 20_000 and 100 <= body["buckets"] <= 200
    assert max(body["points"]["y"]) == 5.0
    assert len(body["points"]["x"]) <= 800


def test_series_endpoint_zooms_and_refuses_bad_input(cast, make_run):
    run = make_run()
    log(run, "loss", [float(i) for i in range(100)])
    url = f"/api/v1/runs/{run.run_id}/metrics/series"

    zoomed = cast.reader.client.get(url, {"name": "loss", "x_min": 10, "x_max": 12}).json()
    assert zoomed["points"]["x"] == [10, 11, 12]

    bad = cast.reader.client.get(url, {"name": "loss", "x_min": "soon"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "x_min"
    missing = cast.reader.client.get(url, {"name": "nope"})
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "name"
    assert cast.reader.client.get(url, {"name": "loss", "x": "wall"}).status_code == 400


def test_series_endpoint_is_404_for_an_outsider_and_401_anonymous(cast, make_run):
    run = make_run()
    log(run, "loss", [1.0])
    url = f"/api/v1/runs/{run.run_id}/metrics/series?name=loss"
    assert cast.outsider.client.get(url).status_code == 404
    assert cast.anonymous.get(url).status_code == 401


def test_the_group_by_path_gives_the_same_points_as_the_bucket_table_path(make_run, monkeypatch):
    """SQLite drives the aggregation from a TEMP table of bucket numbers; other databases (and
    SQLite without the primary key index) GROUP BY the bucket. Both must agree."""
    from runs import downsample

    run = make_run()
    values = [math.cos(i / 300) + (7.0 if i == 4321 else 0.0) for i in range(30_000)]
    values[100] = "NaN"
    series = log(run, "loss", values)
    first = series_downsample(series=series, buckets=300, x_min=50, x_max=29_000)
    whole = series_downsample(series=series, buckets=300)
    cache.clear()
    monkeypatch.setattr(downsample, "_bucket_table", lambda cursor: False)
    second = series_downsample(series=series, buckets=300, x_min=50, x_max=29_000)
    assert series_downsample(series=series, buckets=300).points == whole.points
    assert first.points == second.points and first.nan == second.nan
    assert first.buckets == second.buckets and 150 <= first.buckets <= 300
    assert max(first.points["y"]) == pytest.approx(7.0 + math.cos(4321 / 300))
