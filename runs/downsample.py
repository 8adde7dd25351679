"""Server-side downsampling of one scalar series for charts (M4: first, min, max, last).

The series' points are split into buckets of consecutive sequence numbers (the logged order,
the points' primary key), so every bucket is one contiguous index range and the database
aggregates them without loading a point into Python. Per bucket the database returns the count,
the NaN count, the min and the max; the bucket's first and last points are then read by primary
key. The chart line runs first → min → max → last (or max before min when the bucket falls), so a
spike of a single point in a million still shows at full height.

A requested x range (`x_min`/`x_max`, in step, epoch seconds or seconds since the series' first
point) filters points on that column before bucketing; buckets are still cut on `seq`, so a
series whose steps go back (a restarted loop) keeps its logged order. Series with no more points
in range than `RAW_FACTOR * buckets` come back raw.

NaN is stored as NULL: a bucket made only of NaN becomes a gap in the line, and every bucket or
raw point holding NaN is listed under `nan` (x and count) so the chart can mark it. ±inf cannot
be drawn: raw, they count as NaN; in a bucket they leave that bucket's min or max out.

Results are cached (Django's cache, a few minutes) under the series' count and update time, so
a new point makes a new key; zooming and redrawing a finished run's chart hit the cache.
"""

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import cache
from django.db import connection

from runs import limits, points, summary
from runs.budget import budget_seconds, query_budget
from runs.errors import InvalidInput, NotFound
from runs.models import MetricKind, MetricSeries

DEFAULT_BUCKETS = 1_000
MAX_BUCKETS = 5_000
RAW_FACTOR = 4  # M4 draws up to four points a bucket: fewer points than that come back raw
X_AXES = ("step", "time", "relative")
CACHE_SECONDS = 300

_TABLE = points.ROWS
_BUCKET_TABLE = "rs_chart_buckets"
_PK_INDEX = f"sqlite_autoindex_{_TABLE}_1"  # SQLite's index of the (series, seq) key
# Off only in tests, to check the pyramid's buckets against the same buckets over raw points.
USE_SUMMARY = True


@dataclass
class Downsampled:
    x: str
    count: int  # points in the whole series
    in_range: int  # points in the requested range
    buckets: int  # 0 when the points come back raw
    t0: float | None  # time of the series' first point (relative x is measured from it)
    points: dict[str, list] = field(default_factory=lambda: {"x": [], "y": []})
    nan: dict[str, list] = field(default_factory=lambda: {"x": [], "count": []})
    x_range: list[float] | None = None  # the requested range, in x units

    @property
    def downsampled(self) -> bool:
        return self.buckets > 0

    def as_json(self) -> dict[str, Any]:
        return {
            "x": self.x,
            "count": self.count,
            "in_range": self.in_range,
            "downsampled": self.downsampled,
            "buckets": self.buckets,
            "t0": self.t0,
            "x_range": self.x_range,
            "points": self.points,
            "nan": self.nan,
        }


def series_downsample(
    *,
    series: MetricSeries,
    x: str = "step",
    buckets: int = DEFAULT_BUCKETS,
    x_min: float | None = None,
    x_max: float | None = None,
) -> Downsampled:
    """At most ~4 × `buckets` points of a scalar series over [x_min, x_max], spikes kept."""
    if x not in X_AXES:
        raise InvalidInput(f"x: must be one of {', '.join(X_AXES)}.", field="x")
    if not 1 <= buckets <= MAX_BUCKETS:
        raise InvalidInput(f"buckets: must be between 1 and {MAX_BUCKETS}.", field="buckets")
    if series.kind != MetricKind.SCALAR:
        raise InvalidInput(
            f"metric {series.name!r} holds {series.kind} values; only scalar metrics chart.",
            field="name",
        )
    for name, value in (("x_min", x_min), ("x_max", x_max)):
        # Steps are 64-bit integers: a bound past them (x_max=1e19) overflowed the SQL parameter.
        if value is not None and not abs(value) <= limits.CHART_X_ABS_MAX:
            raise InvalidInput(
                f"{name}: {value!r} is out of range; chart ranges lie between "
                f"-{limits.CHART_X_ABS_MAX:g} and {limits.CHART_X_ABS_MAX:g} (CHART_X_ABS_MAX).",
                field=name,
            )
    stamp = series.updated_at.timestamp() if series.updated_at else 0
    key = f"rs-ds:{series.pk}:{series.count}:{stamp}:{x}:{buckets}:{x_min}:{x_max}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    windowed = x_min is not None or x_max is not None
    in_order = series.steps_sorted if x == "step" else series.times_sorted
    budget = contextlib.nullcontext()
    if windowed and not in_order:
        # Steps (or times) that went back: the window is not a seq range, so it scans the
        # series' points — 0.6-0.9 s of CPU on 10M, repeatable with new bounds by any reader
        # (50 runs a compare chart). Under the searches' budget, as the run lists are.
        bound = "x_min" if x_min is not None else "x_max"
        refusal = InvalidInput(
            f"{bound}: this series' {'steps' if x == 'step' else 'times'} go back, so a window "
            f"of it scans every point, and that took longer than {budget_seconds():g} s "
            "(QUERY_TIME_BUDGET_SECONDS); chart it whole, or narrow the window.",
            field=bound,
            code="query_too_expensive",
        )
        budget = query_budget(refusal=refusal)
    with budget:
        result = _downsample(series=series, x=x, buckets=buckets, x_min=x_min, x_max=x_max)
    cache.set(key, result, CACHE_SECONDS)
    return result


def _downsample(
    *, series: MetricSeries, x: str, buckets: int, x_min: float | None, x_max: float | None
) -> Downsampled:
    column = "step" if x == "step" else "time"
    t0 = _first_time(series)
    offset = t0 if (x == "relative" and t0 is not None) else 0.0
    result = Downsampled(x=x, count=series.count, in_range=0, buckets=0, t0=t0)
    if x_min is not None or x_max is not None:
        result.x_range = [x_min, x_max]
    if not series.count:
        return result

    # The x filter, as SQL on the stored column (relative x is stored time minus t0).
    where, params = "", []
    if x_min is not None:
        where += f" AND p.{column} >= %s"
        params.append(_bound(x_min + offset, column, up=True))
    if x_max is not None:
        where += f" AND p.{column} <= %s"
        params.append(_bound(x_max + offset, column, up=False))

    summarized = series.steps_sorted is not None
    sorted_column = series.steps_sorted if column == "step" else series.times_sorted
    with connection.cursor() as cursor:
        if where and sorted_column:
            # The column never goes down, so the window is one seq range: found by binary search
            # on the primary key instead of a scan of the series.
            seq_lo, seq_hi = 0, series.count - 1
            if x_min is not None:
                seq_lo = summary.seq_bound(
                    cursor, series_id=series.pk, column=column, count=series.count,
                    value=params[0], up=True,
                )  # fmt: skip
            if x_max is not None:
                seq_hi = summary.seq_bound(
                    cursor, series_id=series.pk, column=column, count=series.count,
                    value=params[-1], up=False,
                )  # fmt: skip
            in_range = max(0, seq_hi - seq_lo + 1)
            where, params = "", []
        elif where:
            relation, scan = points.source(series.pk)
            cursor.execute(
                f"SELECT COUNT(*), MIN(p.seq), MAX(p.seq) FROM {relation} p "
                f"WHERE p.series_id = %s{where}",
                [*scan, series.pk, *params],
            )
            in_range, seq_lo, seq_hi = cursor.fetchone()
        else:
            in_range, seq_lo, seq_hi = series.count, 0, series.count - 1
        result.in_range = in_range
        if not in_range:
            return result
        if in_range <= RAW_FACTOR * buckets:
            relation, scan = points.source(series.pk, seq_lo, seq_hi)
            cursor.execute(
                f"SELECT p.seq, p.step, p.value, p.time FROM {relation} p "
                f"WHERE p.series_id = %s AND p.seq >= %s AND p.seq <= %s{where} ORDER BY p.seq",
                [*scan, series.pk, seq_lo, seq_hi, *params],
            )
            _raw(result, cursor.fetchall(), x=x, offset=offset)
            return result
        level, width, origin = summary.layout(
            count=series.count, lo=seq_lo, hi=seq_hi, buckets=buckets
        )
        if level and summarized and not where and USE_SUMMARY:
            aggregates = summary.aggregate(
                cursor, series_id=series.pk, lo=seq_lo, hi=seq_hi, level=level, bucket_width=width
            )
        else:
            aggregates = _aggregate(cursor, series.pk, seq_lo, seq_hi, width, where, params, origin)
        ends = sorted({s for row in aggregates for s in (row[5], row[6])})
        by_seq = {}
        for chunk in range(0, len(ends), 500):
            by_seq.update(
                {row[0]: row for row in points.at(cursor, series.pk, ends[chunk : chunk + 500])}
            )
    result.buckets = len(aggregates)
    _m4(result, aggregates, by_seq, x=x, offset=offset)
    return result


def _aggregate(cursor, series_id, seq_lo, seq_hi, width, where, params, origin) -> list[tuple]:
    """(bucket, count, finite count, min, max, first seq, last seq) per non-empty bucket; bucket
    i holds seqs [origin + i × width, origin + (i + 1) × width) within [seq_lo, seq_hi]."""
    origin += (seq_lo - origin) // width * width  # the first bucket's start: i counts from 0
    # Finite values only, as the pyramid's blocks count them (runs/summary.py).
    finite = summary.finite_aggregate_sql("p.value")
    columns = f"COUNT(*), {finite}, MIN(p.seq), MAX(p.seq)"
    if connection.vendor == "sqlite" and _bucket_table(cursor):
        # SQLite sorts every row for a GROUP BY on an expression (~2× the scan). Driving the
        # join from a table of bucket numbers walks the primary key in order instead, one range
        # per bucket, and needs no sort. The table is TEMP: private to this connection. The
        # join order and index are pinned: with ANALYZE statistics the planner otherwise builds
        # an automatic index over the whole table (measured: 8 s instead of 40 ms).
        count = (seq_hi - origin) // width + 1
        if not where:
            # Unfiltered, a bucket's seqs are exactly its range (seq counts 0, 1, 2… per
            # series): its size and ends need no aggregate, which saves a third of the time.
            cursor.execute(
                f"SELECT b.i, {finite} "
                f"FROM temp.{_BUCKET_TABLE} b CROSS JOIN {_TABLE} p INDEXED BY {_PK_INDEX} "
                f"ON p.series_id = %s AND p.seq >= %s + b.i * %s AND p.seq < %s + (b.i + 1) * %s "
                f"AND p.seq >= %s AND p.seq <= %s WHERE b.i < %s GROUP BY b.i ORDER BY b.i",
                [series_id, origin, width, origin, width, seq_lo, seq_hi, count],
            )
            rows = []
            for i, finite, low, high in cursor.fetchall():
                first = max(seq_lo, origin + i * width)
                last = min(origin + (i + 1) * width - 1, seq_hi)
                rows.append((i, last - first + 1, finite, low, high, first, last))
            return rows
        cursor.execute(
            f"SELECT b.i, {columns} FROM temp.{_BUCKET_TABLE} b CROSS JOIN {_TABLE} p "
            f"INDEXED BY {_PK_INDEX} "
            f"ON p.series_id = %s AND p.seq >= %s + b.i * %s AND p.seq < %s + (b.i + 1) * %s "
            f"AND p.seq >= %s AND p.seq <= %s "
            f"WHERE b.i < %s{where} GROUP BY b.i ORDER BY b.i",
            [series_id, origin, width, origin, width, seq_lo, seq_hi, count, *params],
        )
    else:
        # Integer division of non-negative bigints truncates (= floors) on every backend.
        relation, scan = points.source(series_id, seq_lo, seq_hi)
        cursor.execute(
            f"SELECT (p.seq - %s) / %s AS b, {columns} FROM {relation} p "
            f"WHERE p.series_id = %s AND p.seq >= %s AND p.seq <= %s{where} "
            f"GROUP BY 1 ORDER BY 1",
            [origin, width, *scan, series_id, seq_lo, seq_hi, *params],
        )
    return cursor.fetchall()


def _bucket_table(cursor) -> bool:
    """Makes the TEMP table of bucket numbers; False if the primary key index is not there."""
    cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = %s", [_PK_INDEX])
    if not cursor.fetchone():
        return False
    cursor.execute(f"SELECT 1 FROM sqlite_temp_master WHERE name = '{_BUCKET_TABLE}'")
    if cursor.fetchone():
        return True
    cursor.execute(f"CREATE TEMP TABLE {_BUCKET_TABLE} (i INTEGER PRIMARY KEY)")
    cursor.execute(
        f"INSERT INTO temp.{_BUCKET_TABLE} (i) WITH RECURSIVE n(i) AS "
        f"(SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {MAX_BUCKETS}) SELECT i FROM n"
    )
    return True


def _first_time(series: MetricSeries) -> float | None:
    with connection.cursor() as cursor:
        first = points.at(cursor, series.pk, [0])
    return first[0][3] if first else None


def _bound(value: float, column: str, *, up: bool) -> float | int:
    if column != "step":
        return value
    return math.ceil(value) if up else math.floor(value)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _xof(row: tuple, x: str, offset: float) -> float:
    return row[1] if x == "step" else row[3] - offset


def _raw(result: Downsampled, rows: list[tuple], *, x: str, offset: float) -> None:
    xs, ys = result.points["x"], result.points["y"]
    for row in rows:
        xv, yv = _xof(row, x, offset), _finite(row[2])
        xs.append(xv)
        ys.append(yv)  # None: a gap in the line where the NaN is
        if yv is None:
            result.nan["x"].append(xv)
            result.nan["count"].append(1)


def _m4(
    result: Downsampled, aggregates: list[tuple], by_seq: dict, *, x: str, offset: float
) -> None:
    xs, ys = result.points["x"], result.points["y"]

    def add(xv, yv):
        if not xs or xs[-1] != xv or ys[-1] != yv:
            xs.append(xv)
            ys.append(yv)

    for _, count, finite_count, low, high, first_seq, last_seq in aggregates:
        first, last = by_seq.get(first_seq), by_seq.get(last_seq)
        if first is None or last is None:  # a hole in seq: only if rows were deleted by hand
            continue
        x0, x1 = _xof(first, x, offset), _xof(last, x, offset)
        middle = x0 + (x1 - x0) / 2 if x == "step" else (x0 + x1) / 2
        if count > finite_count:
            result.nan["x"].append(middle)
            result.nan["count"].append(count - finite_count)
        if not finite_count:
            add(middle, None)  # all NaN: break the line
            continue
        low, high = _finite(low), _finite(high)
        v0, v1 = _finite(first[2]), _finite(last[2])
        if v0 is not None:
            add(x0, v0)
        extremes = [low, high] if (v0 or 0) <= (v1 or 0) else [high, low]
        for value in extremes:
            if value is not None and value not in (v0, v1):
                add(middle, value)
        if v1 is not None:
            add(x1, v1)


def series_get(*, run, name: str) -> MetricSeries:
    """The run's series of that name, or NotFound naming the field."""
    series = run.metric_series.filter(name=name).first()
    if series is None:
        raise NotFound(f"Run {run.run_id} has no metric named {name!r}.", field="name")
    return series
