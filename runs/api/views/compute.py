"""Compute targets and their workers (docs/architecture.md, "Compute and execution")."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import api_view
from rest_framework.response import Response

from runs.access import workspace_for
from runs.api import schemas as s
from runs.api.serializers import (
    ComputeTargetListSerializer,
    ComputeTargetOverviewSerializer,
    ComputeTargetSerializer,
    ComputeTargetWorkerKeySerializer,
)
from runs.api.views.common import _object
from runs.models import Role


@extend_schema(
    methods=["GET"],
    operation_id="compute_target_list",
    summary="List a workspace's compute targets, with their workers",
    tags=["compute"],
    responses={200: ComputeTargetListSerializer},
)
@extend_schema(
    methods=["POST"],
    operation_id="compute_target_create",
    summary="Create a compute target",
    description="Owners only.",
    tags=["compute"],
    request=s.ComputeTargetCreateRequestSerializer,
    responses={
        201: ComputeTargetSerializer,
        **s.errors(e409="A target with that name exists."),
    },
)
@api_view(["GET", "POST"])
def compute_target_list(request, workspace: str):
    from runs import selectors, services

    if request.method == "POST":
        ws, _ = workspace_for(
            user=request.user, name=workspace, role=Role.OWNER, what="managing compute targets"
        )
        data = _object(request)
        target = services.compute_target_create(
            workspace=ws,
            name=data.get("name"),
            capacity=data.get("capacity", 1),
            description=data.get("description"),
        )
        return Response(ComputeTargetSerializer.render(target), status=status.HTTP_201_CREATED)
    ws, _ = workspace_for(user=request.user, name=workspace)
    overviews = selectors.compute_target_overview(workspace=ws)
    return Response(ComputeTargetListSerializer.render({"results": overviews}))


@extend_schema(
    methods=["GET"],
    operation_id="compute_target_retrieve",
    summary="One compute target, with its workers",
    tags=["compute"],
    responses={200: ComputeTargetOverviewSerializer},
)
@extend_schema(
    methods=["PATCH"],
    operation_id="compute_target_update",
    summary="Change a compute target's capacity or description",
    description="Owners only.",
    tags=["compute"],
    request=s.ComputeTargetUpdateRequestSerializer,
    responses={200: ComputeTargetSerializer},
)
@extend_schema(
    methods=["DELETE"],
    operation_id="compute_target_delete",
    summary="Delete a compute target",
    description="Owners only.",
    tags=["compute"],
    responses={
        204: OpenApiResponse(description="Deleted."),
        **s.errors(e409="`local`, or a target with queued or running runs."),
    },
)
@api_view(["GET", "PATCH", "DELETE"])
def compute_target_detail(request, workspace: str, name: str):
    from runs import selectors, services

    if request.method == "GET":
        ws, _ = workspace_for(user=request.user, name=workspace)
        selectors.compute_target_get(workspace=ws, name=name)
        overview = next(
            o for o in selectors.compute_target_overview(workspace=ws) if o.target.name == name
        )
        return Response(ComputeTargetOverviewSerializer.render(overview))
    ws, _ = workspace_for(
        user=request.user, name=workspace, role=Role.OWNER, what="managing compute targets"
    )
    target = selectors.compute_target_get(workspace=ws, name=name)
    if request.method == "DELETE":
        services.compute_target_delete(target=target)
        return Response(status=status.HTTP_204_NO_CONTENT)
    data = _object(request)
    target = services.compute_target_update(
        target=target, capacity=data.get("capacity"), description=data.get("description")
    )
    return Response(ComputeTargetSerializer.render(target))


@extend_schema(
    operation_id="compute_target_worker_key",
    summary="Make a compute target a new worker key",
    description=(
        "Owners only. The key is shown in this answer and never again (only its SHA-256 is "
        "stored); it replaces the target's previous key. A worker started with it "
        "(`runstudio worker -w WS -c TARGET --key KEY`) serves this target's queue and no "
        "other. `local` has no key (409): the server's own workers serve it."
    ),
    tags=["compute"],
    request=None,  # no body: the server makes the key (one sent is ignored)
    responses={
        201: ComputeTargetWorkerKeySerializer,
        **s.errors(e409="`local`, which the server's own workers serve."),
    },
)
@api_view(["POST"])
def compute_target_worker_key(request, workspace: str, name: str):
    from runs import links, selectors, services

    ws, _ = workspace_for(
        user=request.user, name=workspace, role=Role.OWNER, what="making worker keys"
    )
    target = selectors.compute_target_get(workspace=ws, name=name)
    key = services.compute_target_worker_key_rotate(target=target)
    command = selectors.worker_command(target=target, key=key, server_url=links.studio_url(request))
    return Response(
        ComputeTargetWorkerKeySerializer.render(target, key=key, command=command),
        status=status.HTTP_201_CREATED,
    )
