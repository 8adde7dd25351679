"""Reads. Filtering, sorting and paging happen in the database."""

import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import (
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    FilteredRelation,
    Max,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Window,
)
from django.db.models.functions import Coalesce, Now, RowNumber

from runs import limits
from runs import points as stored_points
from runs.errors import InvalidInput, NotFound
from runs.models import (
    AlertDelivery,
    AlertRule,
    CustomView,
    Experiment,
    Membership,
    MetricEntry,
    MetricKind,
    MetricSeries,
    Run,
    RunFile,
    RunProperty,
    RunStatus,
    RunTag,
    StatusEvent,
    Workspace,
)
from runs.selectors.compute import (  # noqa: F401 (re-exported: callers use `selectors.<name>`)
    EXECUTING_STATUSES,
    LIVE_STATUSES,
    LOCAL,
    TargetOverview,
    compute_target_ensure_local,
    compute_target_for_submit,
    compute_target_for_worker,
    compute_target_get,
    compute_target_key_current,
    compute_target_list,
    compute_target_overview,
    queue_target,
    run_queue_name,
    runs_stale,
    target_queue_name,
    target_runs,
    worker_alive_since,
    worker_command,
    worker_identity,
    worker_is_alive,
    worker_key_digest,
    worker_list,
)


def membership_list(*, user: AbstractBaseUser) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(user=user).select_related("workspace").order_by("workspace__name")
    )


def user_visible_to(*, viewer: AbstractBaseUser, username: Any) -> AbstractBaseUser | None:
    """The account named `username` if it shares a workspace with `viewer` (who then sees it in
    a member list already); None for every other name, existing or not."""
    # A NUL is no one's name, and PostgreSQL refuses it in a query: answered here, not there.
    if not isinstance(username, str) or "\x00" in username or not viewer.is_authenticated:
        return None
    return (
        get_user_model()
        .objects.filter(username=username, memberships__workspace__memberships__user=viewer)
        .distinct()
        .first()
    )


def member_list(*, workspace: Workspace) -> QuerySet[Membership]:
    return workspace.memberships.select_related("user").order_by("user__username")


def experiment_list(*, workspace: Workspace) -> QuerySet[Experiment]:
    return workspace.experiments.annotate(
        run_count=Count("runs"), last_run_at=Max("runs__created_at")
    ).order_by("name")


def with_run_details(runs: QuerySet[Run]) -> QuerySet[Run]:
    """What a run's JSON needs, in a fixed number of queries whatever the page size."""
    return runs.select_related("workspace", "experiment", "parent", "submitter").prefetch_related(
        Prefetch("tags", queryset=RunTag.objects.order_by("id")),
        Prefetch("properties", queryset=RunProperty.objects.order_by("id")),
    )


def run_children(*, run: Run, recursive: bool = False) -> list[Run]:
    """Children breadth first; one query per level of the tree; at most LIST_MAX runs."""
    found: list[Run] = []
    level = [run.pk]
    while level and len(found) < limits.LIST_MAX:
        children = list(
            with_run_details(Run.objects.filter(parent_id__in=level)).order_by("id")[
                : limits.LIST_MAX - len(found)
            ]
        )
        found += children
        level = [c.pk for c in children] if recursive else []
    return found


def run_tags(*, run: Run) -> dict[str, str | None]:
    return dict(run.tags.order_by("id").values_list("key", "value"))


def run_properties(*, run: Run) -> dict[str, str]:
    return dict(run.properties.order_by("id").values_list("key", "value"))


def _scalar_last(series: MetricSeries) -> float | None:
    if series.kind == MetricKind.SCALAR and series.count and series.last_value is None:
        return math.nan  # NaN is stored as NULL
    return series.last_value


def metric_summaries(*, run: Run) -> list[dict[str, Any]]:
    return [
        {
            "name": s.name,
            "kind": s.kind,
            "count": s.count,
            "last": _scalar_last(s),
            "min": s.min_value,
            "max": s.max_value,
            "last_step": s.last_step,
        }
        for s in run.metric_series.order_by("name")[: limits.LIST_MAX]
    ]


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def metric_values(*, run: Run, names: list[str] | None = None) -> dict[str, Any]:
    """Every metric's values in logged order, in the shape of the SDK's `get_metrics()`."""
    series = run.metric_series.order_by("id")
    if names:
        series = series.filter(name__in=names)
    series = list(series)
    total = sum(s.count for s in series)
    if total > limits.METRIC_VALUES_MAX:
        # Checked on the summaries before a point is read: the answer stays bounded.
        raise InvalidInput(
            f"name: these metrics hold {total} values; one answer carries at most "
            f"{limits.METRIC_VALUES_MAX} (METRIC_VALUES_MAX). Ask for fewer names, or page "
            "through metrics/history.",
            field="name",
        )
    scalar_ids = [s.pk for s in series if s.kind == MetricKind.SCALAR]
    other_ids = [s.pk for s in series if s.kind != MetricKind.SCALAR]
    points: dict[int, list] = defaultdict(list)
    if scalar_ids:
        relation, params = stored_points.source(scalar_ids)
        marks = ", ".join(["%s"] * len(scalar_ids))
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT p.series_id, p.value FROM {relation} p WHERE p.series_id IN ({marks}) "
                "ORDER BY p.series_id, p.seq",
                [*params, *scalar_ids],
            )
            while rows := cursor.fetchmany(10_000):
                for sid, value in rows:
                    points[sid].append(_nan(value))
    entries: dict[int, list] = defaultdict(list)
    if other_ids:
        for sid, value in (
            MetricEntry.objects.filter(series_id__in=other_ids)
            .order_by("series_id", "seq")
            .values_list("series_id", "value")
        ):
            entries[sid].append(value)
    result: dict[str, Any] = {}
    for s in series:
        if s.kind == MetricKind.SCALAR:
            result[s.name] = points[s.pk]
        elif s.kind == MetricKind.LIST:
            result[s.name] = [item for value in entries[s.pk] for item in value]
        elif s.kind == MetricKind.ROW:
            result[s.name] = _columns(entries[s.pk])
        else:
            result[s.name] = entries[s.pk]
    return result


def _columns(rows: list[dict]) -> dict[str, list]:
    columns: dict[str, list] = {}
    for index, row in enumerate(rows):
        for key in row:
            columns.setdefault(key, [None] * index)
        for key, column in columns.items():
            column.append(row.get(key))
    return columns


def metric_history(
    *, run: Run, name: str, after_seq: int = -1, limit: int = 10_000
) -> tuple[MetricSeries | None, dict[str, list], int | None]:
    """A page of one series' points in logged order, as columns; and the cursor for the next."""
    series = run.metric_series.filter(name=name).first()
    if series is None:
        return None, {}, None
    scalar = series.kind == MetricKind.SCALAR
    if scalar:
        rows = metric_point_rows(series=series, after_seq=after_seq, limit=limit + 1)
    else:
        rows = list(
            MetricEntry.objects.filter(series=series, seq__gt=after_seq)
            .order_by("seq")
            .values_list("seq", "step", "value", "time")[: limit + 1]
        )
    more = len(rows) > limit
    rows = rows[:limit]
    columns = {"seq": [], "step": [], "value": [], "time": []}
    for seq, step, value, t in rows:
        columns["seq"].append(seq)
        columns["step"].append(step)
        columns["value"].append(_nan(value) if scalar else value)
        columns["time"].append(t)
    return series, columns, (rows[-1][0] if more else None)


def metric_point_rows(*, series: MetricSeries, after_seq: int, limit: int) -> list[tuple]:
    """Up to `limit` (seq, step, value, time) rows of a scalar series after `after_seq`, in
    logged order, as the database returns them (NaN is NULL): one range scan and one
    fetchall, for a door that serializes the rows as they come (MLflow's get-history pages
    25,000 points; the queryset's 100-row fetches and per-row work cost ~3× the scan)."""
    # Seqs count 0, 1, 2… per series: the page lies within (after_seq, after_seq + limit].
    # A cursor below -1 (the MLflow door takes any 64-bit page token) means the start: else
    # the range would end before seq 0, and PostgreSQL's blocks read as an empty history.
    after_seq = max(after_seq, -1)
    relation, params = stored_points.source(series.pk, after_seq + 1, after_seq + limit)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT p.seq, p.step, p.value, p.time FROM {relation} p "
            "WHERE p.series_id = %s AND p.seq > %s ORDER BY p.seq LIMIT %s",
            [*params, series.pk, after_seq, limit],
        )
        return cursor.fetchall()


def run_files(*, run: Run, prefix: str = "") -> QuerySet[RunFile]:
    files = run.files.order_by("path")
    if prefix:
        files = files.filter(path__startswith=prefix)
    return files


# --- The run detail page (runs/views/run_detail.py) ------------------------------------------


def status_events(*, run: Run) -> QuerySet[StatusEvent]:
    return run.status_events.select_related("by").order_by("at", "id")


def _count_of(rows: QuerySet, key: str) -> Coalesce:
    counted = rows.filter(**{key: OuterRef("pk")}).order_by().values(key)
    return Coalesce(Subquery(counted.annotate(n=Count("pk")).values("n")), 0)


def run_counts(*, run: Run) -> dict[str, int]:
    """The numbers the run page's tabs show, in one query (a subquery each, no cross join)."""
    return (
        Run.objects.filter(pk=run.pk)
        .annotate(
            n_children=_count_of(Run.objects.all(), "parent"),
            n_files=_count_of(RunFile.objects.all(), "run"),
            n_events=_count_of(StatusEvent.objects.all(), "run"),
        )
        .values("n_children", "n_files", "n_events")
        .get()
    )


def metric_entries_recent(
    *, series_ids: list[int], per_series: int = 200
) -> dict[int, list[tuple[int, int, Any]]]:
    """The last `per_series` (seq, step, value) entries of each non-scalar series, oldest
    first, in one query (a window function ranks each series' entries)."""
    if not series_ids:
        return {}
    rows = (
        MetricEntry.objects.filter(series_id__in=series_ids)
        .annotate(rank=Window(RowNumber(), partition_by=[F("series_id")], order_by=F("seq").desc()))
        .filter(rank__lte=per_series)
        .order_by("series_id", "seq")
        .values_list("series_id", "seq", "step", "value")
    )
    found: dict[int, list] = defaultdict(list)
    for series_id, seq, step, value in rows:
        found[series_id].append((seq, step, value))
    return found


def child_run_tree(*, run: Run) -> list[tuple[Run, int]]:
    """Every descendant as (run, depth) in tree order: each child right under its parent.
    One query per level of the tree (plain rows: the table needs no tags or properties)."""
    below: dict[int, list[Run]] = defaultdict(list)
    level = [run.pk]
    while level:
        children = list(Run.objects.filter(parent_id__in=level).order_by("id"))
        for child in children:
            below[child.parent_id].append(child)
        level = [child.pk for child in children]
    ordered: list[tuple[Run, int]] = []
    stack = [(child, 1) for child in reversed(below[run.pk])]
    while stack:
        node, depth = stack.pop()
        ordered.append((node, depth))
        stack += [(child, depth + 1) for child in reversed(below[node.pk])]
    return ordered


def scalar_metric_names(*, runs: list[Run]) -> list[str]:
    return list(
        MetricSeries.objects.filter(run__in=runs, kind=MetricKind.SCALAR)
        .values_list("name", flat=True)
        .distinct()
        .order_by("name")
    )


def metric_summaries_for(*, runs: list[Run], names: list[str]) -> dict[int, dict[str, Any]]:
    """{run pk: {metric name: series}} for the given runs and names, in one query."""
    found: dict[int, dict[str, Any]] = defaultdict(dict)
    if runs and names:
        for series in MetricSeries.objects.filter(run__in=runs, name__in=names):
            found[series.run_id][series.name] = series
    return found


def file_tree(*, files: list[RunFile]) -> dict[str, Any]:
    """Paths → nested folders: {"name", "path", "folders": [...], "files": [RunFile]}."""
    root: dict[str, Any] = {"name": "", "path": "", "folders": {}, "files": []}
    for record in files:
        node = root
        *folders, _ = record.path.split("/")
        for index, name in enumerate(folders):
            node = node["folders"].setdefault(
                name,
                {"name": name, "path": "/".join(folders[: index + 1]), "folders": {}, "files": []},
            )
        node["files"].append(record)

    def freeze(node: dict[str, Any]) -> dict[str, Any]:
        folders = [freeze(child) for _, child in sorted(node["folders"].items())]
        return {**node, "folders": folders}

    return freeze(root)


# --- Studio run lists, the search language and custom views (runs/views/lists.py) -----------
# The run list's filters are runs.filters.RunFilter (which compiles `q` with runs.query);
# the helpers below sort, page and read the columns of what it returns.


def experiment_overview(*, workspace: Workspace) -> QuerySet[Experiment]:
    """Experiments with their run count, last run and status counts: one GROUP BY query."""
    active = [
        RunStatus.NOT_STARTED,
        RunStatus.QUEUED,
        RunStatus.PREPARING,
        RunStatus.RUNNING,
        RunStatus.FINALIZING,
        RunStatus.CANCEL_REQUESTED,
    ]
    live = Q(runs__archived_at__isnull=True)  # archived runs are counted nowhere but their page
    return workspace.experiments.annotate(
        run_count=Count("runs", filter=live),
        last_run_at=Max("runs__created_at", filter=live),
        active_count=Count("runs", filter=live & Q(runs__status__in=active)),
        completed_count=Count("runs", filter=live & Q(runs__status=RunStatus.COMPLETED)),
        failed_count=Count("runs", filter=live & Q(runs__status=RunStatus.FAILED)),
        canceled_count=Count("runs", filter=live & Q(runs__status=RunStatus.CANCELED)),
    ).order_by("name")


def run_filterset(*, workspace: Workspace, params: Mapping[str, Any]):
    """The bound RunFilter over the workspace's runs (pages show its form and errors)."""
    from runs.filters import RunFilter

    return RunFilter(params, queryset=Run.objects.filter(workspace=workspace))


def run_search(*, workspace: Workspace, params: Mapping[str, Any]) -> QuerySet[Run]:
    """The workspace's runs matching RunFilter parameters — `q` (the search language),
    experiment, status, tag, property, compute_target, submitter, created_from/_to,
    top_level, parent. Unordered. Raises InvalidInput naming the first bad parameter."""
    filterset = run_filterset(workspace=workspace, params=params)
    if not filterset.is_valid():
        field, messages = next(iter(filterset.errors.items()))
        raise InvalidInput(f"{field}: {messages[0]}", field=field)
    return filterset.qs


SORT_DEFAULT = "-created"


def run_sort(*, runs: QuerySet[Run], sort: str | Sequence[str] = SORT_DEFAULT) -> QuerySet[Run]:
    """Order by one column key or several (the first orders, the next break its ties: MLflow's
    `order_by` list), `-` first for descending, in the database: tags, properties and metric
    aggregates through a LEFT JOIN on that one key (FilteredRelation); missing values last
    either way; remaining ties broken by id in the first key's direction. Raises InvalidInput
    on field `sort`."""
    from runs import query

    keys = [sort] if isinstance(sort, str) else list(sort)
    keys = [k.strip() for k in keys if k and k.strip()] or [SORT_DEFAULT]
    order = []
    for index, key in enumerate(keys):
        descending = key.startswith("-")
        try:
            field = query.parse_field(key.lstrip("-+"))
        except query.QueryError as exc:
            raise InvalidInput(f"sort: {exc.message}", field="sort") from None
        # One alias per clause: two clauses on two tags are two joins.
        alias = f"sort_on_{index}"
        if field.kind == "attribute" and field.name == "duration":
            runs = runs.annotate(
                **{
                    f"sort_value_{index}": ExpressionWrapper(
                        Coalesce(F("ended_at"), Now()) - F("started_at"),
                        output_field=DurationField(),
                    )
                }
            )
            expression = F(f"sort_value_{index}")
        elif field.kind == "attribute":
            expression = F(query.ATTRIBUTES[field.name].lookup)
        elif field.kind == "metric":
            runs = runs.annotate(
                **{
                    alias: FilteredRelation(
                        "metric_series", condition=Q(metric_series__name=field.name)
                    )
                }
            )
            expression = F(f"{alias}__{field.metric_column}")
        else:
            relation = "tags" if field.kind == "tag" else "properties"
            runs = runs.annotate(
                **{
                    alias: FilteredRelation(
                        relation, condition=Q(**{f"{relation}__key": field.name})
                    )
                }
            )
            expression = F(f"{alias}__value")
        order.append(
            expression.desc(nulls_last=True) if descending else expression.asc(nulls_last=True)
        )
    order.append("-id" if keys[0].startswith("-") else "id")
    return runs.order_by(*order)


@dataclass
class RunPage:
    rows: list[tuple[Run, list[Any]]]  # each run with its column values, in column order
    has_next: bool
    metric_names: list[str]  # scalar metrics of the page's runs, for the column picker


def _column_value(field, run: Run, series: dict[str, MetricSeries], now) -> Any:
    if field.kind == "tag":
        for tag in run.tags.all():
            if tag.key == field.name:
                return tag.value if tag.value is not None else True  # a bare tag is set
        return None
    if field.kind == "property":
        for prop in run.properties.all():
            if prop.key == field.name:
                return prop.value
        return None
    if field.kind == "metric":
        found = series.get(field.name)
        if found is None:
            return None
        if field.agg == "last":
            return _scalar_last(found)
        return getattr(found, field.metric_column)
    name = field.name
    if name == "display_name":
        return run.display_name or run.run_id
    if name == "experiment":
        return run.experiment.name
    if name == "submitter":
        return run.submitter.username if run.submitter else None
    if name == "parent":
        return run.parent.run_id if run.parent else None
    if name in ("created", "started", "ended"):
        return getattr(run, f"{name}_at")
    if name == "duration":
        if run.started_at is None:
            return None
        return (run.ended_at or now) - run.started_at
    return getattr(run, name)


def run_rows(*, runs: list[Run], columns: list) -> list[tuple[Run, list[Any]]]:
    """Each run with its column values: one query for all the metric columns together (tags
    and properties come prefetched by with_run_details)."""
    from django.utils import timezone

    names = sorted({f.name for f in columns if f.kind == "metric"})
    series = metric_summaries_for(runs=runs, names=names) if names else {}
    now = timezone.now()
    return [
        (run, [_column_value(f, run, series.get(run.pk, {}), now) for f in columns]) for run in runs
    ]


def run_page(*, runs: QuerySet[Run], columns: list, offset: int = 0, limit: int = 100) -> RunPage:
    """One page of sorted runs: limit+1 ids tell whether there is a next page, so no
    COUNT(*) runs over the whole workspace."""
    # Ids first, then the rows: joining the details (experiment, submitter, parent) into the
    # sorted query makes SQLite's planner give up the index order it would otherwise use.
    ids = list(runs.values_list("pk", flat=True)[offset : offset + limit + 1])
    has_next = len(ids) > limit
    ids = ids[:limit]
    by_id = {run.pk: run for run in with_run_details(Run.objects.filter(pk__in=ids))}
    found = [by_id[pk] for pk in ids if pk in by_id]
    metric_names = scalar_metric_names(runs=found) if found else []
    return RunPage(
        rows=run_rows(runs=found, columns=columns), has_next=has_next, metric_names=metric_names
    )


def run_rows_iter(*, runs: QuerySet[Run], columns: list, chunk_size: int = 2_000):
    """Every matching run with its column values, a chunk at a time (the CSV export): the
    sorted ids stream from one query; each chunk's rows, tags, properties and metrics are
    read by id."""
    kinds = {f.kind for f in columns}
    details = Run.objects.select_related("experiment", "parent", "submitter")
    if "tag" in kinds:  # only what the chosen columns show: model rows are the cost here
        details = details.prefetch_related("tags")
    if "property" in kinds:
        details = details.prefetch_related("properties")
    ids = runs.values_list("pk", flat=True).iterator(chunk_size=chunk_size)
    while chunk_ids := list(itertools.islice(ids, chunk_size)):
        by_id = {run.pk: run for run in details.filter(pk__in=chunk_ids)}
        yield from run_rows(runs=[by_id[pk] for pk in chunk_ids if pk in by_id], columns=columns)


def run_statuses(*, workspace: Workspace, run_ids: list[str]) -> list[tuple[str, str]]:
    """(run id, status) of the given runs of the workspace: what the lists poll for."""
    return list(
        Run.objects.filter(workspace=workspace, run_id__in=run_ids[:500]).values_list(
            "run_id", "status"
        )
    )


# ---------------------------------------------------------------------------------------------
# Alert rules and their deliveries (written by runs/services/alerts.py)


def alert_rule_list(*, workspace: Workspace) -> QuerySet[AlertRule]:
    return workspace.alert_rules.select_related("experiment").order_by("name", "id")


def alert_delivery_list(*, workspace: Workspace, limit: int = 50) -> QuerySet[AlertDelivery]:
    return (
        AlertDelivery.objects.filter(rule__workspace=workspace)
        .select_related("rule", "event__run")
        .order_by("-at", "-id")[:limit]
    )


def alert_rules_matching(*, event: StatusEvent) -> list[AlertRule]:
    run = event.run
    rules = AlertRule.objects.filter(workspace_id=run.workspace_id, enabled=True).filter(
        Q(experiment__isnull=True) | Q(experiment_id=run.experiment_id)
    )
    # A workspace has a handful of rules; the status list is JSON, matched here.
    return [rule for rule in rules.order_by("id") if event.to_status in rule.statuses]


# ---------------------------------------------------------------------------------------------
# Custom views (written by runs/services/saved_views.py)


def view_list(*, workspace: Workspace, user: AbstractBaseUser) -> QuerySet[CustomView]:
    """The views a member sees: their own and the shared ones."""
    return (
        CustomView.objects.filter(Q(owner=user) | Q(shared=True), workspace=workspace)
        .select_related("owner")
        .order_by("name", "id")
    )


def view_get(*, workspace: Workspace, user: AbstractBaseUser, view_id: int) -> CustomView:
    """A view the member may see; NotFound otherwise (a private view does not leak)."""
    view = view_list(workspace=workspace, user=user).filter(pk=view_id).first()
    if view is None:
        raise NotFound(f"No view {view_id} in this workspace.", field="view")
    view.workspace = workspace
    return view
