"""Reads. Filtering, sorting and paging happen in the database."""

import math
from collections import defaultdict
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Exists, Max, OuterRef, Prefetch, QuerySet

from runs.models import (
    Experiment,
    Membership,
    MetricEntry,
    MetricKind,
    MetricPoint,
    MetricSeries,
    Run,
    RunFile,
    RunProperty,
    RunTag,
    Workspace,
)


def membership_list(*, user: AbstractBaseUser) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(user=user).select_related("workspace").order_by("workspace__name")
    )


def member_list(*, workspace: Workspace) -> QuerySet[Membership]:
    return workspace.memberships.select_related("user").order_by("user__username")


def experiment_list(*, workspace: Workspace) -> QuerySet[Experiment]:
    return workspace.experiments.annotate(
        run_count=Count("runs"), last_run_at=Max("runs__created_at")
    ).order_by("name")


def run_list(
    *,
    workspace: Workspace,
    experiment: str | None = None,
    statuses: list[str] | None = None,
    tags: list[tuple[str, str | None]] | None = None,
    properties: list[tuple[str, str]] | None = None,
    parent: Run | None = None,
    top_level: bool = False,
) -> QuerySet[Run]:
    runs = Run.objects.filter(workspace=workspace)
    if experiment:
        runs = runs.filter(experiment__name=experiment)
    if statuses:
        runs = runs.filter(status__in=statuses)
    for key, value in tags or []:
        match = RunTag.objects.filter(run=OuterRef("pk"), key=key)
        if value is not None:
            match = match.filter(value=value)
        runs = runs.filter(Exists(match))
    for key, value in properties or []:
        match = RunProperty.objects.filter(run=OuterRef("pk"), key=key)
        if value is not None:
            match = match.filter(value=value)
        runs = runs.filter(Exists(match))
    if parent is not None:
        runs = runs.filter(parent=parent)
    elif top_level:
        runs = runs.filter(parent__isnull=True)
    return with_run_details(runs).order_by("-id")


def with_run_details(runs: QuerySet[Run]) -> QuerySet[Run]:
    """What a run's JSON needs, in a fixed number of queries whatever the page size."""
    return runs.select_related("workspace", "experiment", "parent", "submitter").prefetch_related(
        Prefetch("tags", queryset=RunTag.objects.order_by("id")),
        Prefetch("properties", queryset=RunProperty.objects.order_by("id")),
    )


def run_children(*, run: Run, recursive: bool = False) -> list[Run]:
    """Children breadth first; one query per level of the tree."""
    found: list[Run] = []
    level = [run.pk]
    while level:
        children = list(with_run_details(Run.objects.filter(parent_id__in=level)).order_by("id"))
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
        for s in run.metric_series.order_by("name")
    ]


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def metric_values(*, run: Run, names: list[str] | None = None) -> dict[str, Any]:
    """Every metric's values in logged order, in the shape of the SDK's `get_metrics()`."""
    series = run.metric_series.order_by("id")
    if names:
        series = series.filter(name__in=names)
    series = list(series)
    scalar_ids = [s.pk for s in series if s.kind == MetricKind.SCALAR]
    other_ids = [s.pk for s in series if s.kind != MetricKind.SCALAR]
    points: dict[int, list] = defaultdict(list)
    if scalar_ids:
        for sid, value in (
            MetricPoint.objects.filter(series_id__in=scalar_ids)
            .order_by("series_id", "seq")
            .values_list("series_id", "value")
            .iterator(chunk_size=10_000)
        ):
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
    model = MetricPoint if series.kind == MetricKind.SCALAR else MetricEntry
    rows = list(
        model.objects.filter(series=series, seq__gt=after_seq)
        .order_by("seq")
        .values_list("seq", "step", "value", "time")[: limit + 1]
    )
    more = len(rows) > limit
    rows = rows[:limit]
    columns = {"seq": [], "step": [], "value": [], "time": []}
    for seq, step, value, t in rows:
        columns["seq"].append(seq)
        columns["step"].append(step)
        columns["value"].append(_nan(value) if model is MetricPoint else value)
        columns["time"].append(t)
    return series, columns, (rows[-1][0] if more else None)


def run_files(*, run: Run, prefix: str = "") -> QuerySet[RunFile]:
    files = run.files.order_by("path")
    if prefix:
        files = files.filter(path__startswith=prefix)
    return files
