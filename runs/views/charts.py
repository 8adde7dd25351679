"""Charts: the compare page, and the figure JSON that static/js/charts.js draws.

Figures are built by runs/charts.py (pure) from downsampled series (runs/downsample.py) or
from the series summaries. The JSON views use the browser's session, are GET only, and answer
errors as JSON (`{"error": {...}}`): 401 signed out, 404 for a run the user cannot see.
"""

import functools
from datetime import datetime

from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from runs import charts, downsample, hparams
from runs.access import run_for
from runs.errors import InvalidInput, ServiceError
from runs.models import MetricKind, MetricSeries, Run, RunProperty, RunTag
from runs.views.common import load_workspace

MAX_COMPARE_RUNS = 50
COMPARE_METRICS_MAX = 12  # charts in the compare grid
X_AXES = {"step": "Step", "time": "Wall time", "relative": "Relative time"}
SMOOTHING_MAX = 0.99


def _json_view(view):
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return _error(401, "not_authenticated", "Sign in to see charts.")
        try:
            return JsonResponse(view(request, *args, **kwargs))
        except ServiceError as exc:
            return JsonResponse({"error": exc.as_dict()}, status=exc.status)

    return require_GET(wrapper)


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _float(request, name: str, default: float | None = None) -> float | None:
    raw = request.GET.get(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"{name}: {raw!r} is not a number.", field=name) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidInput(f"{name}: must be a finite number.", field=name)
    return value


def _is_float(request, name: str) -> bool:
    try:
        return _float(request, name) is not None
    except InvalidInput:
        return False  # the page ignores a bad value; the JSON views refuse it


def _run_ids(request) -> list[str]:
    ids: list[str] = []
    for raw in request.GET.getlist("run"):
        for run_id in raw.split():
            if run_id not in ids:
                ids.append(run_id)
    if not ids:
        raise InvalidInput("run: give at least one run id.", field="run")
    if len(ids) > MAX_COMPARE_RUNS:
        raise InvalidInput(
            f"run: at most {MAX_COMPARE_RUNS} runs chart together; pick fewer.", field="run"
        )
    return ids


def _label(run: Run) -> str:
    return run.display_name or run.run_id


@_json_view
def metric_figure(request):
    """`?run=<id>[&run=…]&metric=&x=step|time|relative&smoothing=0..0.99&buckets=&x_min=&x_max=`
    → `{"figure", "series": [{run_id, count, in_range, downsampled, buckets}]}`."""
    runs = [run_for(user=request.user, run_id=run_id)[0] for run_id in _run_ids(request)]
    metric = request.GET.get("metric", "")
    x = request.GET.get("x", "step")
    smoothing = _float(request, "smoothing", 0.0)
    if not 0 <= smoothing <= SMOOTHING_MAX:
        raise InvalidInput(f"smoothing: must be between 0 and {SMOOTHING_MAX}.", field="smoothing")
    buckets = int(_float(request, "buckets", downsample.DEFAULT_BUCKETS))
    x_min, x_max = _float(request, "x_min"), _float(request, "x_max")
    by_run = {
        s.run_id: s
        for s in MetricSeries.objects.filter(run__in=runs, name=metric, kind=MetricKind.SCALAR)
    }
    series, info = [], []
    for index, run in enumerate(runs):
        if run.pk not in by_run:
            continue
        result = downsample.series_downsample(
            series=by_run[run.pk], x=x, buckets=buckets, x_min=x_min, x_max=x_max
        )
        # Colors follow the run's place in the request, so the compare table's swatches match.
        series.append({"label": _label(run), "color": charts.color(index), **result.as_json()})
        info.append(
            {
                "run_id": run.run_id,
                "count": result.count,
                "in_range": result.in_range,
                "downsampled": result.downsampled,
                "buckets": result.buckets,
            }
        )
    title = request.GET.get("title") or metric
    figure = charts.line_figure(
        series, x=x, smoothing=smoothing, title=title, x_range=[x_min, x_max]
    )
    return {"figure": figure, "series": info}


@_json_view
def children_figure(request):
    """`?run=<parent id>&metric=&best=min|max&kind=bar|scatter` → `{"figure", "children"}`."""
    parent, _ = run_for(user=request.user, run_id=request.GET.get("run", ""))
    metric = request.GET.get("metric", "")
    best = request.GET.get("best", "min")
    kind = request.GET.get("kind", "bar")
    if best not in ("min", "max"):
        raise InvalidInput("best: must be min or max.", field="best")
    if kind not in ("bar", "scatter"):
        raise InvalidInput("kind: must be bar or scatter.", field="kind")
    summaries = (
        MetricSeries.objects.filter(
            run__parent=parent,
            run__archived_at__isnull=True,  # archived children are hidden here as in the table
            name=metric,
            kind=MetricKind.SCALAR,
        )
        .select_related("run")
        .order_by("run_id")
    )
    rows = [
        {
            "label": _label(s.run),
            "run_id": s.run.run_id,
            "status": s.run.status,
            "min": s.min_value,
            "max": s.max_value,
            "last": s.last_value,
        }
        for s in summaries
    ]
    figure = charts.children_figure(rows, metric=metric, best=best, kind=kind)
    return {"figure": figure, "children": len(rows)}


# --- the compare page ----------------------------------------------------------------------


@login_required
@require_GET
def compare_page(request, workspace: str):
    ws, membership = load_workspace(request, workspace)
    try:
        ids = _run_ids(request)
    except InvalidInput as exc:
        return render(
            request,
            "runs/compare.html",
            {"workspace": ws, "error": exc.message, "runs": [], "nav_section": "runs"},
            status=400 if request.GET.getlist("run") else 200,
        )
    found = {
        run.run_id: run
        for run in Run.objects.filter(workspace=ws, run_id__in=ids).select_related(
            "experiment", "submitter"
        )
    }
    if len(found) != len(ids):
        raise Http404("No such run in this workspace.")
    runs = [found[run_id] for run_id in ids]
    records = _records(runs)
    metrics = sorted({name for r in records.values() for name in r["metrics"]})
    # Several metrics chart at once (a grid, one chart each); the first feeds the bar, the
    # scatter's default and the table.
    chosen = [m for m in dict.fromkeys(request.GET.getlist("metric")) if m in metrics]
    chosen = chosen[:COMPARE_METRICS_MAX] or ([_default_metric(metrics)] if metrics else [])
    metric = chosen[0] if chosen else None
    x = request.GET.get("x") if request.GET.get("x") in X_AXES else "step"
    only_diff = request.GET.get("diff") == "1"
    # One smoothing, log y and "ignore outliers" for every chart of the grid (each chart's own
    # controls still change it alone).
    shared = {
        "smoothing": _float(request, "smoothing", 0.0) if _is_float(request, "smoothing") else 0.0,
        "log_y": request.GET.get("log_y") == "1",
        "clip": request.GET.get("clip") == "1",
    }
    shared["smoothing"] = min(max(shared["smoothing"], 0.0), SMOOTHING_MAX)
    columns = _columns(records, metrics)
    column_keys = [key for key, _ in columns]
    default_y = f"metric:{metric}:last" if metric else ""
    sy = request.GET.get("sy") if request.GET.get("sy") in column_keys else default_y
    sx = request.GET.get("sx") if request.GET.get("sx") in column_keys else _default_x(columns, sy)
    rows = [
        {"label": _label(run), **(records[run.pk]["metrics"].get(metric) or {})} for run in runs
    ]
    scatter_points = [
        {
            "label": _label(run),
            "x": charts.column_value(records[run.pk], sx),
            "y": charts.column_value(records[run.pk], sy),
        }
        for run in runs
    ]
    context = {
        "workspace": ws,
        "membership": membership,
        "nav_section": "runs",
        "runs": [
            (run, records[run.pk]["metrics"].get(metric) or {}, charts.color(i))
            for i, run in enumerate(runs)
        ],
        "run_ids": " ".join(ids),
        "metrics": metrics,
        "metric": metric,
        "chosen": chosen,
        "x": x,
        "x_axes": X_AXES,
        "only_diff": only_diff,
        "shared": shared,
        "smoothing_choices": sorted({0.0, 0.6, 0.8, 0.9, 0.95, 0.99, shared["smoothing"]}),
        "diff_rows": _diff_rows(runs, records, chosen, only_diff=only_diff),
        **_hparams(runs, records, chosen, goal=request.GET.get("goal")),
        "columns": columns,
        "sx": sx,
        "sy": sy,
        "bar_figure": charts.summary_bar_figure(rows, metric=metric) if metric else None,
        "scatter_figure": charts.scatter_figure(
            scatter_points, x_label=charts.column_label(sx), y_label=charts.column_label(sy)
        )
        if sx and sy
        else None,
    }
    return render(request, "runs/compare.html", context)


def _records(runs: list[Run]) -> dict[int, dict]:
    """Per run: scalar metric summaries, tags, properties and attributes; four queries."""
    records = {
        run.pk: {
            "metrics": {},
            "tags": {},
            "properties": {},
            "attrs": {"duration (s)": _duration(run)},
        }
        for run in runs
    }
    for s in MetricSeries.objects.filter(run__in=runs, kind=MetricKind.SCALAR):
        records[s.run_id]["metrics"][s.name] = {
            "last": s.last_value,
            "min": s.min_value,
            "max": s.max_value,
            "count": s.count,
        }
    for run_pk, key, value in RunTag.objects.filter(run__in=runs).values_list(
        "run_id", "key", "value"
    ):
        records[run_pk]["tags"][key] = value
    for run_pk, key, value in RunProperty.objects.filter(run__in=runs).values_list(
        "run_id", "key", "value"
    ):
        records[run_pk]["properties"][key] = value
    return records


def _duration(run: Run) -> float | None:
    start = run.started_at or run.created_at
    end: datetime | None = run.ended_at
    return (end - start).total_seconds() if start and end else None


def _default_metric(metrics: list[str]) -> str | None:
    for preferred in ("loss", "val_loss", "accuracy", "acc"):
        if preferred in metrics:
            return preferred
    return metrics[0] if metrics else None


def _columns(records: dict[int, dict], metrics: list[str]) -> list[tuple[str, str]]:
    keys: list[str] = []
    for name in metrics:
        keys += [f"metric:{name}:{aggregate}" for aggregate in charts.AGGREGATES]
    for source, kind in (("properties", "property"), ("tags", "tag")):
        found = sorted({key for r in records.values() for key in r[source]})
        keys += [f"{kind}:{key}" for key in found]
    keys.append("attr:duration (s)")
    return [(key, charts.column_label(key)) for key in keys]


def _default_x(columns: list[tuple[str, str]], sy: str) -> str:
    keys = [key for key, _ in columns]
    for prefix in ("property:", "tag:", "metric:"):
        for key in keys:
            if key.startswith(prefix) and key != sy:
                return key
    return keys[-1] if keys else ""


def _diff_rows(
    runs: list[Run], records: dict[int, dict], metrics: list[str], *, only_diff: bool
) -> list[dict]:
    """The compare page's diff table: one row per attribute, property, tag and chosen metric
    summary, a value per run; `differs` when the runs do not all agree (a missing value counts
    as a value of its own)."""
    rows: list[dict] = []

    def add(section: str, key: str, values: list) -> None:
        differs = len({repr(v) for v in values}) > 1
        if differs or not only_diff:
            rows.append({"section": section, "key": key, "values": values, "differs": differs})

    add("attribute", "experiment", [run.experiment.name for run in runs])
    add("attribute", "status", [run.status for run in runs])
    add("attribute", "duration (s)", [records[run.pk]["attrs"]["duration (s)"] for run in runs])
    for source, section in (("properties", "property"), ("tags", "tag")):
        for key in sorted({k for run in runs for k in records[run.pk][source]}):
            add(section, key, [records[run.pk][source].get(key) for run in runs])
    for name in metrics:
        for aggregate in ("last", "min", "max"):
            add(
                "metric",
                f"{name} ({aggregate})",
                [(records[run.pk]["metrics"].get(name) or {}).get(aggregate) for run in runs],
            )
    return rows


def _hparams(runs: list[Run], records: dict[int, dict], metrics: list[str], *, goal) -> dict:
    """Hyperparameter analysis (runs/hparams.py): parallel coordinates over the parameters that
    vary and the chosen metrics' last values, and each numeric parameter's rank correlation
    with the first chosen metric's best value (`goal=min|max`, default by its name)."""
    ordered = [records[run.pk] for run in runs]
    found = hparams.params(ordered)
    if not metrics:
        return {"hp_params": found}
    target = metrics[0]
    if goal not in ("min", "max"):
        lower = target.lower()
        goal = "min" if any(w in lower for w in ("loss", "error", "err", "rmse", "mae")) else "max"
    best = [(r["metrics"].get(target) or {}).get(goal) for r in ordered]
    lasts = [
        (f"{name} (last)", [(r["metrics"].get(name) or {}).get("last") for r in ordered])
        for name in metrics
    ]
    return {
        "hp_params": found,
        "hp_goal": goal,
        "hp_target": target,
        "hp_importance": hparams.importance(found, best),
        "hp_figure": hparams.parcoords_figure(found, lasts) if found else None,
    }
