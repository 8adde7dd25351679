"""Metrics: the hot path."""

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from itertools import chain
from typing import Any

from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models.expressions import RawSQL
from django.utils import timezone

from runs import limits, points, summary
from runs.errors import Conflict, InvalidInput
from runs.models import (
    MetricBatch,
    MetricEntry,
    MetricKind,
    MetricPoint,
    MetricSeries,
    MetricSummary,
    Run,
    RunStatus,
)
from runs.validation import CONTROL_CHARACTERS as _CONTROL
from runs.validation import check_name, check_stored_json, check_text, scalar_value


@dataclass
class _SeriesBatch:
    name: str
    kind: str
    steps: list
    values: list
    times: list
    # What validation learnt on its C-speed passes, so storing needs no pass of its own: a
    # value that is not finite (None for NaN, or ±inf), a None (the default) among the steps
    # or the times.
    has_nan: bool = True
    steps_have_none: bool = True
    times_have_none: bool = True


@dataclass(frozen=True)
class BatchResult:
    accepted: int
    duplicate: bool


_KIND_CHECKS = {
    MetricKind.STRING: (str, "a string"),
    MetricKind.LIST: (list, "a list"),
    MetricKind.ROW: (dict, "an object of column → value"),
    MetricKind.IMAGE: (str, "the run-file path of the image"),
}


def _parse_batch(metrics: Any) -> list[_SeriesBatch]:
    """Validates a whole batch before anything is written."""
    if not isinstance(metrics, list):
        raise InvalidInput("metrics: must be a list of series.", field="metrics")
    if len(metrics) > limits.MAX_SERIES_PER_BATCH:
        raise InvalidInput(
            f"metrics: {len(metrics)} series in one batch; the limit is "
            f"{limits.MAX_SERIES_PER_BATCH}. Split the batch.",
            field="metrics",
            code="batch_too_large",
        )
    parsed, total, seen = [], 0, set()
    for i, item in enumerate(metrics):
        field = f"metrics[{i}]"
        if not isinstance(item, dict):
            raise InvalidInput(f"{field}: must be an object.", field=field)
        name = check_name(item.get("name"), field=f"{field}.name", what="metric name")
        if name in seen:
            raise InvalidInput(
                f"{field}.name: {name!r} appears twice in the batch; send one entry per series.",
                field=f"{field}.name",
            )
        seen.add(name)
        kind = item.get("kind", MetricKind.SCALAR)
        if kind not in MetricKind.values:
            raise InvalidInput(
                f"{field}.kind: {kind!r} is not one of {', '.join(MetricKind.values)}.",
                field=f"{field}.kind",
            )
        values = item.get("values")
        if not isinstance(values, list) or not values:
            raise InvalidInput(
                f"{field}.values: must be a non-empty list.", field=f"{field}.values"
            )
        total += len(values)
        if total > limits.MAX_POINTS_PER_BATCH:
            raise InvalidInput(
                f"metrics: more than {limits.MAX_POINTS_PER_BATCH} points in one batch. "
                "Split it into smaller batches.",
                field="metrics",
                code="batch_too_large",
            )
        steps = _column(item, "steps", len(values), field)
        times = _column(item, "times", len(values), field)
        has_nan = True
        if kind == MetricKind.SCALAR:
            values, has_nan = _scalar_values(values, field=f"{field}.values")
        else:
            expected, label = _KIND_CHECKS[kind]
            for j, value in enumerate(values):
                if not isinstance(value, expected):
                    raise InvalidInput(
                        f"{field}.values[{j}]: a {kind} metric value must be {label}.",
                        field=f"{field}.values[{j}]",
                    )
                if kind == MetricKind.IMAGE:
                    _check_image_path(value, field=f"{field}.values[{j}]")
                else:
                    check_stored_json(
                        value,
                        field=f"{field}.values[{j}]",
                        max_bytes=limits.MAX_ENTRY_JSON_BYTES,
                    )
        steps_have_none = _check_steps(steps, field=f"{field}.steps")
        times, times_have_none = _check_times(times, field=f"{field}.times")
        parsed.append(
            _SeriesBatch(
                name, kind, steps, values, times, has_nan, steps_have_none, times_have_none
            )
        )
    return parsed


def _check_image_path(value: str, *, field: str) -> None:
    """An image value is a run-file path the Metrics tab links to: an empty one or one with a
    newline has no URL, and used to break the tab for every reader."""
    if not value or len(value) > limits.FILE_PATH_MAX_LENGTH or _CONTROL.search(value):
        raise InvalidInput(
            f"{field}: {value[:100]!r} is not a run-file path: give 1 to "
            f"{limits.FILE_PATH_MAX_LENGTH} printable characters (FILE_PATH_MAX_LENGTH), "
            "e.g. 'outputs/plot.png'.",
            field=field,
        )


def _column(item: dict, key: str, length: int, field: str) -> list | None:
    column = item.get(key)
    if column is None:
        return None
    if not isinstance(column, list) or len(column) != length:
        raise InvalidInput(
            f"{field}.{key}: must be a list as long as values ({length} entries).",
            field=f"{field}.{key}",
        )
    return column


_NUMBER_TYPES = frozenset({float, int})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _all_finite_numbers(column: list) -> bool:
    """True when every entry is a finite float or an int a database driver can send as one:
    C-speed passes (map, set, min, max), no Python loop, since this runs for every point of
    every batch."""
    types = set(map(type, column))
    if not types <= _NUMBER_TYPES:
        return False
    try:
        # A finite sum (C's float loop, ~3× cheaper than a call a value) means no NaN or ±inf;
        # an overflowing one proves nothing, so the values are then checked one by one.
        if not (math.isfinite(sum(column)) or all(map(math.isfinite, column))):
            return False
    except OverflowError:  # an int beyond a float's range
        return False
    # An int past 64 bits fits the float column but not the 64-bit integer SQLite's driver
    # makes of a Python int (OverflowError, a 500): such a column takes the path that stores
    # floats.
    return int not in types or _INT64_MIN <= min(column) and max(column) <= _INT64_MAX


def _scalar_values(values: list, *, field: str) -> tuple[list, bool]:
    """The values to store (NaN as None) and whether any is not finite (NaN or ±inf: the
    pyramid leaves both out of a block's min and max)."""
    if _all_finite_numbers(values):
        return values, False  # the common case, stored as given
    out = []
    for j, value in enumerate(values):
        if type(value) is bool:
            raise InvalidInput(
                f"{field}[{j}]: booleans are not metric values; log 0 or 1.", field=f"{field}[{j}]"
            )
        number = scalar_value(value, field=f"{field}[{j}]")
        out.append(None if math.isnan(number) else number)  # NaN is stored as NULL
    return out, None in out or not summary.all_finite(out)


_STEP_MIN, _STEP_MAX = -(2**63), 2**63 - 1  # the BigIntegerField's range


def _check_steps(steps: list | None, *, field: str) -> bool:
    """Refuses a step that is not a 64-bit whole number; True if some step is None."""
    if steps is None:
        return False
    if set(map(type, steps)) == {int} and min(steps) >= _STEP_MIN and max(steps) <= _STEP_MAX:
        return False  # the common case, checked without a Python loop
    for j, step in enumerate(steps):
        if not (step is None or (type(step) is int and _STEP_MIN <= step <= _STEP_MAX)):
            raise InvalidInput(
                f"{field}[{j}]: a step must be a whole number that fits in 64 bits.",
                field=f"{field}[{j}]",
            )
    return None in steps


def _check_times(times: list | None, *, field: str) -> tuple[list | None, bool]:
    """Refuses a time that is not seconds since the epoch within POINT_TIME_ABS_MAX; the times
    to store (whole numbers as floats, off the common path) and whether some time is None."""
    most = limits.POINT_TIME_ABS_MAX
    # The bound holds on the common path too: it used to be checked only beside a null, so
    # [1e308] was stored and [1e308, null] refused.
    if times is None or (_all_finite_numbers(times) and -most <= min(times) and max(times) <= most):
        return times, False
    out = []
    for j, t in enumerate(times):
        if not (type(t) is float or type(t) is int or t is None) or (
            # Not math.isfinite: it raises on an int beyond a float's range. NaN fails too.
            t is not None and not -most <= t <= most
        ):
            raise InvalidInput(
                f"{field}[{j}]: a time must be seconds since the epoch, between -{most:g} and "
                f"{most:g} (POINT_TIME_ABS_MAX).",
                field=f"{field}[{j}]",
            )
        out.append(float(t) if type(t) is int else t)
    return out, None in out


def run_log_batch(*, run: Run, metrics: Any, idempotency_key: str | None = None) -> BatchResult:
    """Stores a batch of metric values atomically; a batch whose key was seen is stored once."""
    if idempotency_key is not None:
        check_text(
            idempotency_key, field="idempotency_key", max_length=limits.IDEMPOTENCY_KEY_MAX_LENGTH
        )
    batches = _parse_batch(metrics)
    accepted = sum(len(b.values) for b in batches)
    # Batches starting the same series at once can deadlock on PostgreSQL (one holds a series'
    # row lock and waits for the other's insert of a new series, which waits for that lock):
    # the server fails one of them, which is then stored again from the start, as a whole.
    # Only a transaction of our own can be retried; inside a caller's, the error goes up.
    attempts = 1 if connection.in_atomic_block else DEADLOCK_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic():
                status = Run.objects.filter(pk=run.pk).values_list("status", flat=True).get()
                if status in (RunStatus.CANCEL_REQUESTED, RunStatus.CANCELED):
                    raise Conflict(
                        f"Run {run.run_id} is {status}; it takes no more metrics.",
                        code="run_canceled",
                    )
                if idempotency_key:
                    MetricBatch.objects.create(run=run, key=idempotency_key, points=accepted)
                _store_batches(run=run, batches=batches)
        except IntegrityError:
            if (
                idempotency_key
                and MetricBatch.objects.filter(run=run, key=idempotency_key).exists()
            ):
                return BatchResult(accepted=0, duplicate=True)
            raise
        except OperationalError as exc:
            if attempt < attempts and _deadlocked(exc):
                continue
            raise
        return BatchResult(accepted=accepted, duplicate=False)
    raise AssertionError("unreachable: the last attempt returns or raises")


DEADLOCK_ATTEMPTS = 3


def _deadlocked(exc: OperationalError) -> bool:
    """PostgreSQL's deadlock_detected (SQLSTATE 40P01), which it resolves by failing us."""
    return getattr(exc.__cause__, "sqlstate", None) == "40P01"


def _store_batches(*, run: Run, batches: list[_SeriesBatch]) -> None:
    names = [b.name for b in batches]

    def locked() -> dict[str, MetricSeries]:
        series = MetricSeries.objects.select_for_update().filter(run=run, name__in=names)
        return {s.name: s for s in series}

    existing = locked()
    # In name order: two batches starting the same new series insert them in one order, so
    # neither waits for a row the other inserted after one it waits for.
    new = [
        MetricSeries(run=run, name=b.name, kind=b.kind, steps_sorted=True, times_sorted=True)
        for b in sorted(batches, key=lambda b: b.name)
        if b.name not in existing
    ]
    if new:
        # Two batches may start the same series at once (MLflow's async logging sends them in
        # parallel): the loser's insert waits for the winner's commit and does nothing, and the
        # second read then locks the winner's row with its count, so no point is lost.
        MetricSeries.objects.bulk_create(new, ignore_conflicts=True)
        existing = locked()
    for b in batches:
        if existing[b.name].kind != b.kind:
            raise InvalidInput(
                f"metric {b.name!r} of run {run.run_id} holds {existing[b.name].kind} values; "
                f"it cannot take {b.kind} values. Log them under another name.",
                field="metrics",
                code="kind_mismatch",
            )

    now = time.time()
    cursor = connection.cursor()
    # Per scalar series: (series id, seqs, steps, values, times, whether a value may be NaN).
    point_columns: list[tuple[int, range, list, list, list, bool]] = []
    merged_blocks: list[tuple] = []
    new_blocks: list[tuple] = []
    entries: list[MetricEntry] = []
    for b in batches:
        series = existing[b.name]
        start = series.count
        n = len(b.values)
        seqs = range(start, start + n)
        # Only a column holding a None (the default) is copied: the common batch is stored
        # from the lists the JSON parser made, with no Python loop over its points.
        if b.steps is None:
            steps = list(seqs)
        elif b.steps_have_none:
            steps = [seq if s is None else s for seq, s in zip(seqs, b.steps, strict=True)]
        else:
            steps = b.steps
        if b.times is None:
            times = [now] * n
        elif b.times_have_none:
            times = [now if t is None else t for t in b.times]
        else:
            times = b.times
        if b.kind == MetricKind.SCALAR:
            sid = series.pk
            point_columns.append((sid, seqs, steps, b.values, times, b.has_nan))
            if series.steps_sorted is not None:  # None: from before the pyramid, not rebuilt yet
                merged, fresh = summary.batch_rows(
                    cursor, series_id=sid, old_count=start, values=b.values, has_nan=b.has_nan
                )
                merged_blocks += merged
                new_blocks += fresh
                # Windows by step or time read the pyramid only while the column never goes down.
                series.steps_sorted = (
                    series.steps_sorted
                    and (b.steps is None or summary.nondecreasing(steps))
                    and (not start or series.last_step is None or steps[0] >= series.last_step)
                )
                series.times_sorted = (
                    series.times_sorted
                    and (b.times is None or summary.nondecreasing(times))
                    and (not start or series.last_time is None or times[0] >= series.last_time)
                )
            series.last_time = times[-1]
            finite = [v for v in b.values if v is not None] if b.has_nan else b.values
            if finite:
                low, high = min(finite), max(finite)
                series.min_value = low if series.min_value is None else min(series.min_value, low)
                series.max_value = high if series.max_value is None else max(series.max_value, high)
            last = b.values[-1]
            series.last_value = None if last is None else last
        else:
            entries.extend(
                MetricEntry(series=series, seq=seq, step=step, value=value, time=t)
                for seq, step, value, t in zip(seqs, steps, b.values, times, strict=True)
            )
        series.count = start + n
        series.last_step = steps[-1]
    if point_columns:
        _insert_points(cursor, point_columns)
        _insert_rows(cursor, summary.INSERT_HEAD, summary.UPSERT_TAIL, 7, merged_blocks)
        _insert_blocks(cursor, new_blocks)
    if entries:
        MetricEntry.objects.bulk_create(entries)
    updated_at = connection.ops.adapt_datetimefield_value(timezone.now())
    # One statement for the batch's series, not one ORM update each (~0.3 ms apiece).
    cursor.executemany(
        _UPDATE_SERIES,
        [
            (
                s.count,
                s.last_value,
                s.min_value,
                s.max_value,
                s.last_step,
                s.last_time,
                s.steps_sorted,
                s.times_sorted,
                updated_at,
                s.pk,
            )
            for s in (existing[b.name] for b in batches)
        ],
    )
    cursor.close()


_UPDATE_SERIES = (
    f"UPDATE {MetricSeries._meta.db_table} SET count = %s, last_value = %s, min_value = %s, "
    "max_value = %s, last_step = %s, last_time = %s, steps_sorted = %s, times_sorted = %s, "
    "updated_at = %s WHERE id = %s"
)
_POINTS_HEAD = f"INSERT INTO {MetricPoint._meta.db_table} (series_id, seq, step, value, time)"
_COPY_BLOCKS = f"COPY {MetricSummary._meta.db_table} ({summary.COLUMNS}) FROM STDIN (FORMAT BINARY)"
_BLOCK_TYPES = ["int8", "int2", "int8", "int4", "int4", "float8", "float8"]


def _insert_blocks(cursor, rows: list[tuple]) -> None:
    """Pyramid blocks no stored block overlaps: COPY on PostgreSQL, multi-row INSERTs
    elsewhere (a few hundred rows a batch, where points are tens of thousands)."""
    if not rows:
        return
    if connection.vendor == "postgresql":
        with connection.wrap_database_errors, cursor.cursor.copy(_COPY_BLOCKS) as copy:
            copy.set_types(_BLOCK_TYPES)
            for row in rows:
                copy.write_row(row)
        return
    _insert_rows(cursor, summary.INSERT_HEAD, "", 7, rows)


# Rows per INSERT statement. A statement of 100 rows (500 parameters, far under SQLite's
# 32,766 and PostgreSQL's 65,535) costs SQLite ~40% less CPU per point than one-row
# executemany, which steps, resets and hands the GIL back and forth once per row.
ROWS_PER_STATEMENT = 100


def _insert_points(cursor, columns: list[tuple[int, range, list, list, list, bool]]) -> None:
    """The batch's points, given per series as (series id, seqs, steps, values, times, whether
    a value may be NaN): blocks on PostgreSQL (runs/points.py), multi-row INSERTs elsewhere."""
    if points.blocked():
        points.write_blocks(cursor, columns)
        return
    # The statements' parameters, row after row, laid out by slice assignment (C-speed, ~4×
    # cheaper than flattening zipped rows).
    flat: list = [None] * (5 * sum(len(seqs) for _, seqs, *_ in columns))
    at = 0
    for sid, seqs, steps, values, times, _ in columns:
        end = at + 5 * len(seqs)
        flat[at:end:5] = [sid] * len(seqs)
        flat[at + 1 : end : 5] = seqs
        flat[at + 2 : end : 5] = steps
        flat[at + 3 : end : 5] = values
        flat[at + 4 : end : 5] = times
        at = end
    _execute_rows(cursor, _POINTS_HEAD, "", 5, flat)


@cache
def _statement(head: str, tail: str, width: int, rows: int) -> str:
    one = "(" + ", ".join(["%s"] * width) + ")"
    return f"{head} VALUES {', '.join([one] * rows)}{tail}"


def _insert_rows(cursor, head: str, tail: str, width: int, rows: Iterable[tuple]) -> None:
    """`head VALUES (…), (…) tail` for rows of `width` columns, ROWS_PER_STATEMENT a statement.
    A statement never holds the same key twice (tail may be an upsert's ON CONFLICT)."""
    _execute_rows(cursor, head, tail, width, list(chain.from_iterable(rows)))


def _execute_rows(cursor, head: str, tail: str, width: int, flat: list) -> None:
    """_insert_rows for rows given flat: every row's `width` values, one row after another."""
    per = width * ROWS_PER_STATEMENT
    full = len(flat) - len(flat) % per
    if full:
        cursor.executemany(
            _statement(head, tail, width, ROWS_PER_STATEMENT),
            [flat[i : i + per] for i in range(0, full, per)],
        )
    if full < len(flat):
        cursor.execute(_statement(head, tail, width, (len(flat) - full) // width), flat[full:])


def series_summarize(*, series_ids: list[int] | None = None, force: bool = False) -> int:
    """Builds the chart pyramid of scalar series logged before it existed (steps_sorted NULL),
    or of the given series (`force` rebuilds those already built). Series are locked while
    they are read, so a batch logged meanwhile waits and then extends the new pyramid. Short
    series (no pyramid rows, only the ordering flags) go 500 to a transaction and a query; a
    long one has a transaction of its own. Returns the number of series done."""
    todo = MetricSeries.objects.filter(kind=MetricKind.SCALAR)
    if series_ids is not None:
        todo = todo.filter(pk__in=series_ids)
    if not force:
        todo = todo.filter(steps_sorted__isnull=True)
    ids = list(todo.order_by("pk").values_list("pk", flat=True))
    longer: list[int] = []
    # The points decide what is short, not the stored count: every series is first read 500 at
    # a time (at most BASE + 1 points each); the longer ones are then rebuilt one by one.
    for at in range(0, len(ids), 500):
        chunk = ids[at : at + 500]
        with transaction.atomic():
            list(MetricSeries.objects.select_for_update().filter(pk__in=chunk).values_list("pk"))
            if force:
                MetricSummary.objects.filter(series_id__in=chunk).delete()
            flags, grown = summary.flags_of_short(series_ids=chunk)
            # One UPDATE per combination of flags, not bulk_update: its CASE of 500 ids is
            # evaluated for each of the 500 rows. The last time comes from the last point.
            last_time = RawSQL(points.last_time_sql(f"{MetricSeries._meta.db_table}.id"), [])
            for steps_sorted, times_sorted in set(flags.values()):
                MetricSeries.objects.filter(
                    pk__in=[pk for pk, f in flags.items() if f == (steps_sorted, times_sorted)]
                ).update(steps_sorted=steps_sorted, times_sorted=times_sorted, last_time=last_time)
        longer += grown
    for pk in longer:
        with transaction.atomic():
            MetricSeries.objects.select_for_update().filter(pk=pk).values_list("pk").get()
            _, steps_sorted, times_sorted, last_time = summary.rebuild(series_id=pk)
            MetricSeries.objects.filter(pk=pk).update(
                steps_sorted=steps_sorted, times_sorted=times_sorted, last_time=last_time
            )
    return len(ids)
