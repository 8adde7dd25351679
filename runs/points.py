"""Where a scalar series' points are stored, and the SQL every reader goes through.

SQLite keeps a row a point (MetricPoint: series_id, seq, step, value, time; key (series_id,
seq)). PostgreSQL keeps blocks (PointBlock): block k of a series holds its seqs [64k, 64k + 63]
as three arrays in seq order, and only the series' last block is shorter. A row a point cost the
PostgreSQL backend ~1.1 s of CPU per million points, blocks ~0.1 s (bench/points_layout.py):
ingest on PostgreSQL was bound by it.

Readers never name a table: `source()` is a FROM-clause relation with MetricPoint's columns on
either database (on PostgreSQL the blocks, unnested), and `at()` reads single seqs (a chart's
bucket ends, a binary search). Writers go through `write_blocks()` (ingest, on PostgreSQL) and
`insert()` (anything else: demo data, benchmarks, tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import connection

from runs import pgcopy
from runs.models import MetricPoint, PointBlock

BLOCK = pgcopy.BLOCK
ROWS = MetricPoint._meta.db_table
BLOCKS = PointBlock._meta.db_table


def blocked() -> bool:
    """Whether this database keeps points in blocks (PostgreSQL) or a row each."""
    return connection.vendor == "postgresql"


def source(series: int | Sequence[int], lo: int | None = None, hi: int | None = None):
    """(SQL, params) of a relation with columns series_id, seq, step, value, time holding at
    least the points of `series` whose seq lies in [lo, hi] (None: unbounded), for a FROM
    clause: `FROM {sql} p`. The caller still filters by series and seq: on SQLite the relation
    is the whole table. Its params come before the caller's WHERE params."""
    if not blocked():
        return ROWS, []
    ids = [series] if isinstance(series, int) else list(series)
    where = ["b.series_id = %s" if len(ids) == 1 else "b.series_id = ANY(%s)"]
    params: list = [ids[0] if len(ids) == 1 else ids]
    if lo is not None:
        where.append("b.block >= %s")
        params.append(max(0, lo) // BLOCK)
    if hi is not None:
        where.append("b.block <= %s")
        params.append(max(-1, hi) // BLOCK)
    sql = (
        f"(SELECT b.series_id, b.block * {BLOCK} + o.i - 1 AS seq, o.step, o.value, o.time "
        f"FROM {BLOCKS} b CROSS JOIN LATERAL unnest(b.steps, b.vals, b.times) "
        f"WITH ORDINALITY AS o(step, value, time, i) WHERE {' AND '.join(where)})"
    )
    return sql, params


def at(cursor, series_id: int, seqs: Sequence[int]) -> list[tuple]:
    """(seq, step, value, time) of the points of a series at `seqs` (those that exist), in no
    particular order: a lookup by key each, not a scan between them."""
    seqs = [s for s in seqs if s >= 0]  # none below 0; PostgreSQL's arr[0] would be a NULL row
    if not seqs:
        return []
    if not blocked():
        marks = ", ".join(["%s"] * len(seqs))
        cursor.execute(
            f"SELECT seq, step, value, time FROM {ROWS} WHERE series_id = %s AND seq IN ({marks})",
            [series_id, *seqs],
        )
        return cursor.fetchall()
    cursor.execute(
        f"SELECT w.seq, b.steps[w.i], b.vals[w.i], b.times[w.i] FROM {BLOCKS} b "
        f"JOIN (SELECT s AS seq, s / {BLOCK} AS block, (s %% {BLOCK})::int + 1 AS i "
        "FROM unnest(%s::int8[]) AS s) w ON b.block = w.block "
        "WHERE b.series_id = %s AND w.i <= cardinality(b.vals)",
        [list(seqs), series_id],
    )
    return cursor.fetchall()


def read(series: int | Sequence[int]) -> list[tuple]:
    """Every stored (series_id, seq, step, value, time) of `series`, by series and seq."""
    ids = [series] if isinstance(series, int) else list(series)
    if not ids:
        return []
    relation, params = source(ids)
    marks = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT p.series_id, p.seq, p.step, p.value, p.time FROM {relation} p "
            f"WHERE p.series_id IN ({marks}) ORDER BY p.series_id, p.seq",
            [*params, *ids],
        )
        return cursor.fetchall()


def last_time_sql(series_column: str) -> str:
    """A scalar subquery: the time of the last point of the series whose id is
    `series_column` (NULL for a series without points)."""
    if not blocked():
        return (
            f"(SELECT time FROM {ROWS} WHERE series_id = {series_column} ORDER BY seq DESC LIMIT 1)"
        )
    return (
        f"(SELECT times[cardinality(times)] FROM {BLOCKS} WHERE series_id = {series_column} "
        "ORDER BY block DESC LIMIT 1)"
    )


# --- writes ----------------------------------------------------------------------------------

_COPY = f"COPY {BLOCKS} ({pgcopy.COLUMNS}) FROM STDIN (FORMAT BINARY)"
_APPEND = (
    f"UPDATE {BLOCKS} SET steps = steps || %s::int8[], vals = vals || %s::float8[], "
    "times = times || %s::float8[] WHERE series_id = %s AND block = %s "
    "AND cardinality(vals) = %s"
)


class BlocksOutOfStep(RuntimeError):
    """A series' last block does not hold the points its count says: appending would shift
    every point after it. The batch is rolled back whole."""


def write_blocks(cursor, columns: Iterable[tuple[int, range, list, list, list, bool]]) -> None:
    """PostgreSQL: a batch's points, per series (series id, seqs, steps, values, times, whether
    a value may be NaN), appended to the series' blocks. The points that complete a series'
    last block are appended to its arrays (one UPDATE a series); the rest are new blocks, by
    binary COPY. The caller holds the series' row locks: nothing else writes their blocks."""
    appends: list[tuple] = []
    copies: list[tuple] = []
    for sid, seqs, steps, values, times, has_nan in columns:
        start, n = seqs.start, len(seqs)
        head = min(n, -start % BLOCK)
        if head:  # at most 63 points: floats as floats (psycopg wants one type a list)
            appends.append(
                (
                    steps[:head],
                    [None if v is None else float(v) for v in values[:head]],
                    [float(t) for t in times[:head]],
                    sid,
                    start // BLOCK,
                    start % BLOCK,  # the points the block must hold already
                )
            )
        if head < n:
            if head:
                steps, values, times = steps[head:], values[head:], times[head:]
            copies.append((sid, start + head, steps, values, times, has_nan))
    if appends:
        cursor.executemany(_APPEND, appends)
        if cursor.rowcount != len(appends):  # psycopg: the sum over the statements
            raise BlocksOutOfStep(
                f"{len(appends) - cursor.rowcount} of the series {[a[3] for a in appends]} "
                "lack the last block their count says they hold"
            )
    if copies:
        with connection.wrap_database_errors, cursor.cursor.copy(_COPY) as copy:
            copy.write(pgcopy.HEADER)
            for *row, has_nan in copies:
                copy.write(pgcopy.block_rows(*row, has_nan=has_nan))
            copy.write(pgcopy.TRAILER)


def insert(series: Iterable[tuple[int, int, Sequence, Sequence, Sequence]]) -> None:
    """Stores points as ingest does, in this database's layout: per series (series id, the
    seq of its first new point — the series' count before them —, steps, values, times; None
    for NaN). For what writes points outside ingest (benchmarks, tests); the caller keeps the
    series' count and pyramid right."""
    columns = [
        (sid, range(start, start + len(values)), list(steps), list(values), list(times), True)
        for sid, start, steps, values, times in series
    ]
    with connection.cursor() as cursor:
        if blocked():
            write_blocks(cursor, columns)
            return
        cursor.executemany(
            f"INSERT INTO {ROWS} (series_id, seq, step, value, time) VALUES (%s, %s, %s, %s, %s)",
            [
                row
                for sid, *cols, _ in columns
                for row in zip([sid] * len(cols[0]), *cols, strict=True)
            ],
        )
