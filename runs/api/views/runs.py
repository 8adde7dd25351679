"""Experiments and runs: create, list, detail, status, heartbeat, children, tags,
properties, cancel, and script submission (docs/architecture.md, "Compute and execution")."""

from django.http import QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import api_view, parser_classes
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from runs import limits, selectors, services
from runs.access import run_for, workspace_for
from runs.api import schemas as s
from runs.api.serializers import (
    ExperimentListSerializer,
    ExperimentSerializer,
    HeartbeatSerializer,
    PropertiesSerializer,
    RunListSerializer,
    RunPageSerializer,
    RunSerializer,
    TagsSerializer,
)
from runs.api.views.common import _flag_param, _object
from runs.api.views.run_pages import RUN_PAGE_PARAMETERS, run_search_page
from runs.errors import Conflict, InvalidInput, NotFound
from runs.filters import FILTER_NAMES
from runs.models import Role, RunStatus
from runs.services import RunSpec


@extend_schema(
    methods=["GET"],
    operation_id="experiment_list",
    summary="List a workspace's experiments",
    tags=["experiments"],
    responses={200: ExperimentListSerializer},
)
@extend_schema(
    methods=["POST"],
    operation_id="experiment_create",
    summary="Get or create an experiment",
    description="201 with a new experiment, or 200 with the existing one of that name.",
    tags=["experiments"],
    request=s.ExperimentCreateRequestSerializer,
    responses={
        200: ExperimentSerializer,
        201: ExperimentSerializer,
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
            ExperimentSerializer.render(experiment),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
    ws, _ = workspace_for(user=request.user, name=workspace)
    experiments = selectors.experiment_list(workspace=ws).select_related("workspace")
    experiments = experiments[: limits.LIST_MAX]  # every list answers a bounded number
    return Response(ExperimentListSerializer.render({"results": experiments, "next_cursor": None}))


@extend_schema(
    operation_id="experiment_retrieve",
    summary="One experiment",
    tags=["experiments"],
    responses={200: ExperimentSerializer},
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
    return Response(ExperimentSerializer.render(found))


@extend_schema(
    operation_id="run_create",
    summary="Start a run",
    description="Creates the experiment if it is missing. The run is Running unless `status` "
    "says otherwise.",
    tags=["runs"],
    request=s.RunSpecSerializer,
    responses={
        201: RunSerializer,
        **s.errors(e409="A run with that `run_id` exists."),
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
    return Response(RunSerializer.render(run, request=request), status=status.HTTP_201_CREATED)


@extend_schema(
    operation_id="run_list",
    summary="List and filter a workspace's runs",
    description="Newest first, or by `sort`; keyset-paged (`cursor`), with the total "
    "(`count`: exact up to LIST_TOTAL_MAX, then a bound, `count_relation`). "
    "The filters are the studio run list's (runs.filters.RunFilter); repeated `status` values "
    "are ORed, repeated `tag` and `property` values ANDed.",
    tags=["runs"],
    parameters=[
        *RUN_PAGE_PARAMETERS,
        OpenApiParameter("q", str, description="The search language (runs/query.py)."),
        OpenApiParameter("experiment", str, description="An experiment's name."),
        OpenApiParameter("status", str, many=True, enum=RunStatus.values),
        OpenApiParameter("tag", str, many=True, description="`key` or `key=value`."),
        OpenApiParameter("property", str, many=True, description="`key` or `key=value`."),
        OpenApiParameter("compute_target", str, description="A compute target's name."),
        OpenApiParameter("submitter", str, description="A username."),
        OpenApiParameter("created_from", s.DAY, description="Created on or after; empty: any."),
        OpenApiParameter("created_to", s.DAY, description="Created on or before; empty: any."),
        OpenApiParameter(
            "top_level",
            str,
            enum=["1", "0", "true", "false"],
            description="1: runs without a parent only.",
        ),
        OpenApiParameter("parent", str, description="The parent's run id: its children."),
        OpenApiParameter(
            "archived",
            str,
            enum=["0", "1", "all", "true", "false"],
            description="Archived runs are left out by default; 1: only them; all: both.",
        ),
    ],
    responses={200: RunPageSerializer},
)
@api_view(["GET"])
def run_list(request, workspace: str):
    """Filtered by runs.filters.RunFilter — the studio's run list uses the same one: `q` (the
    search language, runs/query.py), experiment, status, tag, property, compute_target,
    submitter, created_from, created_to, top_level, parent. Newest first or by `sort`,
    keyset-paged, with the pager's total (runs/api/views/run_pages.py)."""
    return _run_search_page(request, workspace, request.query_params)


@extend_schema(
    operation_id="run_search",
    summary="Search a workspace's runs with the parameters in the body",
    description="The run list (`GET …/runs`) for searches too long for a URL: a request line "
    "over the server's limit (gunicorn's 4094 bytes) never reaches the studio. The body holds "
    "the same parameters — repeatable ones as lists — plus `limit` and `cursor`; the answer "
    "is the same page.",
    tags=["runs"],
    # The body's fields are the GET list's query parameters, declared once (above): the schema
    # hook (runs/api/schema.py, _search_body) makes them its RunSearchRequest component.
    request=OpenApiTypes.OBJECT,
    responses={200: RunPageSerializer, 403: None},  # a search changes nothing
)
@api_view(["POST"])
def run_search(request, workspace: str):
    return _run_search_page(request, workspace, _search_params(_object(request)))


_SEARCH_KEYS = (*FILTER_NAMES, "limit", "cursor", "sort")


def _search_params(body: dict) -> QueryDict:
    """A POST search's body as the query string the GET list reads."""
    params = QueryDict(mutable=True)
    for key, value in body.items():
        if key not in _SEARCH_KEYS:
            raise InvalidInput(
                f"{key}: not a search parameter (use {', '.join(_SEARCH_KEYS)}).", field=key
            )
        values = value if isinstance(value, list) else [value]
        if len(values) > limits.TAGS_PER_REQUEST:
            raise InvalidInput(
                f"{key}: {len(values)} values; the limit is {limits.TAGS_PER_REQUEST}.", field=key
            )
        if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values):
            raise InvalidInput(f"{key}: give a string or a list of strings.", field=key)
        params.setlist(key, [str(v) for v in values])
    return params


def _run_search_page(request, workspace: str, params) -> Response:
    return run_search_page(request, workspace, params)  # runs/api/views/run_pages.py


@extend_schema(
    methods=["GET"],
    operation_id="run_retrieve",
    summary="Run details",
    tags=["runs"],
    responses={200: RunSerializer},
)
@extend_schema(
    methods=["PATCH"],
    operation_id="run_update",
    summary="Change a run's display name or description",
    tags=["runs"],
    request=s.RunUpdateRequestSerializer,
    responses={200: RunSerializer},
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
    return Response(RunSerializer.render(run, request=request))


@extend_schema(
    operation_id="run_status_set",
    summary="Move a run along its lifecycle",
    tags=["runs"],
    request=s.RunStatusRequestSerializer,
    responses={
        200: RunSerializer,
        **s.errors(e409="The transition is not allowed (e.g. out of a terminal state)."),
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
    ended_at = data.get("ended_at")
    updated = services.run_set_status(
        run=run,
        status=data.get("status"),
        by=request.user,
        error_code=error.get("code") or "",
        error_message=error.get("message") or "",
        ended_at=None
        if ended_at is None
        else services.check_client_time(ended_at, field="ended_at"),
    )
    run.status, run.started_at, run.ended_at = updated.status, updated.started_at, updated.ended_at
    run.error_code, run.error_message = updated.error_code, updated.error_message
    return Response(RunSerializer.render(run, request=request))


@extend_schema(
    operation_id="run_heartbeat",
    summary="Record that a live run is alive",
    tags=["runs"],
    request=None,
    responses={
        200: HeartbeatSerializer,
        **s.errors(e409="The run has finished (e.g. failed by the reaper)."),
    },
)
@api_view(["POST"])
def run_heartbeat(request, run_id: str):
    run, _ = run_for(
        user=request.user, run_id=run_id, role=Role.CONTRIBUTOR, what="sending heartbeats"
    )
    if run.is_terminal:
        # A client that was only slow learns that its run was ended (e.g. by the reaper) and
        # why; the SDK warns once and stops heartbeating (docs/architecture.md, "Reaping").
        why = f": {run.error_message}" if run.error_message else "."
        raise Conflict(
            f"Run {run.run_id} is {run.status}{why} Its metrics are still stored; a final status "
            "from the script replaces a heartbeat-timeout failure.",
            field="status",
            code="run_finished",
        )
    services.run_heartbeat(run=run)
    return Response(HeartbeatSerializer.render(run))


@extend_schema(
    methods=["GET"],
    operation_id="run_children_list",
    summary="List a run's children",
    tags=["runs"],
    parameters=[
        OpenApiParameter(
            "recursive",
            str,
            enum=["", "1", "0", "true", "false", "True", "False"],
            description="Every descendant, breadth first, instead of direct children.",
        ),
    ],
    responses={200: RunListSerializer},
)
@extend_schema(
    methods=["POST"],
    operation_id="run_children_create",
    summary="Create child runs",
    description="`count` makes that many children (status NotStarted); `runs` describes each.",
    tags=["runs"],
    request=s.RunChildrenRequestSerializer,
    responses={
        201: RunListSerializer,
        **s.errors(e409="A run with a given `run_id` exists."),
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
            if data.get("count") is not None:
                raise InvalidInput("count: give count or runs, not both.", field="count")
            if not isinstance(data["runs"], list):
                raise InvalidInput("runs: must be a list of run descriptions.", field="runs")
            if not all(isinstance(item, dict) for item in data["runs"]):
                raise InvalidInput("runs: each child is a run description.", field="runs")
            specs = [
                RunSpec.from_input(
                    item,
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
            # Checked before the list of specs is built: a count of 10**15 was a MemoryError.
            count = min(count, limits.MAX_CHILDREN_PER_REQUEST + 1)
            specs = [RunSpec(run_type="child", status=RunStatus.NOT_STARTED)] * max(count, 0)
        children = services.run_create_children(parent=parent, specs=specs, submitter=request.user)
        children = list(
            selectors.with_run_details(
                parent.children.filter(pk__in=[c.pk for c in children])
            ).order_by("id")
        )
        return Response(
            RunListSerializer.render({"results": children}, request=request),
            status=status.HTTP_201_CREATED,
        )
    run, _ = run_for(user=request.user, run_id=run_id)
    recursive = _flag_param(request, "recursive")
    children = selectors.run_children(run=run, recursive=recursive)
    return Response(RunListSerializer.render({"results": children}, request=request))


@extend_schema(
    methods=["GET"],
    operation_id="run_tags_retrieve",
    summary="A run's tags",
    tags=["runs"],
    responses={200: TagsSerializer},
)
@extend_schema(
    methods=["PATCH"],
    operation_id="run_tags_update",
    summary="Set and remove a run's tags",
    tags=["runs"],
    request=s.TagsUpdateRequestSerializer,
    responses={200: TagsSerializer},
)
@api_view(["GET", "PATCH"])
def run_tags(request, run_id: str):
    if request.method == "PATCH":
        run, _ = run_for(
            user=request.user, run_id=run_id, role=Role.CONTRIBUTOR, what="editing tags"
        )
        data = _object(request)
        remove = data.get("remove")
        remove = [] if remove is None else remove
        if not isinstance(remove, list):
            raise InvalidInput("remove: must be a list of tag keys.", field="remove")
        services.run_set_tags(run=run, set_tags=data.get("set"), remove=remove)
    else:
        run, _ = run_for(user=request.user, run_id=run_id)
    return Response(TagsSerializer.render({"tags": selectors.run_tags(run=run)}))


@extend_schema(
    methods=["GET"],
    operation_id="run_properties_retrieve",
    summary="A run's properties",
    tags=["runs"],
    responses={200: PropertiesSerializer},
)
@extend_schema(
    methods=["POST"],
    operation_id="run_properties_add",
    summary="Add properties to a run",
    description="Properties are immutable: a key keeps its first value.",
    tags=["runs"],
    request=s.PropertiesAddRequestSerializer,
    responses={
        200: PropertiesSerializer,
        **s.errors(e409="A key already has another value."),
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
    return Response(PropertiesSerializer.render({"properties": selectors.run_properties(run=run)}))


@extend_schema(
    operation_id="run_cancel",
    summary="Cancel a run",
    description="A worker-executed run becomes CancelRequested (its worker ends it); any other "
    "run Canceled at once.",
    tags=["runs"],
    request=None,
    responses={
        200: RunSerializer,
        **s.errors(e409="The run has already finished."),
    },
)
@api_view(["POST"])
def run_cancel(request, run_id: str):
    run, _ = run_for(user=request.user, run_id=run_id, role=Role.CONTRIBUTOR, what="canceling runs")
    run = services.run_cancel(run=run, by=request.user)
    run, _ = run_for(user=request.user, run_id=run_id)
    return Response(RunSerializer.render(run, request=request))


@extend_schema(
    operation_id="run_submit",
    summary="Submit a script to run on a compute target",
    description="Creates the experiment if it is missing; the run is Queued.",
    tags=["compute"],
    request={"multipart/form-data": s.RunSubmitFormSerializer},
    responses={
        201: RunSerializer,
        **s.errors(
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

    try:
        config = json.loads(request.data.get("config") or "{}")
    except RecursionError:
        raise InvalidInput(
            f"config: nested deeper than {limits.JSON_MAX_DEPTH} levels (JSON_MAX_DEPTH).",
            field="config",
        ) from None
    except ValueError:
        raise InvalidInput("config: not valid JSON.", field="config") from None
    if not isinstance(config, dict):
        raise InvalidInput("config: must be a JSON object.", field="config")
    ws, _ = workspace_for(
        user=request.user,
        name=workspace,
        role=Role.CONTRIBUTOR,
        what="submitting runs",
        child_of=str(config["parent_run_id"]) if config.get("parent_run_id") else None,
    )
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
    return Response(RunSerializer.render(run, request=request), status=status.HTTP_201_CREATED)
