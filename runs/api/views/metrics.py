"""Metrics: batch logging, summaries, values, history, and a downsampled scalar series
for charts (runs/downsample.py)."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import api_view
from rest_framework.response import Response

from runs import downsample, limits, selectors, services
from runs.access import run_for
from runs.api import schemas as s
from runs.api.serializers import (
    MetricBatchResultSerializer,
    MetricHistorySerializer,
    MetricSeriesSerializer,
    MetricSummaryListSerializer,
    MetricValuesSerializer,
)
from runs.api.views.common import _float_param, _int_param, _object
from runs.errors import NotFound, TooLarge
from runs.models import Role


@extend_schema(
    operation_id="metric_batch_log",
    summary="Log a batch of metric values",
    description="Columnar: one entry per series with `values` and optional `steps` and "
    "`times`. The batch is validated whole; a failing batch writes nothing.",
    tags=["metrics"],
    request=s.MetricBatchRequestSerializer,
    responses={
        200: MetricBatchResultSerializer,
        **s.errors(
            e409="The run is canceled and takes no more metrics.",
            e413=f"The body is over {limits.MAX_BATCH_BYTES} bytes.",
        ),
    },
)
@api_view(["POST"])
def metric_batch(request, run_id: str):
    size = int(request.META.get("CONTENT_LENGTH") or 0)
    if size > limits.MAX_BATCH_BYTES:
        raise TooLarge(
            f"The batch is {size} bytes; the limit is {limits.MAX_BATCH_BYTES}. Split it.",
            field="body",
            code="batch_too_large",
        )
    run, _ = run_for(
        user=request.user, run_id=run_id, role=Role.CONTRIBUTOR, what="logging metrics"
    )
    data = _object(request)
    result = services.run_log_batch(
        run=run, metrics=data.get("metrics"), idempotency_key=data.get("idempotency_key")
    )
    return Response(MetricBatchResultSerializer.render(result))


@extend_schema(
    operation_id="metric_list",
    summary="Summaries of a run's metrics",
    tags=["metrics"],
    responses={200: MetricSummaryListSerializer},
)
@api_view(["GET"])
def metric_list(request, run_id: str):
    run, _ = run_for(user=request.user, run_id=run_id)
    summaries = selectors.metric_summaries(run=run)
    return Response(MetricSummaryListSerializer.render({"metrics": summaries}))


@extend_schema(
    operation_id="metric_values",
    summary="A run's metric values",
    tags=["metrics"],
    parameters=[
        OpenApiParameter("name", str, many=True, description="Metric names; default: all."),
    ],
    responses={200: MetricValuesSerializer},
)
@api_view(["GET"])
def metric_values(request, run_id: str):
    run, _ = run_for(user=request.user, run_id=run_id)
    names = request.query_params.getlist("name")
    values = selectors.metric_values(run=run, names=names or None)
    return Response(MetricValuesSerializer.render({"metrics": values}))


@extend_schema(
    operation_id="metric_history",
    summary="A page of one metric's points",
    tags=["metrics"],
    parameters=[
        OpenApiParameter("name", str, required=True, description="The metric's name."),
        s.int_parameter(
            "after_seq",
            minimum=-1,
            maximum=2**63 - 1,
            default=-1,
            description="Points after this sequence number (`next_after_seq` of the last page).",
        ),
        s.int_parameter(
            "limit",
            minimum=1,
            maximum=limits.HISTORY_PAGE_MAX,
            default=10_000,
            description=f"Points per page, 1–{limits.HISTORY_PAGE_MAX}.",
        ),
    ],
    responses={200: MetricHistorySerializer},
)
@api_view(["GET"])
def metric_history(request, run_id: str):
    run, _ = run_for(user=request.user, run_id=run_id)
    name = request.query_params.get("name", "")
    after_seq = _int_param(request, "after_seq", -1, minimum=-1, maximum=2**63 - 1)
    limit = _int_param(request, "limit", 10_000, minimum=1, maximum=limits.HISTORY_PAGE_MAX)
    series, points, next_after = selectors.metric_history(
        run=run, name=name, after_seq=after_seq, limit=limit
    )
    if series is None:
        raise NotFound(f"Run {run.run_id} has no metric named {name!r}.", field="name")
    page = {"name": series.name, "kind": series.kind, "points": points}
    return Response(MetricHistorySerializer.render({**page, "next_after_seq": next_after}))


@extend_schema(
    operation_id="metric_series",
    summary="A scalar metric, downsampled for charts",
    description="M4-downsampled points (runs/downsample.py); a range with few points comes "
    "back raw.",
    tags=["metrics"],
    parameters=[
        OpenApiParameter("name", str, required=True, description="The metric's name."),
        OpenApiParameter("x", str, enum=list(downsample.X_AXES), default="step"),
        s.int_parameter(
            "buckets",
            minimum=1,
            maximum=downsample.MAX_BUCKETS,
            default=downsample.DEFAULT_BUCKETS,
            description=f"1–{downsample.MAX_BUCKETS}: the most buckets to cut the range into "
            "(whole blocks of the series' min/max pyramid: between about half and all of them).",
        ),
        OpenApiParameter("x_min", float, description="The range's start, in x units."),
        OpenApiParameter("x_max", float, description="The range's end, in x units."),
    ],
    responses={200: MetricSeriesSerializer},
)
@api_view(["GET"])
def metric_series(request, run_id: str):
    """`?name=&x=step|time|relative&buckets=&x_min=&x_max=` → M4-downsampled points."""
    run, _ = run_for(user=request.user, run_id=run_id)
    name = request.query_params.get("name", "")
    series = downsample.series_get(run=run, name=name)
    result = downsample.series_downsample(
        series=series,
        x=request.query_params.get("x", "step"),
        buckets=_int_param(
            request,
            "buckets",
            downsample.DEFAULT_BUCKETS,
            minimum=1,
            maximum=downsample.MAX_BUCKETS,
        ),
        x_min=_float_param(request, "x_min"),
        x_max=_float_param(request, "x_max"),
    )
    answer = {"run_id": run.run_id, "name": series.name, **result.as_json()}
    return Response(MetricSeriesSerializer.render(answer))
