"""Charts: the compare page, and the figure JSON that static/js/charts.js draws.

Figures are built by runs/charts.py (pure) from downsampled series (runs/downsample.py) or
from the series summaries. The JSON views use the browser's session, are GET only, and answer
errors as JSON (`{"error": {...}}`): 401 signed out, 404 for a run the user cannot see.
"""

import functools

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponsePermanentRedirect, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from runs import charts, compare, downsample, hparams, selectors
from runs.access import run_for
from runs.errors import InvalidInput, ServiceError
from runs.models import MetricKind, MetricSeries, Run
from runs.query import Field
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
    """The runs side by side, every value a run-list column (runs/compare.py)."""
    ws, membership = load_workspace(request, workspace)
    if moved := _legacy_redirect(request):
        return moved
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
        for run in selectors.with_run_details(Run.objects.filter(workspace=ws, run_id__in=ids))
    }
    if len(found) != len(ids):
        raise Http404("No such run in this workspace.")
    runs = [found[run_id] for run_id in ids]
    table = compare.compare_table(runs=runs)
    metrics = table.metrics
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
    columns = compare.scatter_columns(table)
    sy = compare.pick_column(request.GET.get("sy"), columns) or (
        Field("metric", metric, "last") if metric else None
    )
    hp = _hparams(table, chosen, goal=request.GET.get("goal"))
    sx = compare.pick_column(request.GET.get("sx"), columns) or _default_x(
        columns, sy, hp.get("hp_importance")
    )
    summaries = _summaries(table, metric)
    context = {
        "workspace": ws,
        "membership": membership,
        "nav_section": "runs",
        "runs": [(run, summaries[i], charts.color(i)) for i, run in enumerate(runs)],
        "run_ids": " ".join(ids),
        "metrics": metrics,
        "metric": metric,
        "chosen": chosen,
        "x": x,
        "x_axes": X_AXES,
        "only_diff": only_diff,
        "shared": shared,
        "smoothing_choices": sorted({0.0, 0.6, 0.8, 0.9, 0.95, 0.99, shared["smoothing"]}),
        "diff_rows": compare.diff_rows(table, metrics=chosen, only_diff=only_diff),
        **hp,
        "columns": columns,
        "sx": sx.key if sx else "",
        "sy": sy.key if sy else "",
        "bar_figure": charts.summary_bar_figure(
            [{"label": _label(run), **summaries[i]} for i, run in enumerate(runs)], metric=metric
        )
        if metric
        else None,
        "scatter_figure": _scatter(table, sx, sy) if sx and sy else None,
    }
    return render(request, "runs/compare.html", context)


def _legacy_redirect(request):
    """Compare URLs from before the page spoke the run list's column language carry
    `sx`/`sy` as `metric:loss:last`, `tag:opt`, `property:lr` or `attr:duration (s)`: they
    move (301) to the same page with the keys of today, so bookmarks and shared links keep
    working and the address bar shows the one language."""
    data = request.GET.copy()
    moved = False
    for name in ("sx", "sy"):
        key = compare.legacy_column_key(data.get(name, ""))
        if key is not None:
            data[name] = key
            moved = True
    if not moved:
        return None
    return HttpResponsePermanentRedirect(f"{request.path}?{data.urlencode()}")


def _summaries(table: compare.CompareTable, metric: str | None) -> list[dict]:
    """Per run: the first chosen metric's last / min / max, for the bar and the runs table."""
    if metric is None:
        return [{} for _ in table.runs]
    columns = {
        agg: table.column(Field("metric", metric, agg).key) for agg in compare.METRIC_AGGREGATES
    }
    return [{agg: values[i] for agg, values in columns.items()} for i in range(len(table.runs))]


def _scatter(table: compare.CompareTable, sx: Field, sy: Field) -> dict:
    xs, ys = table.column(sx.key), table.column(sy.key)
    points = [
        {"label": _label(run), "x": compare.plot_value(xs[i]), "y": compare.plot_value(ys[i])}
        for i, run in enumerate(table.runs)
    ]
    return charts.scatter_figure(
        points, x_label=compare.axis_title(sx), y_label=compare.axis_title(sy)
    )


def _default_metric(metrics: list[str]) -> str | None:
    for preferred in ("loss", "val_loss", "accuracy", "acc"):
        if preferred in metrics:
            return preferred
    return metrics[0] if metrics else None


def _default_x(columns: list[Field], sy: Field | None, importance=None) -> Field | None:
    """A parameter against the metric by default: the one whose rank correlation with it is
    strongest (the importance table's first), else a property, a tag, a metric."""
    if importance:
        return compare.pick_column(importance[0]["key"], columns)
    for kind in ("property", "tag", "metric"):
        for field in columns:
            if field.kind == kind and field != sy:
                return field
    return columns[-1] if columns else None


def _hparams(table: compare.CompareTable, metrics: list[str], *, goal) -> dict:
    """Hyperparameter analysis (runs/hparams.py): parallel coordinates over the property and
    tag columns that vary and the chosen metrics' last values, and each numeric parameter's
    rank correlation with the first chosen metric's best value (`goal=min|max`, default by
    its name)."""
    found = hparams.params([(f, table.column(f.key)) for f in table.columns])
    if not metrics:
        return {"hp_params": found}
    target = metrics[0]
    if goal not in ("min", "max"):
        lower = target.lower()
        goal = "min" if any(w in lower for w in ("loss", "error", "err", "rmse", "mae")) else "max"

    def numbers(field: Field) -> list[float | None]:
        return [_finite(v) for v in table.column(field.key)]

    best = numbers(Field("metric", target, goal))
    lasts = [(f.label, numbers(f)) for f in (Field("metric", n, "last") for n in metrics)]
    return {
        "hp_params": found,
        "hp_goal": goal,
        "hp_target": target,
        "hp_importance": hparams.importance(found, best),
        "hp_figure": hparams.parcoords_figure(found, lasts) if found else None,
    }


def _finite(value) -> float | None:
    value = compare.plot_value(value)
    return value if isinstance(value, float) else None
