"""REST API views: load through runs.access, validate, call one service or selector, respond."""

from django.contrib.auth import authenticate, get_user_model
from django.http import HttpResponse, StreamingHttpResponse
from rest_framework import status
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    parser_classes,
    permission_classes,
)
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from runs import limits, selectors, services, storage
from runs.access import run_for, workspace_for
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


def _pairs(values: list[str], *, field: str, need_value: bool) -> list[tuple[str, str | None]]:
    pairs = []
    for raw in values:
        key, sep, value = raw.partition("=")
        if not key or (need_value and not sep):
            raise InvalidInput(f"{field}: {raw!r} should be key=value.", field=field)
        pairs.append((key, value if sep else None))
    return pairs


# ---------------------------------------------------------------------------------------------
# tokens and the signed-in user


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


@api_view(["GET"])
def token_list(request):
    tokens = ApiToken.objects.filter(user=request.user, revoked_at__isnull=True).order_by("-id")
    return Response({"results": [token_json(t) for t in tokens]})


@api_view(["DELETE"])
def token_revoke(request, token_id: int):
    token = ApiToken.objects.filter(user=request.user, pk=token_id).first()
    if token is None:
        raise NotFound(f"No token with id {token_id}.", field="id")
    services.token_revoke(token=token)
    return Response(status=status.HTTP_204_NO_CONTENT)


@api_view(["GET"])
def me(request):
    memberships = selectors.membership_list(user=request.user)
    return Response(
        {"username": request.user.username, "workspaces": [membership_json(m) for m in memberships]}
    )


# ---------------------------------------------------------------------------------------------
# workspaces and members


@api_view(["GET", "POST"])
def workspace_list(request):
    if request.method == "POST":
        workspace = services.workspace_create(name=_object(request).get("name"), owner=request.user)
        membership = workspace.memberships.get(user=request.user)
        return Response(membership_json(membership), status=status.HTTP_201_CREATED)
    memberships = selectors.membership_list(user=request.user)
    return Response({"results": [membership_json(m) for m in memberships], "next_cursor": None})


@api_view(["GET"])
def workspace_detail(request, workspace: str):
    _, membership = workspace_for(user=request.user, name=workspace)
    return Response(membership_json(membership))


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


@api_view(["POST"])
def run_create(request, workspace: str, experiment: str):
    ws, _ = workspace_for(
        user=request.user, name=workspace, role=Role.CONTRIBUTOR, what="starting runs"
    )
    spec = RunSpec.from_input(_object(request))
    exp, _ = services.experiment_get_or_create(workspace=ws, name=experiment)
    run = services.run_create(experiment=exp, spec=spec, submitter=request.user)
    return Response(run_json(run, request), status=status.HTTP_201_CREATED)


@api_view(["GET"])
def run_list(request, workspace: str):
    ws, _ = workspace_for(user=request.user, name=workspace)
    params = request.query_params
    statuses = params.getlist("status")
    for value in statuses:
        if value not in RunStatus.values:
            raise InvalidInput(f"status: {value!r} is not a run status.", field="status")
    parent = None
    if params.get("parent"):
        parent, _ = run_for(user=request.user, run_id=params["parent"])
    runs = selectors.run_list(
        workspace=ws,
        experiment=params.get("experiment"),
        statuses=statuses,
        tags=_pairs(params.getlist("tag"), field="tag", need_value=False),
        properties=_pairs(params.getlist("property"), field="property", need_value=False),
        parent=parent,
        top_level=params.get("top_level") in ("1", "true"),
    )
    return _page(request, runs, lambda run: run_json(run, request))


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


@api_view(["POST"])
def run_heartbeat(request, run_id: str):
    run, _ = run_for(
        user=request.user, run_id=run_id, role=Role.CONTRIBUTOR, what="sending heartbeats"
    )
    services.run_heartbeat(run=run)
    return Response({"status": run.status, "heartbeat_at": run.heartbeat_at})


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


@api_view(["GET"])
def metric_list(request, run_id: str):
    run, _ = run_for(user=request.user, run_id=run_id)
    return Response({"metrics": selectors.metric_summaries(run=run)})


@api_view(["GET"])
def metric_values(request, run_id: str):
    run, _ = run_for(user=request.user, run_id=run_id)
    names = request.query_params.getlist("name")
    return Response({"metrics": selectors.metric_values(run=run, names=names or None)})


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


@api_view(["GET"])
def file_list(request, run_id: str):
    run, _ = run_for(user=request.user, run_id=run_id)
    files = selectors.run_files(run=run, prefix=request.query_params.get("prefix", ""))
    return Response(
        {"files": [{"path": f.path, "size": f.size, "updated_at": f.updated_at} for f in files]}
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


@api_view(["POST"])
def run_cancel(request, run_id: str):
    run, _ = run_for(user=request.user, run_id=run_id, role=Role.CONTRIBUTOR, what="canceling runs")
    run = services.run_cancel(run=run, by=request.user)
    run, _ = run_for(user=request.user, run_id=run_id)
    return Response(run_json(run, request))
