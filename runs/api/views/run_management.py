"""Run management through the REST API: archive, restore, delete for good, tag, untag and cancel
one run or many (runs/services/run_management.py holds the rules and the roles)."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework.decorators import api_view
from rest_framework.response import Response

from runs import limits
from runs.access import workspace_for
from runs.api import schemas as s
from runs.api.serializers import RunManageResultSerializer
from runs.api.views.common import _object
from runs.errors import InvalidInput
from runs.services import run_management

BODY_KEYS = ("action", "runs", "tags", "keys")


@extend_schema(
    operation_id="run_manage",
    summary="Archive, restore, delete, tag, untag or cancel runs",
    description="One action on one or more runs of the workspace, all or nothing (a run id "
    "that is not in the workspace is a 404 before anything changes). Contributors archive "
    "(the runs and their descendants are hidden from lists until restored), restore, tag, "
    "untag and cancel; owners also `delete` for good (the runs, their descendants and their "
    "files). Every action is recorded per named run.",
    tags=["runs"],
    request=inline_serializer(
        "RunManageRequest",
        {
            "action": drf_serializers.ChoiceField(list(run_management.ACTION_ROLES)),
            "runs": drf_serializers.ListField(
                child=drf_serializers.CharField(max_length=255),
                min_length=1,
                max_length=limits.RUN_BULK_MAX,
            ),
            "tags": drf_serializers.DictField(
                child=drf_serializers.CharField(allow_null=True),
                required=False,
                help_text="action=tag: {key: value, or null for a bare tag}.",
            ),
            "keys": drf_serializers.ListField(
                child=drf_serializers.CharField(),
                required=False,
                help_text="action=untag: the tag keys to remove.",
            ),
        },
    ),
    responses={
        200: RunManageResultSerializer,
        **s.errors(e409="action=delete: a run of the trees still executes on a worker."),
    },
)
@api_view(["POST"])
def run_manage(request, workspace: str):
    data = _object(request)
    for key in data:
        if key not in BODY_KEYS:
            raise InvalidInput(f"{key}: not a field (use {', '.join(BODY_KEYS)}).", field=key)
    action = run_management.run_action_check(action=data.get("action"))
    _, membership = workspace_for(
        user=request.user,
        name=workspace,
        role=run_management.ACTION_ROLES[action],
        what=f"to {action} runs",
    )
    result = run_management.run_bulk_apply(
        membership=membership,
        action=action,
        run_ids=data.get("runs"),
        tags=data.get("tags"),
        keys=data.get("keys"),
    )
    return Response(RunManageResultSerializer.render(result))
