"""Alert rules (runs/services/alerts.py): members read them, owners change them; only owners see
secrets."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import api_view
from rest_framework.response import Response

from runs import limits, selectors
from runs.access import workspace_for
from runs.api import schemas as s
from runs.api.serializers import AlertRuleListSerializer, AlertRuleSerializer
from runs.api.views.common import _object
from runs.errors import NotFound
from runs.models import Role
from runs.services import alerts

_ALERT_RULE_FIELDS = (
    "name",
    "statuses",
    "channel",
    "experiment",
    "recipients",
    "webhook_url",
    "enabled",
)


def _alert_rule_fields(request) -> dict:
    data = _object(request)
    return {key: data[key] for key in _ALERT_RULE_FIELDS if key in data}


@extend_schema(
    methods=["GET"],
    operation_id="alert_rule_list",
    summary="List a workspace's alert rules",
    description="`secret` is only in an owner's answer.",
    tags=["alerts"],
    responses={200: AlertRuleListSerializer},
)
@extend_schema(
    methods=["POST"],
    operation_id="alert_rule_create",
    summary="Create an alert rule",
    description="Owners only.",
    tags=["alerts"],
    request=s.AlertRuleCreateRequestSerializer,
    responses={
        201: AlertRuleSerializer,
        **s.errors(e409="A rule with that name exists."),
    },
)
@api_view(["GET", "POST"])
def alert_rule_list(request, workspace: str):
    if request.method == "POST":
        ws, _ = workspace_for(
            user=request.user, name=workspace, role=Role.OWNER, what="managing alert rules"
        )
        fields = {"name": None, "statuses": None, "channel": None, **_alert_rule_fields(request)}
        rule = alerts.alert_rule_create(workspace=ws, user=request.user, **fields)
        return Response(
            AlertRuleSerializer.render(rule, owner=True), status=status.HTTP_201_CREATED
        )
    ws, membership = workspace_for(user=request.user, name=workspace)
    owner = membership.allows(Role.OWNER)
    rules = selectors.alert_rule_list(workspace=ws)[: limits.LIST_MAX]
    return Response(AlertRuleListSerializer.render({"results": rules}, owner=owner))


@extend_schema(
    methods=["GET"],
    operation_id="alert_rule_retrieve",
    summary="One alert rule",
    description="`secret` is only in an owner's answer.",
    tags=["alerts"],
    responses={200: AlertRuleSerializer},
)
@extend_schema(
    methods=["PATCH"],
    operation_id="alert_rule_update",
    summary="Change an alert rule",
    description="Owners only; only the given fields change.",
    tags=["alerts"],
    request=s.AlertRuleUpdateRequestSerializer,
    responses={
        200: AlertRuleSerializer,
        **s.errors(e409="A rule with that name exists."),
    },
)
@extend_schema(
    methods=["DELETE"],
    operation_id="alert_rule_delete",
    summary="Delete an alert rule",
    description="Owners only.",
    tags=["alerts"],
    responses={204: OpenApiResponse(description="Deleted.")},
)
@api_view(["GET", "PATCH", "DELETE"])
def alert_rule_detail(request, workspace: str, name: str):
    role = Role.READER if request.method == "GET" else Role.OWNER
    ws, membership = workspace_for(
        user=request.user, name=workspace, role=role, what="managing alert rules"
    )
    rule = selectors.alert_rule_list(workspace=ws).filter(name=name).first()
    if rule is None:
        raise NotFound(f"No alert rule named {name!r} in {ws.name!r}.", field="name")
    if request.method == "DELETE":
        alerts.alert_rule_delete(rule=rule, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
    if request.method == "PATCH":
        rule = alerts.alert_rule_update(rule=rule, user=request.user, **_alert_rule_fields(request))
    return Response(AlertRuleSerializer.render(rule, owner=membership.allows(Role.OWNER)))
