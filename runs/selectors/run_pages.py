"""The run list at a million runs: a page of sorted run ids, the position the next page starts
from (keyset), and the pager's total — each costing about the same on 1,000 or 1,000,000 runs.

A page sorted by a key with an index behind it (a metric's last/min/max, a tag, a property,
`created`, or the API's default newest-first) **walks the sort order**: it reads candidates
from that index in the list's order, a window at a time, and keeps those that match the
filters, checked one probe per candidate (RunFilter.probe_qs: tags, properties and metrics as
correlated EXISTS). A tag filter that one run in five passes needs ~500 candidates for a page
of 100, whatever the size of the workspace. Runs missing the sort value come after the others
(the list's rule: missing values last either way), walked the same way by id.

When the filters are rare among the top of the sort order (fewer matches than the page needs
in WALK_MAX candidates), or the sort has no index to walk, or the match set is small anyway
(the pager's exact count is at most LIST_TOTAL_MAX), the page is cut from the sorted matching
set instead — one query, as selectors.run_sort does; IN subqueries narrow it from the
(key, value, run) indexes.

The total is exact up to LIST_TOTAL_MAX (a bounded COUNT); past it the bound ("more than
1,000") — not PostgreSQL's planner estimate, whose statistics span every workspace.
docs/architecture.md, "Run lists at a million runs", has the measurements.
"""

import base64
import binascii
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import (
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    FilteredRelation,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Coalesce, Now
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from runs import limits
from runs.errors import InvalidInput
from runs.models import MetricSeries, Run, RunProperty, RunTag
from runs.selectors import RunPage, run_rows, scalar_metric_names, with_run_details

WALK_FIRST = 1_000  # candidates in the first window; later windows grow fourfold
WALK_WINDOW_MAX = 16_000  # candidates in one window at most
WALK_MAX = 50_000  # candidates examined before sorting the whole matching set instead


@dataclass(frozen=True)
class RunSet:
    """One search's matching runs, twice: `members` filters with IN subqueries (for sorting or
    counting the whole set), `probe` with correlated EXISTS (for checking a few candidates).
    Both are unordered querysets over the same runs; `workspace_id` bounds the walks."""

    members: QuerySet[Run]
    probe: QuerySet[Run]
    workspace_id: int

    def filter(self, *args, **kwargs) -> "RunSet":
        return RunSet(
            self.members.filter(*args, **kwargs),
            self.probe.filter(*args, **kwargs),
            self.workspace_id,
        )


@dataclass(frozen=True)
class Order:
    """A single-key sort: `field` a runs.query.Field, or None for the run id (the REST API's
    newest first, whose cursor stays a bare id)."""

    key: str
    field: Any
    descending: bool


ID_ORDER = Order("-id", None, True)


def run_order(sort: str) -> Order:
    """`-metrics.loss.max`, `tags.team`, `created` …; raises InvalidInput on field `sort`."""
    from runs import query

    key = (sort or "-created").strip()
    descending = key.startswith("-")
    try:
        field = query.parse_field(key.lstrip("-+"))
    except query.QueryError as exc:
        raise InvalidInput(f"sort: {exc.message}", field="sort") from None
    return Order(("-" if descending else "") + field.key, field, descending)


Position = tuple[Any, int]  # (the sort value, or None among runs missing it; the run's pk)


@dataclass
class IdPage:
    ids: list[int]
    has_next: bool
    after: Position | None  # the last id's position when there is a next page


@dataclass(frozen=True)
class RunCount:
    """How many runs match: `relation` "eq" (counted) or "gte" (at least `value`, past
    LIST_TOTAL_MAX). "about" (an estimate) is still understood but no longer answered."""

    value: int
    relation: str

    @property
    def is_estimate(self) -> bool:
        return self.relation != "eq"


# ---------------------------------------------------------------------------------------------
# The total


def run_count(*, runs: RunSet, cap: int | None = None) -> RunCount:
    """Exact up to `cap`; past it "at least cap + 1".

    On SQLite, first the newest COUNT_SCAN runs of the workspace are counted up to cap + 1,
    one probe each (`probe`): a filter that one run in five passes is settled after ~5,000
    runs, where the IN form would first collect all 200,000 matching ids on 1M runs (an OR
    of two tag values, 400,000: 460 ms on SQLite). Only a sparser match set in a bigger workspace is
    then counted from the IN form (`members`, a COUNT over LIMIT cap + 1): its subqueries
    are small then."""
    cap = limits.LIST_TOTAL_MAX if cap is None else cap
    if connection.vendor == "sqlite":
        counted, covered = _newest_count(runs, cap)
    else:
        # PostgreSQL plans the bounded COUNT as a semi-join that stops at cap + 1 (5–20 ms on
        # 1M runs), but the newest-runs query above as a hash over every matching tag (0.9 s).
        counted, covered = -1, False
    if counted <= cap and not covered:
        counted = runs.members.order_by()[: cap + 1].count()
    if counted <= cap:
        return RunCount(counted, "eq")
    # Not PostgreSQL's planner estimate: its statistics are the whole table's, every
    # workspace's, so "about N" for a filter moved with other workspaces' runs — planting
    # LIST_TOTAL_MAX + 1 runs with a guessed tag told whether another workspace used it
    # (tests/security/test_scale_out_attacks.py). A bound says only what was counted here.
    return RunCount(cap + 1, "gte")


COUNT_SCAN = 20_000  # the newest runs counted one probe each before the IN form is used


def _newest_count(runs: RunSet, cap: int) -> tuple[int, bool]:
    """(matches among the newest COUNT_SCAN runs, up to cap + 1; whether those are all the
    workspace's runs) in one query."""
    workspace_runs = Run.objects.filter(workspace_id=runs.workspace_id).order_by()
    floor = workspace_runs.order_by("-pk").values("pk")[COUNT_SCAN - 1 : COUNT_SCAN]
    window = runs.probe.filter(pk__gte=Coalesce(Subquery(floor), 0)).order_by().values("pk")
    matched, matched_params = window[: cap + 1].query.sql_with_params()
    seen, seen_params = workspace_runs.values("pk")[:COUNT_SCAN].query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT COUNT(*) FROM ({matched}) AS matched), "
            f"(SELECT COUNT(*) FROM ({seen}) AS seen)",
            [*matched_params, *seen_params],
        )
        counted, total = cursor.fetchone()
    return counted, total < COUNT_SCAN


def count_number(count: RunCount | None) -> str:
    """What the page shows: "1,234", "about 210,000" or "more than 10,000" — never a false
    exact number."""
    if count is None:
        return ""
    if count.relation == "gte":
        return f"more than {count.value - 1:,}"
    if count.relation == "about":
        return f"about {_rounded(count.value):,}"
    return f"{count.value:,}"


def count_words(count: RunCount | None, noun: str = "run") -> str:
    """The pager's words: "1 run", "1,234 runs", "about 210,000 runs", "more than 10,000 runs"."""
    if count is None:
        return ""
    plural = noun if count.value == 1 and count.relation == "eq" else noun + "s"
    return f"{count_number(count)} {plural}"


def _rounded(value: int) -> int:
    """Two significant figures: an estimate is not precise to the run."""
    if value < 100:
        return value
    scale = 10 ** (int(math.log10(value)) - 1)
    return round(value / scale) * scale


# ---------------------------------------------------------------------------------------------
# A page of ids


def run_page_ids(
    *,
    runs: RunSet,
    order: Order,
    offset: int = 0,
    limit: int = 100,
    after: Position | None = None,
    count: RunCount | None = None,
) -> IdPage:
    """The page's run ids in the list's order: `offset` rows on, or the rows after a keyset
    position. With `count` exact (a small match set) the page is cut from the sorted set at
    once; otherwise the sort order is walked (module docstring)."""
    need = offset + limit + 1
    rows = None
    if count is None or count.relation != "eq":
        rows = _walked(runs, order, need, after)
    if rows is None:
        rows = _sorted_rows(runs.members, order, after, offset, need)
    else:
        rows = rows[offset:]
    has_next = len(rows) > limit
    rows = rows[:limit]
    return IdPage([pk for _, pk in rows], has_next, rows[-1] if has_next else None)


def run_page(
    *,
    runs: RunSet,
    order: Order,
    columns: list,
    offset: int = 0,
    limit: int = 100,
    after: Position | None = None,
    count: RunCount | None = None,
) -> tuple[RunPage, IdPage]:
    """One page of the flat list with its column values (selectors.run_rows), and its ids'
    page (whose `after` is where the next page starts)."""
    ids = run_page_ids(runs=runs, order=order, offset=offset, limit=limit, after=after, count=count)
    # Ids first, then the rows: joining the details (experiment, submitter, parent) into the
    # sorted query makes SQLite's planner give up the index order it would otherwise use.
    by_id = {run.pk: run for run in with_run_details(Run.objects.filter(pk__in=ids.ids))}
    found = [by_id[pk] for pk in ids.ids if pk in by_id]
    names = scalar_metric_names(runs=found) if found else []
    page = RunPage(rows=run_rows(runs=found, columns=columns), has_next=ids.has_next,
                   metric_names=names)  # fmt: skip
    return page, ids


def _walked(runs: RunSet, order: Order, need: int, after: Position | None) -> list | None:
    """`need` rows by walking the sort's index, then the runs missing the value; None when the
    matches are too rare to find this way (or the sort has no index to walk)."""
    source = _walk_source(runs, order)
    if source is None:
        return None
    rows: list[Position] = []
    if after is None or after[0] is not None:
        found = _walk(source, runs.probe, order.descending, need, after)
        if found is None:
            return None
        rows, exhausted = found
        if len(rows) >= need or not exhausted:
            return rows[:need]
        after = None
    if order.field is None or order.field.kind == "attribute":
        return rows  # run columns are never missing (created is set on every run)
    # The runs without the value, by id in the sort's direction (the list's tie-break).
    missing = runs.probe.filter(~Exists(source.filter(**{source.run_column: OuterRef("pk")})))
    by_id = _RunsById(runs.workspace_id)
    tail = _walk(by_id, missing, order.descending, need - len(rows), after)
    if tail is None:
        return None
    return rows + [(None, pk) for _, pk in tail[0]]


class _Source:
    """Rows (sort value, run pk) in index order, without missing values."""

    def __init__(self, queryset: QuerySet, value_column: str, run_column: str):
        self.queryset, self.value_column, self.run_column = queryset, value_column, run_column

    def filter(self, **kwargs) -> QuerySet:
        return self.queryset.filter(**kwargs)

    def window(self, descending: bool, after: Position | None, size: int) -> QuerySet:
        """The next `size` rows after `after`, as a (value, run pk) values_list."""
        rows = self.queryset
        if after is not None:
            value, pk = after
            # `value <= v` first: a plain range both planners start the index scan from;
            # the OR then drops the few rows equal to v already passed.
            lt, le = ("lt", "lte") if descending else ("gt", "gte")
            rows = rows.filter(
                Q(**{f"{self.value_column}__{le}": value})
                & (
                    Q(**{f"{self.value_column}__{lt}": value})
                    | Q(**{f"{self.run_column}__{lt}": pk})
                )
            )
        columns = (F(self.value_column), F(self.run_column))
        ordering = [c.desc() if descending else c.asc() for c in columns]
        return rows.order_by(*ordering).values_list(*(c.name for c in columns))[:size]


class _RunsById(_Source):
    def __init__(self, workspace_id: int):
        super().__init__(Run.objects.filter(workspace_id=workspace_id), "pk", "pk")

    def window(self, descending: bool, after: Position | None, size: int) -> QuerySet:
        rows = self.queryset
        if after is not None:
            rows = rows.filter(pk__lt=after[1]) if descending else rows.filter(pk__gt=after[1])
        return rows.order_by("-pk" if descending else "pk").values_list("pk", "pk")[:size]


def _walk_source(runs: RunSet, order: Order) -> _Source | None:
    field = order.field
    if field is None:
        return _RunsById(runs.workspace_id)
    if field.kind == "metric":
        column = field.metric_column
        series = MetricSeries.objects.filter(name=field.name, **{f"{column}__isnull": False})
        return _Source(series, column, "run_id")
    if field.kind in ("tag", "property"):
        model = RunTag if field.kind == "tag" else RunProperty
        values = model.objects.filter(key=field.name, value__isnull=False)
        return _Source(values, "value", "run_id")
    if field.name == "created":
        return _Source(Run.objects.filter(workspace_id=runs.workspace_id), "created_at", "pk")
    return None  # no index to walk: the sorted set it is


def _walk(
    source: _Source, probe: QuerySet[Run], descending: bool, need: int, after: Position | None
) -> tuple[list[Position], bool] | None:
    """Candidates from `source` a window at a time, kept when `probe` has them; stops at
    `need` matches ((rows, False)), at the end of the source ((rows, True)), or None after
    WALK_MAX candidates without enough."""
    found: list[Position] = []
    examined, size = 0, WALK_FIRST
    while examined < WALK_MAX:
        candidates = source.window(descending, after, size)
        window = list(candidates)
        if not window:
            return found, True
        # The window again as a subquery, not its ids as parameters: SQLite reads it from
        # the index (no bound-parameter limit, no per-id conversion in Python).
        ids = Subquery(candidates.values_list(source.run_column, flat=True))
        matching = set(probe.filter(pk__in=ids).values_list("pk", flat=True))
        found += [row for row in window if row[1] in matching]
        if len(found) >= need:
            return found[:need], False
        if len(window) < size:
            return found, True
        examined += len(window)
        after = window[-1]
        size = min(size * 4, WALK_WINDOW_MAX, WALK_MAX - examined) or 1
    return None


def _sort_expression(runs: QuerySet[Run], order: Order) -> tuple[QuerySet[Run], Any]:
    field = order.field
    if field is None:
        return runs, F("pk")
    if field.kind == "metric":
        runs = runs.annotate(
            page_sort=FilteredRelation("metric_series", condition=Q(metric_series__name=field.name))
        )
        return runs, F(f"page_sort__{field.metric_column}")
    if field.kind in ("tag", "property"):
        relation = "tags" if field.kind == "tag" else "properties"
        runs = runs.annotate(
            page_sort=FilteredRelation(relation, condition=Q(**{f"{relation}__key": field.name}))
        )
        return runs, F("page_sort__value")
    if field.name == "duration":
        duration = Coalesce(F("ended_at"), Now()) - F("started_at")
        return runs, ExpressionWrapper(duration, output_field=DurationField())
    from runs.query import ATTRIBUTES

    return runs, F(ATTRIBUTES[field.name].lookup)


def _sorted_rows(
    runs: QuerySet[Run], order: Order, after: Position | None, offset: int, need: int
) -> list[Position]:
    """rows [offset, need) of the whole matching set sorted in the database (missing values
    last either way, ties by id), after a keyset position if one is given."""
    runs, expression = _sort_expression(runs, order)
    runs = runs.annotate(page_value=expression)
    if after is not None:
        value, pk = after
        lt = "lt" if order.descending else "gt"
        if value is None:  # within the missing values: only later ids
            runs = runs.filter(Q(page_value__isnull=True) & Q(**{f"pk__{lt}": pk}))
        else:  # later values, the same value with a later id, then every missing one
            later = Q(**{f"page_value__{lt}": value}) | Q(page_value__isnull=True)
            runs = runs.filter(later | (Q(page_value=value) & Q(**{f"pk__{lt}": pk})))
    value = F("page_value")
    if order.descending:
        runs = runs.order_by(value.desc(nulls_last=True), "-pk")
    else:
        runs = runs.order_by(value.asc(nulls_last=True), "pk")
    return list(runs.values_list("page_value", "pk")[offset:need])


# ---------------------------------------------------------------------------------------------
# Cursors: a position as an opaque string


def cursor_encode(order: Order, position: Position) -> str:
    """The id alone for the id order (what the API always answered); otherwise the sort key
    and the position as base64 JSON, so a cursor is only read back under the same sort."""
    value, pk = position
    if order.field is None:
        return str(pk)
    if isinstance(value, datetime):
        value = value.isoformat()
    elif isinstance(value, timedelta):
        value = value.total_seconds()
    text = json.dumps([order.key, value, pk], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def cursor_decode(order: Order, cursor: str) -> Position | None:
    """The position a cursor holds; None for none; InvalidInput on field `cursor` otherwise."""
    if not cursor:
        return None
    if order.field is None:
        if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 18:
            raise _bad_cursor("a next_cursor of this list without `sort`")
        return (int(cursor), int(cursor))
    if len(cursor) > CURSOR_MAX_LENGTH:
        raise _bad_cursor("the next_cursor of a page with the same sort")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key, value, pk = json.loads(text)
    except (binascii.Error, ValueError, TypeError):
        raise _bad_cursor("the next_cursor of a page with the same sort") from None
    if key != order.key:
        raise _bad_cursor(f"a next_cursor of a page sorted by {order.key!r}")
    # Within a 64-bit integer: a bigger one is an OverflowError in the database driver.
    if not isinstance(pk, int) or isinstance(pk, bool) or not 0 <= pk < 2**63:
        raise _bad_cursor("the next_cursor of a page with the same sort")
    return (_position_value(order, value), pk)


CURSOR_MAX_LENGTH = 2_000  # a tag value of a few hundred characters, base64'd, fits


def _position_value(order: Order, value: Any) -> Any:
    if value is None:
        return None
    field = order.field
    kind = field.kind
    if kind == "attribute":
        from runs.query import ATTRIBUTES

        kind = ATTRIBUTES[field.name].kind
    if kind == "metric":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)  # ±inf are summaries too (json reads Infinity)
    elif kind == "datetime":
        try:
            moment = parse_datetime(value) if isinstance(value, str) else None
        except ValueError:
            moment = None
        if moment is not None and limits.DATE_MIN <= moment.date().isoformat() <= limits.DATE_MAX:
            return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)
    elif kind == "duration":
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return timedelta(seconds=max(-1, min(value, limits.DURATION_MAX_DAYS * 86400)))
    elif isinstance(value, str) and "\x00" not in value and _encodable(value):
        return value
    raise _bad_cursor("the next_cursor of a page with the same sort")


def _encodable(text: str) -> bool:
    """JSON may carry a lone surrogate (\\ud800), which no database driver can send."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _bad_cursor(what: str) -> InvalidInput:
    return InvalidInput(f"cursor: not a position in this list; pass {what}.", field="cursor")
