"""REST API views: load through runs.access, validate, call one service or selector, respond."""

import math

from django.contrib.auth import authenticate, get_user_model
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    parser_classes,
    permission_classes,
)
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from runs import downsample, limits, selectors, services, storage
from runs.access import run_for, workspace_for
from runs.api import schemas as s
from runs.api.serializers import (
    experiment_json,
    member_json,
    membership_json,
    run_json,
    token_json,
)
from runs.errors import InvalidInput, NotFound, TooLarge
from runs.models import ApiToken, Role, RunStatus
from runs.services import RunSpec

# ---------------------------------------------------------------------------------------------
# helpers


def _int_param(
    request, name: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name}: {raw!r} is not a whole number.", field=name) from None
    if value < minimum or (maximum is not None and value > maximum):
        raise InvalidInput(
            f"{name}: must be between {minimum} and {maximum if maximum is not None else '∞'}.",
            field=name,
        )
    return value


def _object(request) -> dict:
    if not isinstance(request.data, dict):
        raise InvalidInput("The request body must be a JSON object.", field="body")
    return request.data


def _page(request, queryset, render) -> Response:
    """Keyset pagination, newest first, on the primary key."""
    limit = _int_param(
        request, "limit", limits.PAGE_SIZE_DEFAULT, minimum=1, maximum=limits.PAGE_SIZE_MAX
    )
    cursor = _int_param(request, "cursor", 0)
    if cursor:
        queryset = queryset.filter(pk__lt=cursor)
    items = list(queryset[: limit + 1])
    more = len(items) > limit
    items = items[:limit]
    return Response(
        {
            "results": [render(item) for item in items],
            "next_cursor": str(items[-1].pk) if more else None,
        }
    )


# ---------------------------------------------------------------------------------------------
# tokens and the signed-in user


@extend_schema(
    operation_id="token_create",
    summary="Create an API token",
    description="Signs in with a password and returns a new token; the key is shown this once.",
    tags=["auth"],
    request=s.TokenCreateRequestSerializer,
    responses={
        201: s.TokenCreatedSerializer,
        **s.errors(400, 401, e401="Wrong username or password."),
    },
)
@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
def token_create(request):
    data = _object(request)
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise InvalidInput("username and password are required strings.", field="username")
    user = authenticate(request._request, username=username, password=password)
    if user is None:
        return Response(
            {"error": {"code": "authentication_failed", "message": "Wrong username or password."}},
            status=status.HTTP_401_UNAUTHORIZED,
        )
    token, key = services.token_create(user=user, name=data.get("name") or "")
    return Response({**token_json(token), "token": key}, status=status.HTTP_201_CREATED)


@extend_schema(
    operation_id="token_list",
    summary="List the caller's tokens",
    description="The caller's unrevoked tokens, newest first, without their keys.",
    tags=["auth"],
    responses={200: s.TokenListSerializer, **s.errors(401)},
)
@api_view(["GET"])
def token_list(request):
    tokens = ApiToken.objects.filter(user=request.user, revoked_at__isnull=True).order_by("-id")
    return Response({"results": [token_json(t) for t in tokens]})


@extend_schema(
    operation_id="token_revoke",
    summary="Revoke one of the caller's tokens",
    tags=["auth"],
    responses={204: OpenApiResponse(description="Revoked."), **s.errors(401, 404)},
)
@api_view(["DELETE"])
def token_revoke(request, token_id: int):
    token = ApiToken.objects.filter(user=request.user, pk=token_id).first()
    if token is None:
        raise NotFound(f"No token with id {token_id}.", field="id")
    services.token_revoke(token=token)
    return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(
    operation_id="me",
    summary="The signed-in user and their workspaces",
    tags=["auth"],
    responses={200: s.MeSerializer, **s.errors(401)},
)
@api_view(["GET"])
def me(request):
    memberships = selectors.membership_list(user=request.user)
    return Response(
        {"username": request.user.username, "workspaces": [membership_json(m) for m in memberships]}
    )


# ---------------------------------------------------------------------------------------------
# workspaces and members


@extend_schema(
    methods=["GET"],
    operation_id="workspace_list",
    summary="List the caller's workspaces",
    description="Every workspace the caller belongs to, with the caller's role (one page).",
    tags=["workspaces"],
    responses={200: s.WorkspaceListSerializer, **s.errors(401)},
)
@extend_schema(
    methods=["POST"],
    operation_id="workspace_create",
    summary="Create a workspace",
    description="The caller becomes its owner.",
    tags=["workspaces"],
    request=s.WorkspaceCreateRequestSerializer,
    responses={
        201: s.WorkspaceSerializer,
        **s.errors(400, 401, 409, e409="A workspace with that name exists."),
    },
)
@api_view(["GET", "POST"])
def workspace_list(request):
    if request.method == "POST":
        workspace = services.workspace_create(name=_object(request).get("name"), owner=request.user)
        membership = workspace.memberships.get(user=request.user)
        return Response(membership_json(membership), status=status.HTTP_201_CREATED)
    memberships = selectors.membership_list(user=request.user)
    return Response({"results": [membership_json(m) for m in memberships], "next_cursor": None})


@extend_schema(
    operation_id="workspace_retrieve",
    summary="One workspace, with the caller's role",
    tags=["workspaces"],
    responses={200: s.WorkspaceSerializer, **s.errors(401, 404)},
)
@api_view(["GET"])
def workspace_detail(request, workspace: str):
    _, membership = workspace_for(user=request.user, name=workspace)
    return Response(membership_json(membership))


@extend_schema(
    methods=["GET"],
    operation_id="member_list",
    summary="List a workspace's members",
    tags=["workspaces"],
    responses={200: s.MemberListSerializer, **s.errors(401, 404)},
)
@extend_schema(
    methods=["POST"],
    operation_id="member_set",
    summary="Add a member or change a member's role",
    description="Owners only.",
    tags=["workspaces"],
    request=s.MemberSetRequestSerializer,
    responses={201: s.MemberSerializer, **s.errors(400, 401, 403, 404)},
)
@api_view(["GET", "POST"])
def member_list(request, workspace: str):
    if request.method == "POST":
        ws, _ = workspace_for(
            user=request.user, name=workspace, role=Role.OWNER, what="managing members"
        )
        data = _object(request)
        user = get_user_model().objects.filter(username=data.get("username")).first()
        if user is None:
            raise InvalidInput(
                f"username: no user named {data.get('username')!r}.", field="username"
            )
        membership = services.membership_set(
            workspace=ws, user=user, role=data.get("role", Role.READER)
        )
        return Response(member_json(membership), status=status.HTTP_201_CREATED)
    ws, _ = workspace_for(user=request.user, name=workspace)
    return Response({"results": [member_json(m) for m in selectors.member_list(workspace=ws)]})


@extend_schema(
    operation_id="member_remove",
    summary="Remove a member",
    description="Owners only. A workspace keeps at least one owner.",
    tags=["workspaces"],
    responses={
        204: OpenApiResponse(description="Removed."),
        **s.errors(401, 403, 404, 409, e409="The last owner cannot be removed."),
    },
)
@api_view(["DELETE"])
def member_remove(request, workspace: str, username: str):
    ws, _ = workspace_for(
        user=request.user, name=workspace, role=Role.OWNER, what="managing members"
    )
    membership = ws.memberships.filter(user__username=username).select_related("user").first()
    if membership is None:
        raise NotFound(f"{username!r} is not a member of {ws.name!r}.", field="username")
    services.membership_remove(workspace=ws, user=membership.user)
    return Response(status=status.HTTP_204_NO_CONTENT)


# ---------------------------------------------------------------------------------------------
# experiments and runs


@extend_schema(
    methods=["GET"],
    operation_id="experiment_list",
    summary="List a workspace's experiments",
    tags=["experiments"],
    responses={200: s.ExperimentListSerializer, **s.errors(401, 404)},
)
@extend_schema(
    methods=["POST"],
    operation_id="experiment_create",
    summary="Get or create an experiment",
    description="201 with a new experiment, or 200 with the existing one of that name.",
    tags=["experiments"],
    request=s.ExperimentCreateRequestSerializer,
    responses={
        200: s.ExperimentSerializer,
        201: s.ExperimentSerializer,
        **s.errors(400, 401, 403, 404),
    },
)
@api_view(["GET", "POST"])
def experiment_list(request, workspace: str):
    if request.method == "POST":
        ws, _ = workspace_for(
            user=request.user, name=workspace, role=Role.CONTRIBUTOR, what="creating experiments"
        )
        experiment, created = services.experiment_get_or_create(
            workspace=ws, name=_object(request).get("name")
        )
        return Response(
            experiment_json(experiment),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
    ws, _ = workspace_for(user=request.user, name=workspace)
    experiments = selectors.experiment_list(workspace=ws).select_related("workspace")
    return Response({"results": [experiment_json(e) for e in experiments], "next_cursor": None})


@extend_schema(
    operation_id="experiment_retrieve",
    summary="One experiment",
    tags=["experiments"],
    responses={200: s.ExperimentSerializer, **s.errors(401, 404)},
)
@api_view(["GET"])
def experiment_detail(request, workspace: str, experiment: str):
    ws, _ = workspace_for(user=request.user, name=workspace)
    found = (
        selectors.experiment_list(workspace=ws)
        .select_related("workspace")
        .filter(name=experiment)
        .first()
    )
    if found is None:
        raise NotFound(f"No experiment named {experiment!r} in {ws.name!r}.", field="experiment")
    return Response(experiment_json(found))


@extend_schema(
    operation_id="run_create",
    summary="Start a run",
    description="Creates the experiment if it is missing. The run is Running unless `status` "
    "says otherwise.",
    tags=["runs"],
    request=s.RunSpecSerializer,
    responses={
        201: s.RunSerializer,
        **s.errors(400, 401, 403, 404, 409, e409="A run with that `run_id` exists."),
    },
)
@api_view(["POST"])
def run_create(request, workspace: str, experiment: str):
    ws, _ = workspace_for(
        user=request.user, name=workspace, role=Role.CONTRIBUTOR, what="starting runs"
    )
    spec = RunSpec.from_input(_object(request))
    exp, _ = services.experiment_get_or_create(workspace=ws, name=experiment)
    run = services.run_create(experiment=exp, spec=spec, submitter=request.user)
    return Response(run_json(run, request), status=status.HTTP_201_CREATED)


@extend_schema(
    operation_id="run_list",
    summary="List and filter a workspace's runs",
    description="Newest first, keyset-paged. The filters are the studio run list's "
    "(runs.filters.RunFilter); repeated `status` values are ORed, repeated `tag` and "
    "`property` values ANDed.",
    tags=["runs"],
    parameters=[
        *s.PAGE_PARAMETERS,
        OpenApiParameter("q", str, description="The search language (runs/query.py)."),
        OpenApiParameter("experiment", str, description="An experiment's name."),
        OpenApiParameter("status", str, many=True, enum=RunStatus.values),
        OpenApiParameter("tag", str, many=True, description="`key` or `key=value`."),
        OpenApiParameter("property", str, many=True, description="`key` or `key=value`."),
        OpenApiParameter("compute_target", str, description="A compute target's name."),
        OpenApiParameter("submitter", str, description="A username."),
        OpenApiParameter("created_from", OpenApiTypes.DATE, description="Created on or after."),
        OpenApiParameter("created_to", OpenApiTypes.DATE, description="Created on or before."),
        OpenApiParameter(
            "top_level",
            str,
            enum=["1", "0", "true", "false"],
            description="1: runs without a parent only.",
        ),
        OpenApiParameter("parent", str, description="The parent's run id: its children."),
    ],
    responses={200: s.RunPageSerializer, **s.errors(400, 401, 404)},
)
@api_view(["GET"])
def run_list(request, workspace: str):
    """Filtered by runs.filters.RunFilter — the studio's run list uses the same one: `q` (the
    search language, runs/query.py), experiment, status, tag, property, compute_target,
    submitter, created_from, created_to, top_level, parent. Newest first, keyset-paged."""
    ws, _ = workspace_for(user=request.user, name=workspace)
    if request.query_params.get("parent"):
        run_for(user=request.user, run_id=request.query_params["parent"])  # 404 if not visible
    runs = selectors.run_search(workspace=ws, params=request.query_params)
    runs = selectors.with_run_details(runs).order_by("-id")
    return _page(request, runs, lambda run: run_json(run, request))


@extend_schema(
    methods=["GET"],
    operation_id="run_retrieve",
    summary="Run details",
    tags=["runs"],
    responses={200: s.RunSerializer, **s.errors(401, 404)},
)
@extend_schema(
    methods=["PATCH"],
    operation_id="run_update",
    summary="Change a run's display name or description",
    tags=["runs"],
    request=s.RunUpdateRequestSerializer,
    responses={200: s.RunSerializer, **s.errors(400, 401, 403, 404)},
)
@api_view(["GET", "PATCH"])
def run_detail(request, run_id: str):
    if request.method == "PATCH":
        run, _ = run_for(
            user=request.user, run_id=run_id, role=Role.CONTRIBUTOR, what="editing runs"
        )
        data = _object(request)
        services.run_update(
            run=run, display_name=data.get("display_name"), description=data.get("description")
        )
    else:
        run, _ = run_for(user=request.user, run_id=run_id)
    return Response(run_json(run, request))


@extend_schema(
    operation_id="run_status_set",
    summary="Move a run along its lifecycle",
    tags=["runs"],
    request=s.RunStatusRequestSerializer,
    responses={
        200: s.RunSerializer,
        **s.errors(
            400,
            401,
            403,
            404,
            409,
            e409="The transition is not allowed (e.g. out of a terminal state).",
        ),
    },
)
@api_view(["POST"])
def run_status(request, run_id: str):
    run, _ = run_for(
        user=request.user, run_id=run_id, role=Role.CONTRIBUTOR, what="changing a run's status"
    )
    data = _object(request)
    error = data.get("error") or {}
    if not isinstance(error, dict):
        raise InvalidInput("error: must be an object with code and message.", field="error")
    updated = services.run_set_status(
        run=run,
        status=data.get("status"),
        by=request.user,
        error_code=error.get("code") or "",
        error_message=error.get("message") or "",
    )
    run.status, run.started_at, run.ended_at = updated.status, updated.started_at, updated.ended_at
    run.error_code, run.error_message = updated.error_code, updated.error_message
    return Response(run_json(run, request))


@extend_schema(
    operation_id="run_heartbeat",
    summary="Record that a live run is alive",
    tags=["runs"],
    request=None,
    responses={200: s.HeartbeatSerializer, **s.errors(401, 403, 404)},
)
@api_view(["POST"])
def run_heartbeat(request, run_id: str):
    run, _ = run_for(
        user=request.user, run_id=run_id, role=Role.CONTRIBUTOR, what="sending heartbeats"
    )
    services.run_heartbeat(run=run)
    return Response({"status": run.status, "heartbeat_at": run.heartbeat_at})


@extend_schema(
    methods=["GET"],
    operation_id="run_children_list",
    summary="List a run's children",
    tags=["runs"],
    parameters=[
        OpenApiParameter(
            "recursive",
            str,
            enum=["1", "true", "True"],
            description="Every descendant, breadth first, instead of direct children.",
        ),
    ],
    responses={200: s.RunListSerializer, **s.errors(401, 404)},
)
@extend_schema(
    methods=["POST"],
    operation_id="run_children_create",
    summary="Create child runs",
    description="`count` makes that many children (status NotStarted); `runs` describes each.",
    tags=["runs"],
    request=s.RunChildrenRequestSerializer,
    responses={
        201: s.RunListSerializer,
        **s.errors(400, 401, 403, 404, 409, e409="A run with a given `run_id` exists."),
    },
)
@api_view(["GET", "POST"])
def run_children(request, run_id: str):
    if request.method == "POST":
        parent, _ = run_for(
            user=request.user, run_id=run_id, role=Role.CONTRIBUTOR, what="creating child runs"
        )
        data = _object(request)
        if data.get("runs") is not None:
            if not isinstance(data["runs"], list):
                raise InvalidInput("runs: must be a list of run descriptions.", field="runs")
            specs = [
                RunSpec.from_input(
                    item if isinstance(item, dict) else {},
                    field=f"runs[{i}].",
                    run_type="child",
                    status=RunStatus.NOT_STARTED,
                )
                for i, item in enumerate(data["runs"])
            ]
        else:
            count = data.get("count")
            if type(count) is not int:
                raise InvalidInput("count: a whole number of children is required.", field="count")
            specs = [RunSpec(run_type="child", status=RunStatus.NOT_STARTED)] * max(count, 0)
        children = services.run_create_children(parent=parent, specs=specs, submitter=request.user)
        children = list(
            selectors.with_run_details(
                parent.children.filter(pk__in=[c.pk for c in children])
            ).order_by("id")
        )
        return Response(
            {"results": [run_json(c, request) for c in children]}, status=status.HTTP_201_CREATED
        )
    run, _ = run_for(user=request.user, run_id=run_id)
    recursive = request.query_params.get("recursive") in ("1", "true", "True")
    children = selectors.run_children(run=run, recursive=recursive)
    return Response({"results": [run_json(c, request) for c in children]})


@extend_schema(
    methods=["GET"],
    operation_id="run_tags_retrieve",
    summary="A run's tags",
    tags=["runs"],
    responses={200: s.TagsSerializer, **s.errors(401, 404)},
)
@extend_schema(
    methods=["PATCH"],
    operation_id="run_tags_update",
    summary="Set and remove a run's tags",
    tags=["runs"],
    request=s.TagsUpdateRequestSerializer,
    responses={200: s.TagsSerializer, **s.errors(400, 401, 403, 404)},
)
@api_view(["GET", "PATCH"])
def run_tags(request, run_id: str):
    if request.method == "PATCH":
        run, _ = run_for(
            user=request.user, run_id=run_id, role=Role.CONTRIBUTOR, what="editing tags"
        )
        data = _object(request)
        remove = data.get("remove") or []
        if not isinstance(remove, list):
            raise InvalidInput("remove: must be a list of tag keys.", field="remove")
        services.run_set_tags(run=run, set_tags=data.get("set"), remove=remove)
    else:
        run, _ = run_for(user=request.user, run_id=run_id)
    return Response({"tags": selectors.run_tags(run=run)})


@extend_schema(
    methods=["GET"],
    operation_id="run_properties_retrieve",
    summary="A run's properties",
    tags=["runs"],
    responses={200: s.PropertiesSerializer, **s.errors(401, 404)},
)
@extend_schema(
    methods=["POST"],
    operation_id="run_properties_add",
    summary="Add properties to a run",
    description="Properties are immutable: a key keeps its first value.",
    tags=["runs"],
    request=s.PropertiesAddRequestSerializer,
    responses={
        200: s.PropertiesSerializer,
        **s.errors(400, 401, 403, 404, 409, e409="A key already has another value."),
    },
)
@api_view(["GET", "POST"])
def run_properties(request, run_id: str):
    if request.method == "POST":
        run, _ = run_for(
            user=request.user, run_id=run_id, role=Role.CONTRIBUTOR, what="adding properties"
        )
        services.run_add_properties(run=run, properties=_object(request).get("properties"))
    else:
        run, _ = run_for(user=request.user, run_id=run_id)
    return Response({"properties": selectors.run_properties(run=run)})


# ---------------------------------------------------------------------------------------------
# metrics


@extend_schema(
    operation_id="metric_batch_log",
    summary="Log a batch of metric values",
    description="Columnar: one entry per series with `values` and optional `steps` and "
    "`times`. The batch is validated whole; a failing batch writes nothing.",
    tags=["metrics"],
    request=s.MetricBatchRequestSerializer,
    responses={
        200: s.MetricBatchResultSerializer,
        **s.errors(
            400,
            401,
            403,
            404,
            409,
            413,
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
    return Response({"accepted": result.accepted, "duplicate": result.duplicate})


@extend_schema(
    operation_id="metric_list",
    summary="Summaries of a run's metrics",
    tags=["metrics"],
    responses={200: s.MetricSummaryListSerializer, **s.errors(401, 404)},
)
@api_view(["GET"])
def metric_list(request, run_id: str):
    run, _ = run_for(user=request.user, run_id=run_id)
    return Response({"metrics": selectors.metric_summaries(run=run)})


@extend_schema(
    operation_id="metric_values",
    summary="A run's metric values",
    tags=["metrics"],
    parameters=[
        OpenApiParameter("name", str, many=True, description="Metric names; default: all."),
    ],
    responses={200: s.MetricValuesSerializer, **s.errors(401, 404)},
)
@api_view(["GET"])
def metric_values(request, run_id: str):
    run, _ = run_for(user=request.user, run_id=run_id)
    names = request.query_params.getlist("name")
    return Response({"metrics": selectors.metric_values(run=run, names=names or None)})


@extend_schema(
    operation_id="metric_history",
    summary="A page of one metric's points",
    tags=["metrics"],
    parameters=[
        OpenApiParameter("name", str, required=True, description="The metric's name."),
        OpenApiParameter(
            "after_seq",
            int,
            default=-1,
            description="Points after this sequence number (`next_after_seq` of the last page).",
        ),
        OpenApiParameter(
            "limit",
            int,
            default=10_000,
            description=f"Points per page, 1–{limits.HISTORY_PAGE_MAX}.",
        ),
    ],
    responses={200: s.MetricHistorySerializer, **s.errors(400, 401, 404)},
)
@api_view(["GET"])
def metric_history(request, run_id: str):
    run, _ = run_for(user=request.user, run_id=run_id)
    name = request.query_params.get("name", "")
    after_seq = _int_param(request, "after_seq", -1, minimum=-1)
    limit = _int_param(request, "limit", 10_000, minimum=1, maximum=limits.HISTORY_PAGE_MAX)
    series, points, next_after = selectors.metric_history(
        run=run, name=name, after_seq=after_seq, limit=limit
    )
    if series is None:
        raise NotFound(f"Run {run.run_id} has no metric named {name!r}.", field="name")
    return Response(
        {"name": series.name, "kind": series.kind, "points": points, "next_after_seq": next_after}
    )


# ---------------------------------------------------------------------------------------------
# files


class RawParser(BaseParser):
    """Leaves the body unread so the file view can stream it to storage."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return None


@extend_schema(
    operation_id="file_list",
    summary="List a run's files",
    tags=["files"],
    parameters=[OpenApiParameter("prefix", str, description="Only paths starting with this.")],
    responses={200: s.RunFileListSerializer, **s.errors(401, 404)},
)
@api_view(["GET"])
def file_list(request, run_id: str):
    run, _ = run_for(user=request.user, run_id=run_id)
    files = selectors.run_files(run=run, prefix=request.query_params.get("prefix", ""))
    return Response(
        {"files": [{"path": f.path, "size": f.size, "updated_at": f.updated_at} for f in files]}
    )


@extend_schema(
    methods=["GET"],
    operation_id="file_download",
    summary="Download a run file",
    description="The whole file, streamed; or with `offset`/`length`, that range.",
    tags=["files"],
    parameters=[
        OpenApiParameter("offset", int, description="The first byte to read (default 0)."),
        OpenApiParameter(
            "length",
            int,
            description=f"Bytes to read, at most {limits.MAX_FILE_READ_BYTES} (the default).",
        ),
        OpenApiParameter(
            "X-File-Size",
            int,
            OpenApiParameter.HEADER,
            response=[200],
            description="The file's size.",
        ),
        OpenApiParameter(
            "X-Next-Offset",
            int,
            OpenApiParameter.HEADER,
            response=[200],
            description="With `offset`/`length`: where the next read starts.",
        ),
    ],
    responses={
        (200, "application/octet-stream"): OpenApiResponse(
            OpenApiTypes.BINARY, description="The file's bytes, or the requested range of them."
        ),
        **s.errors(400, 401, 404),
    },
)
@extend_schema(
    methods=["PUT"],
    operation_id="file_replace",
    summary="Upload a run file (replaces it)",
    tags=["files"],
    request=s.BINARY,
    responses={
        201: s.RunFileWrittenSerializer,
        **s.errors(
            400, 401, 403, 404, 413, e413=f"The file is over {limits.MAX_FILE_UPLOAD_BYTES} bytes."
        ),
    },
)
@extend_schema(
    methods=["POST"],
    operation_id="file_append",
    summary="Append to a run file",
    description="Creates the file if it is missing.",
    tags=["files"],
    parameters=[
        OpenApiParameter(
            "append", str, required=True, enum=["1", "true"], description="Required for POST."
        ),
    ],
    request=s.BINARY,
    responses={
        200: s.RunFileWrittenSerializer,
        **s.errors(
            400, 401, 403, 404, 413, e413=f"The body is over {limits.MAX_FILE_UPLOAD_BYTES} bytes."
        ),
    },
)
@api_view(["GET", "PUT", "POST"])
@parser_classes([RawParser])
def file_detail(request, run_id: str, path: str):
    if request.method in ("PUT", "POST"):
        run, _ = run_for(
            user=request.user, run_id=run_id, role=Role.CONTRIBUTOR, what="uploading files"
        )
        size = int(request.META.get("CONTENT_LENGTH") or 0)
        if size > limits.MAX_FILE_UPLOAD_BYTES:
            raise TooLarge(
                f"The file is {size} bytes; the limit is {limits.MAX_FILE_UPLOAD_BYTES}.",
                field="body",
            )
        append = request.method == "POST" and request.query_params.get("append") in ("1", "true")
        if request.method == "POST" and not append:
            raise InvalidInput(
                "append: POST appends and needs ?append=1; use PUT to replace.", field="append"
            )
        record = storage.run_file_write(run=run, path=path, stream=request._request, append=append)
        return Response(
            {"path": record.path, "size": record.size},
            status=status.HTTP_200_OK if append else status.HTTP_201_CREATED,
        )
    run, _ = run_for(user=request.user, run_id=run_id)
    if "offset" not in request.query_params and "length" not in request.query_params:
        record = storage.run_file_get(run=run, path=path)
        response = StreamingHttpResponse(
            storage.run_file_iter(run=run, path=path), content_type="application/octet-stream"
        )
        response["X-File-Size"] = str(record.size)
        return response
    offset = _int_param(request, "offset", 0)
    length = _int_param(
        request, "length", limits.MAX_FILE_READ_BYTES, maximum=limits.MAX_FILE_READ_BYTES
    )
    data, size = storage.run_file_read(run=run, path=path, offset=offset, length=length)
    response = HttpResponse(data, content_type="application/octet-stream")
    response["X-File-Size"] = str(size)
    response["X-Next-Offset"] = str(offset + len(data))
    return response


@extend_schema(
    operation_id="run_cancel",
    summary="Cancel a run",
    description="A worker-executed run becomes CancelRequested (its worker ends it); any other "
    "run Canceled at once.",
    tags=["runs"],
    request=None,
    responses={
        200: s.RunSerializer,
        **s.errors(401, 403, 404, 409, e409="The run has already finished."),
    },
)
@api_view(["POST"])
def run_cancel(request, run_id: str):
    run, _ = run_for(user=request.user, run_id=run_id, role=Role.CONTRIBUTOR, what="canceling runs")
    run = services.run_cancel(run=run, by=request.user)
    run, _ = run_for(user=request.user, run_id=run_id)
    return Response(run_json(run, request))


# ---------------------------------------------------------------------------------------------
# charts: a downsampled scalar series (runs/downsample.py)


def _float_param(request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InvalidInput(f"{name}: {raw!r} is not a finite number.", field=name)
    return value


@extend_schema(
    operation_id="metric_series",
    summary="A scalar metric, downsampled for charts",
    description="M4-downsampled points (runs/downsample.py); a range with few points comes "
    "back raw.",
    tags=["metrics"],
    parameters=[
        OpenApiParameter("name", str, required=True, description="The metric's name."),
        OpenApiParameter("x", str, enum=list(downsample.X_AXES), default="step"),
        OpenApiParameter(
            "buckets",
            int,
            default=downsample.DEFAULT_BUCKETS,
            description=f"1–{downsample.MAX_BUCKETS}.",
        ),
        OpenApiParameter("x_min", float, description="The range's start, in x units."),
        OpenApiParameter("x_max", float, description="The range's end, in x units."),
    ],
    responses={200: s.MetricSeriesSerializer, **s.errors(400, 401, 404)},
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
    return Response({"run_id": run.run_id, "name": series.name, **result.as_json()})


# ---------------------------------------------------------------------------------------------
# compute targets and script submission (docs/architecture.md, "Compute and execution")


def _target_overview_json(overview) -> dict:
    from runs.api.serializers import compute_target_json, worker_json

    return {
        **compute_target_json(
            overview.target,
            active=len(overview.active_runs),
            queued=len(overview.queued_runs),
        ),
        "workers": [worker_json(w) for w in overview.workers],
    }


@extend_schema(
    methods=["GET"],
    operation_id="compute_target_list",
    summary="List a workspace's compute targets, with their workers",
    tags=["compute"],
    responses={200: s.ComputeTargetListSerializer, **s.errors(401, 404)},
)
@extend_schema(
    methods=["POST"],
    operation_id="compute_target_create",
    summary="Create a compute target",
    description="Owners only.",
    tags=["compute"],
    request=s.ComputeTargetCreateRequestSerializer,
    responses={
        201: s.ComputeTargetSerializer,
        **s.errors(400, 401, 403, 404, 409, e409="A target with that name exists."),
    },
)
@api_view(["GET", "POST"])
def compute_target_list(request, workspace: str):
    from runs import compute
    from runs.api.serializers import compute_target_json

    if request.method == "POST":
        ws, _ = workspace_for(
            user=request.user, name=workspace, role=Role.OWNER, what="managing compute targets"
        )
        data = _object(request)
        target = compute.compute_target_create(
            workspace=ws,
            name=data.get("name"),
            capacity=data.get("capacity", 1),
            description=data.get("description") or "",
        )
        return Response(compute_target_json(target), status=status.HTTP_201_CREATED)
    ws, _ = workspace_for(user=request.user, name=workspace)
    overviews = compute.compute_target_overview(workspace=ws)
    return Response({"results": [_target_overview_json(o) for o in overviews]})


@extend_schema(
    methods=["GET"],
    operation_id="compute_target_retrieve",
    summary="One compute target, with its workers",
    tags=["compute"],
    responses={200: s.ComputeTargetOverviewSerializer, **s.errors(401, 404)},
)
@extend_schema(
    methods=["PATCH"],
    operation_id="compute_target_update",
    summary="Change a compute target's capacity or description",
    description="Owners only.",
    tags=["compute"],
    request=s.ComputeTargetUpdateRequestSerializer,
    responses={200: s.ComputeTargetSerializer, **s.errors(400, 401, 403, 404)},
)
@extend_schema(
    methods=["DELETE"],
    operation_id="compute_target_delete",
    summary="Delete a compute target",
    description="Owners only.",
    tags=["compute"],
    responses={
        204: OpenApiResponse(description="Deleted."),
        **s.errors(401, 403, 404, 409, e409="`local`, or a target with queued or running runs."),
    },
)
@api_view(["GET", "PATCH", "DELETE"])
def compute_target_detail(request, workspace: str, name: str):
    from runs import compute
    from runs.api.serializers import compute_target_json

    if request.method == "GET":
        ws, _ = workspace_for(user=request.user, name=workspace)
        compute.compute_target_get(workspace=ws, name=name)
        overview = next(
            o for o in compute.compute_target_overview(workspace=ws) if o.target.name == name
        )
        return Response(_target_overview_json(overview))
    ws, _ = workspace_for(
        user=request.user, name=workspace, role=Role.OWNER, what="managing compute targets"
    )
    target = compute.compute_target_get(workspace=ws, name=name)
    if request.method == "DELETE":
        compute.compute_target_delete(target=target)
        return Response(status=status.HTTP_204_NO_CONTENT)
    data = _object(request)
    target = compute.compute_target_update(
        target=target, capacity=data.get("capacity"), description=data.get("description")
    )
    return Response(compute_target_json(target))


@extend_schema(
    operation_id="run_submit",
    summary="Submit a script to run on a compute target",
    description="Creates the experiment if it is missing; the run is Queued.",
    tags=["compute"],
    request={"multipart/form-data": s.RunSubmitFormSerializer},
    responses={
        201: s.RunSerializer,
        **s.errors(
            400,
            401,
            403,
            404,
            413,
            e400="Invalid input, e.g. `field`: `compute_target`, `script` or `snapshot`.",
            e413="The snapshot is over its limits.",
        ),
    },
)
@api_view(["POST"])
@parser_classes([MultiPartParser])
def run_submit(request, workspace: str, experiment: str):
    """multipart/form-data: `config` (JSON: script, arguments, compute_target, display_name,
    description, tags, properties, parent_run_id) and `snapshot` (a zip of the source
    directory) → 201 with the Queued run."""
    import json

    ws, _ = workspace_for(
        user=request.user, name=workspace, role=Role.CONTRIBUTOR, what="submitting runs"
    )
    try:
        config = json.loads(request.data.get("config") or "{}")
    except ValueError:
        raise InvalidInput("config: not valid JSON.", field="config") from None
    if not isinstance(config, dict):
        raise InvalidInput("config: must be a JSON object.", field="config")
    archive = request.FILES.get("snapshot")
    if archive is None:
        raise InvalidInput("snapshot: a zip of the source directory is required.", field="snapshot")
    parent = None
    if config.get("parent_run_id"):
        parent, _ = run_for(
            user=request.user,
            run_id=str(config["parent_run_id"]),
            role=Role.CONTRIBUTOR,
            what="submitting child runs",
        )
    spec = RunSpec.from_input(
        {k: config.get(k) for k in ("display_name", "description", "tags", "properties")}
    )
    exp, _ = services.experiment_get_or_create(workspace=ws, name=experiment)
    run = services.run_submit(
        experiment=exp,
        script=config.get("script"),
        arguments=config.get("arguments"),
        compute_target=config.get("compute_target") or "",
        snapshot=archive,
        submitter=request.user,
        parent=parent,
        spec=spec,
    )
    run, _ = run_for(user=request.user, run_id=run.run_id)
    return Response(run_json(run, request), status=status.HTTP_201_CREATED)


# ---------------------------------------------------------------------------------------------
# alert rules (runs/alerts.py): members read them, owners change them; only owners see secrets

_ALERT_RULE_FIELDS = (
    "name",
    "statuses",
    "channel",
    "experiment",
    "recipients",
    "webhook_url",
    "enabled",
)


def _alert_rule_json(rule, *, owner: bool) -> dict:
    data = {
        "id": rule.pk,
        "name": rule.name,
        "statuses": rule.statuses,
        "experiment": rule.experiment.name if rule.experiment_id else None,
        "channel": rule.channel,
        "recipients": rule.recipient_list,
        "webhook_url": rule.webhook_url or None,
        "enabled": rule.enabled,
        "created_at": rule.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": rule.updated_at.isoformat().replace("+00:00", "Z"),
    }
    if owner and rule.secret:
        data["secret"] = rule.secret
    return data


def _alert_rule_fields(request) -> dict:
    data = _object(request)
    return {key: data[key] for key in _ALERT_RULE_FIELDS if key in data}


@extend_schema(
    methods=["GET"],
    operation_id="alert_rule_list",
    summary="List a workspace's alert rules",
    description="`secret` is only in an owner's answer.",
    tags=["alerts"],
    responses={200: s.AlertRuleListSerializer, **s.errors(401, 404)},
)
@extend_schema(
    methods=["POST"],
    operation_id="alert_rule_create",
    summary="Create an alert rule",
    description="Owners only.",
    tags=["alerts"],
    request=s.AlertRuleCreateRequestSerializer,
    responses={
        201: s.AlertRuleSerializer,
        **s.errors(400, 401, 403, 404, 409, e409="A rule with that name exists."),
    },
)
@api_view(["GET", "POST"])
def alert_rule_list(request, workspace: str):
    from runs import alerts

    if request.method == "POST":
        ws, _ = workspace_for(
            user=request.user, name=workspace, role=Role.OWNER, what="managing alert rules"
        )
        fields = {"name": None, "statuses": None, "channel": None, **_alert_rule_fields(request)}
        rule = alerts.alert_rule_create(workspace=ws, user=request.user, **fields)
        return Response(_alert_rule_json(rule, owner=True), status=status.HTTP_201_CREATED)
    ws, membership = workspace_for(user=request.user, name=workspace)
    owner = membership.allows(Role.OWNER)
    rules = alerts.alert_rule_list(workspace=ws)
    return Response({"results": [_alert_rule_json(r, owner=owner) for r in rules]})


@extend_schema(
    methods=["GET"],
    operation_id="alert_rule_retrieve",
    summary="One alert rule",
    description="`secret` is only in an owner's answer.",
    tags=["alerts"],
    responses={200: s.AlertRuleSerializer, **s.errors(401, 404)},
)
@extend_schema(
    methods=["PATCH"],
    operation_id="alert_rule_update",
    summary="Change an alert rule",
    description="Owners only; only the given fields change.",
    tags=["alerts"],
    request=s.AlertRuleUpdateRequestSerializer,
    responses={
        200: s.AlertRuleSerializer,
        **s.errors(400, 401, 403, 404, 409, e409="A rule with that name exists."),
    },
)
@extend_schema(
    methods=["DELETE"],
    operation_id="alert_rule_delete",
    summary="Delete an alert rule",
    description="Owners only.",
    tags=["alerts"],
    responses={204: OpenApiResponse(description="Deleted."), **s.errors(401, 403, 404)},
)
@api_view(["GET", "PATCH", "DELETE"])
def alert_rule_detail(request, workspace: str, name: str):
    from runs import alerts

    role = Role.READER if request.method == "GET" else Role.OWNER
    ws, membership = workspace_for(
        user=request.user, name=workspace, role=role, what="managing alert rules"
    )
    rule = alerts.alert_rule_list(workspace=ws).filter(name=name).first()
    if rule is None:
        raise NotFound(f"No alert rule named {name!r} in {ws.name!r}.", field="name")
    if request.method == "DELETE":
        alerts.alert_rule_delete(rule=rule, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
    if request.method == "PATCH":
        rule = alerts.alert_rule_update(rule=rule, user=request.user, **_alert_rule_fields(request))
    return Response(_alert_rule_json(rule, owner=membership.allows(Role.OWNER)))
