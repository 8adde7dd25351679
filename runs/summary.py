"""The min/max pyramid of a scalar series (MetricSummary), written at ingest, read by charts.

Level 1 cuts a series into blocks of `BASE` consecutive sequence numbers; each level above
groups `FANOUT` blocks of the level below. A block keeps the count, the count of finite
values (`non_nan`) and the min and max of its finite values: NaN (stored NULL) and ±inf are
left out, so a bucket holding +inf still draws its largest finite value and the chart marks
the non-finite ones (count − non_nan) as it marks NaN — as a raw window does. Before, ±inf
stayed in (as SQL's MIN/MAX keep it), hid the bucket's finite extreme and went unmarked
(migration 0017 sends such series back to `metrics_summarize`). Any seq range made of whole
blocks is aggregated from O(range / width) rows instead of its points.

A level exists for a series once the series is longer than one of its blocks (`levels`): short
series (most per-epoch metrics) carry no summary rows at all. When a batch makes a series cross
a level's width, that level's first blocks are built from the level below (or from the points,
for level 1), which is complete for everything logged before.

Writes are one `executemany` upsert per batch that merges a block's partial aggregate into the
stored one: a batch adds points at the end of its series under the series' row lock, so the
last block of a level is the only one ever merged into.
"""

import math
from collections.abc import Sequence
from operator import itemgetter

from django.db import connection

from runs import points
from runs.models import MetricSummary

BASE = 64  # points per level-1 block
FANOUT = 8  # blocks of level l per block of level l + 1
MAX_LEVEL = 12  # 64 × 8^11 ≈ 5.5e11 points: past any series this database can hold

_TABLE = MetricSummary._meta.db_table

# (bucket, count, non_nan, min, max): a block's aggregate, whole or partial.
Block = tuple[int, int, int, float | None, float | None]
_FIRST, _LAST = itemgetter(0), itemgetter(-1)


def width(level: int) -> int:
    """Points per block at `level` (level 0 is the points themselves)."""
    return BASE * FANOUT ** (level - 1) if level else 1


def levels(count: int) -> int:
    """The levels a series of `count` points keeps: those whose block it outgrew."""
    level = 0
    while level < MAX_LEVEL and width(level + 1) < count:
        level += 1
    return level


_INF = math.inf


def all_finite(values: Sequence) -> bool:
    """For numbers (no None): the sum first (C's float loop), each value only if it is not
    finite — an overflowing sum of finite values proves nothing."""
    return math.isfinite(sum(values)) or all(map(math.isfinite, values))


# Level 0's aggregate over the points, finite values only (the blocks' rule). ±inf as SQL
# literals: a cast on PostgreSQL, a number past a double's range (which reads as Inf) on SQLite.
def finite_aggregate_sql(column: str) -> str:
    """COUNT, MIN and MAX of `column`'s finite values, as one SELECT list."""
    inf = "'Infinity'::float8" if connection.vendor == "postgresql" else "9e999"
    finite = f"CASE WHEN {column} > -{inf} AND {column} < {inf} THEN {column} END"
    return f"COUNT({finite}), MIN({finite}), MAX({finite})"


def _low(a, b):
    return b if a is None or (b is not None and b < a) else a


def _high(a, b):
    return b if a is None or (b is not None and b > a) else a


def level1(start: int, values: Sequence, *, has_nan: bool | None = None) -> list[Block]:
    """Level-1 blocks of values whose first seq is `start` (None = NaN). `has_nan`: whether
    any value is not finite (None, ±inf), when the caller knows (ingest's validation does)."""
    out: list[Block] = []
    n = len(values)
    if has_nan is None:
        # C-speed passes: most batches hold neither NaN nor ±inf.
        has_nan = None in values or not all_finite(values)
    bucket = start // BASE
    lo, hi = 0, min(n, (bucket + 1) * BASE - start)
    if not has_nan and n:
        # The common case with no Python step per block: the blocks' slices, sorted, counted
        # and read at both ends by map() (~4× cheaper than the loop below).
        values = values if isinstance(values, list) else list(values)
        starts = [0, *range(hi, n, BASE)]
        chunks = list(map(values.__getitem__, map(slice, starts, [*starts[1:], n])))
        for _ in map(list.sort, chunks):
            pass
        counts = list(map(len, chunks))
        return list(
            zip(
                range(bucket, bucket + len(chunks)),
                counts,
                counts,
                map(_FIRST, chunks),
                map(_LAST, chunks),
                strict=True,
            )
        )
    while lo < n:
        chunk = values[lo:hi]
        if has_nan:
            chunk = [v for v in chunk if v is not None and -_INF < v < _INF]
        if chunk:
            # Sorting the 64-value copy beats min() + max(): list.sort compares floats natively,
            # min/max go through the generic comparison (measured ~2.5× faster per block).
            chunk.sort()
            out.append((bucket, hi - lo, len(chunk), chunk[0], chunk[-1]))
        else:
            out.append((bucket, hi - lo, 0, None, None))
        bucket += 1
        lo, hi = hi, min(n, hi + BASE)
    return out


def merge(blocks: list[Block], *, up: bool) -> list[Block]:
    """Blocks of the level above (`up`), or blocks with equal numbers joined; order kept."""
    out: list[Block] = []
    for bucket, count, non_nan, low, high in blocks:
        key = bucket // FANOUT if up else bucket
        if out and out[-1][0] == key:
            _, c, nn, lo, hi = out[-1]
            out[-1] = (key, c + count, nn + non_nan, _low(lo, low), _high(hi, high))
        else:
            out.append((key, count, non_nan, low, high))
    return out


# An upsert of many rows a statement (runs/services/metrics.py, _insert_rows) is INSERT_HEAD,
# the rows, then UPSERT_TAIL: a batch's rows never repeat a block, as one statement requires.
# New blocks are inserted with the head alone (or COPY on PostgreSQL), which costs PostgreSQL
# about a third of the upsert's time: only the one block a level that a batch continues is
# merged.
COLUMNS = "series_id, level, bucket, count, non_nan, min_value, max_value"
INSERT_HEAD = f"INSERT INTO {_TABLE} AS s ({COLUMNS})"
UPSERT_TAIL = (
    " ON CONFLICT (series_id, level, bucket) DO UPDATE SET "
    "count = s.count + excluded.count, non_nan = s.non_nan + excluded.non_nan, "
    "min_value = CASE WHEN s.min_value IS NULL OR excluded.min_value < s.min_value "
    "THEN excluded.min_value ELSE s.min_value END, "
    "max_value = CASE WHEN s.max_value IS NULL OR excluded.max_value > s.max_value "
    "THEN excluded.max_value ELSE s.max_value END"
)
_UPSERT = INSERT_HEAD + " VALUES (%s, %s, %s, %s, %s, %s, %s)" + UPSERT_TAIL


def batch_rows(
    cursor, *, series_id: int, old_count: int, values: Sequence, has_nan: bool | None = None
) -> tuple[list[tuple], list[tuple]]:
    """The rows for `values` appended to a series that had `old_count` points, each block once:
    (blocks that already hold points of the series, to merge into — at most one a level —,
    blocks that are new, to insert)."""
    new_count = old_count + len(values)
    top, before = levels(new_count), levels(old_count)
    if not top:
        return [], []
    if old_count and top > before and not before:
        # Level 1 starts now: its first block also holds the points logged before (< BASE).
        relation, scan = points.source(series_id, 0, old_count - 1)
        cursor.execute(
            f"SELECT p.value FROM {relation} p WHERE p.series_id = %s AND p.seq < %s "
            "ORDER BY p.seq",
            [*scan, series_id, old_count],
        )
        values = [row[0] for row in cursor.fetchall()] + list(values)
        old_count = 0
        has_nan = None
    rows = []
    blocks = level1(old_count, values, has_nan=has_nan)
    for level in range(1, top + 1):
        if level > 1:
            blocks = merge(blocks, up=True)
        if level == before and top > before and old_count:
            # The next level starts now: it needs this level's blocks from before the batch,
            # which are complete in the database (at most FANOUT + 1 rows).
            cursor.execute(
                f"SELECT bucket, count, non_nan, min_value, max_value FROM {_TABLE} "
                "WHERE series_id = %s AND level = %s ORDER BY bucket",
                [series_id, level],
            )
            rows.extend((series_id, level, *b) for b in blocks)
            blocks = merge([tuple(r) for r in cursor.fetchall()] + blocks, up=False)
            continue
        rows.extend((series_id, level, *b) for b in blocks)
    # A level kept before the batch has blocks for every seq below old_count, so its block that
    # holds seq old_count - 1, if not full, is the only one the batch shares with the database.
    merged: list[tuple] = []
    fresh: list[tuple] = []
    for row in rows:
        (merged if row[1] <= before and row[2] * width(row[1]) < old_count else fresh).append(row)
    return merged, fresh


def write(cursor, rows: list[tuple]) -> None:
    if rows:
        cursor.executemany(_UPSERT, rows)


def rebuild(*, series_id: int) -> tuple[int, bool, bool, float | None]:
    """Rebuilds a series' pyramid from its points (for series logged before the pyramid).

    Returns (count, steps sorted, times sorted, last time). Reads the points in chunks, so a
    10M-point series never sits in memory whole."""
    chunk = 200_000
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {_TABLE} WHERE series_id = %s", [series_id])
        count, steps_sorted, times_sorted = 0, True, True
        last_step = last_time = None
        pending: dict[int, list[Block]] = {}
        while True:
            relation, scan = points.source(series_id, count, count + chunk - 1)
            cursor.execute(
                f"SELECT p.step, p.value, p.time FROM {relation} p WHERE p.series_id = %s "
                "AND p.seq >= %s AND p.seq < %s ORDER BY p.seq",
                [*scan, series_id, count, count + chunk],
            )
            part = cursor.fetchall()
            if not part:
                break
            steps = [r[0] for r in part]
            times = [r[2] for r in part]
            if last_step is not None:
                steps_sorted = steps_sorted and steps[0] >= last_step
                times_sorted = times_sorted and times[0] >= last_time
            steps_sorted = steps_sorted and nondecreasing(steps)
            times_sorted = times_sorted and nondecreasing(times)
            last_step, last_time = steps[-1], times[-1]
            blocks = level1(count, [r[1] for r in part])
            for level in range(1, MAX_LEVEL + 1):
                if level > 1:
                    blocks = merge(blocks, up=True)
                pending[level] = merge(pending.get(level, []) + blocks, up=False)
            count += len(part)
            if len(part) < chunk:
                break
        rows = [
            (series_id, level, *b)
            for level in range(1, levels(count) + 1)
            for b in pending.get(level, [])
        ]
        write(cursor, rows)
    return count, steps_sorted, times_sorted, last_time


def flags_of_short(*, series_ids: list[int]) -> tuple[dict[int, tuple], list[int]]:
    """For series of at most BASE points (no pyramid rows): {id: (steps sorted, times sorted)}
    from one query for all of them, and the ids found longer (rebuild those)."""
    found: dict[int, list] = {pk: [] for pk in series_ids}
    marks = ", ".join(["%s"] * len(series_ids))
    relation, scan = points.source(series_ids, 0, BASE)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT p.series_id, p.step, p.time FROM {relation} p "
            f"WHERE p.series_id IN ({marks}) AND p.seq <= %s ORDER BY p.series_id, p.seq",
            [*scan, *series_ids, BASE],
        )
        for pk, step, t in cursor:
            found[pk].append((step, t))
    flags, longer = {}, []
    for pk, rows in found.items():
        if len(rows) > BASE:
            longer.append(pk)
            continue
        flags[pk] = (nondecreasing([r[0] for r in rows]), nondecreasing([r[1] for r in rows]))
    return flags, longer


def nondecreasing(xs: list) -> bool:
    # sorted() of a sorted list is one linear pass in C: cheaper than a Python loop per point.
    return xs == sorted(xs)


# --- reads -----------------------------------------------------------------------------------


def layout(*, count: int, lo: int, hi: int, buckets: int) -> tuple[int, int, int]:
    """(level, bucket width, origin) for `buckets` buckets over seqs [lo, hi].

    With a pyramid level no wider than a bucket, buckets are whole blocks of that level aligned
    on multiples of their width (origin 0), so each is a sum of stored blocks; the width is the
    smallest multiple of the block width that keeps at most `buckets` buckets. Otherwise
    (level 0) buckets are cut evenly from `lo`, as over raw points."""
    target = -(-(hi - lo + 1) // buckets)
    level = levels(count)
    while level and width(level) > target:
        level -= 1
    if not level:
        return 0, target, lo
    w = width(level)
    step = -(-target // w) * w
    while hi // step - lo // step + 1 > buckets:
        step += w
    return level, step, 0


def span(cursor, series_id: int, lo: int, hi: int, level: int) -> tuple:
    """(count, non_nan, min, max) of seqs [lo, hi] from blocks of `level` and below."""
    if lo > hi:
        return (0, 0, None, None)
    if level == 0:
        relation, scan = points.source(series_id, lo, hi)
        cursor.execute(
            f"SELECT COUNT(*), {finite_aggregate_sql('p.value')} FROM {relation} p "
            "WHERE p.series_id = %s AND p.seq >= %s AND p.seq <= %s",
            [*scan, series_id, lo, hi],
        )
        return tuple(cursor.fetchone())
    w = width(level)
    first, last = -(-lo // w), (hi + 1) // w - 1
    if first > last:
        return span(cursor, series_id, lo, hi, level - 1)
    cursor.execute(
        f"SELECT SUM(count), SUM(non_nan), MIN(min_value), MAX(max_value) FROM {_TABLE} "
        "WHERE series_id = %s AND level = %s AND bucket >= %s AND bucket <= %s",
        [series_id, level, first, last],
    )
    middle = cursor.fetchone()
    parts = [
        span(cursor, series_id, lo, first * w - 1, level - 1),
        (int(middle[0]), int(middle[1]), middle[2], middle[3]),
        span(cursor, series_id, (last + 1) * w, hi, level - 1),
    ]
    return _join(parts)


def _join(parts) -> tuple:
    count = non_nan = 0
    low = high = None
    for c, nn, lo, hi in parts:
        count, non_nan = count + c, non_nan + nn
        low, high = _low(low, lo), _high(high, hi)
    return (count, non_nan, low, high)


def aggregate(
    cursor, *, series_id: int, lo: int, hi: int, level: int, bucket_width: int
) -> list[tuple]:
    """(bucket, count, finite count, min, max, first seq, last seq) per bucket of the layout,
    from the pyramid: whole blocks grouped in SQL, the window's ragged ends from finer levels."""
    w = width(level)
    k = bucket_width // w
    first, last = -(-lo // w), (hi + 1) // w - 1
    found: dict[int, tuple] = {}
    if first <= last:
        cursor.execute(
            f"SELECT bucket / %s, SUM(count), SUM(non_nan), MIN(min_value), MAX(max_value) "
            f"FROM {_TABLE} WHERE series_id = %s AND level = %s AND bucket >= %s "
            "AND bucket <= %s GROUP BY 1 ORDER BY 1",
            [k, series_id, level, first, last],
        )
        found = {int(j): (int(c), int(nn), low, high) for j, c, nn, low, high in cursor}
        ends = [(lo, first * w - 1), ((last + 1) * w, hi)]
    else:
        ends = [(lo, hi)]
    for a, b in ends:
        if a <= b:
            j = a // bucket_width
            part = span(cursor, series_id, a, b, level - 1)
            found[j] = _join([found[j], part]) if j in found else part
    rows = []
    for j in sorted(found):
        count, non_nan, low, high = found[j]
        start, end = max(lo, j * bucket_width), min(hi, (j + 1) * bucket_width - 1)
        rows.append((j, count, non_nan, low, high, start, end))
    return rows


def seq_bound(cursor, *, series_id: int, column: str, count: int, value, up: bool) -> int:
    """In a series whose `column` never goes down: the first seq with column ≥ value (`up`),
    or the last seq with column ≤ value. A binary search by primary key: ~log2(count) reads.
    Returns count (or -1) when no point qualifies."""
    index = {"step": 1, "time": 3}[column]

    def at(seq: int):
        return points.at(cursor, series_id, [seq])[0][index]

    lo, hi = 0, count  # invariant (up): answer in [lo, hi]
    if up:
        while lo < hi:
            mid = (lo + hi) // 2
            if at(mid) >= value:
                hi = mid
            else:
                lo = mid + 1
        return lo
    lo, hi = -1, count - 1  # last seq with column <= value, in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if at(mid) <= value:
            lo = mid
        else:
            hi = mid - 1
    return lo
