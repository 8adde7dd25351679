"""Tokens, the signed-in user, workspaces and members."""

from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from runs import limits, selectors, services
from runs.access import workspace_for
from runs.api import schemas as s
from runs.api.serializers import (
    InvitationSerializer,
    MemberListSerializer,
    MemberSerializer,
    MeSerializer,
    TokenCreatedSerializer,
    TokenListSerializer,
    WorkspaceListSerializer,
    WorkspaceSerializer,
)
from runs.api.views.common import _object
from runs.errors import InvalidInput, NotFound
from runs.models import ApiToken, Role


@extend_schema(
    operation_id="token_create",
    summary="Create an API token",
    description="Signs in with a password and returns a new token; the key is shown this once.",
    tags=["auth"],
    request=s.TokenCreateRequestSerializer,
    responses={
        201: TokenCreatedSerializer,
        **s.errors(e401="Wrong username or password."),
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
    return Response(TokenCreatedSerializer.render(token, key=key), status=status.HTTP_201_CREATED)


@extend_schema(
    operation_id="token_list",
    summary="List the caller's tokens",
    description="The caller's unrevoked tokens, newest first, without their keys.",
    tags=["auth"],
    responses={200: TokenListSerializer},
)
@api_view(["GET"])
def token_list(request):
    tokens = ApiToken.objects.filter(user=request.user, revoked_at__isnull=True).order_by("-id")
    tokens = tokens[: limits.LIST_MAX]  # every list answers a bounded number of items
    return Response(TokenListSerializer.render({"results": tokens}))


@extend_schema(
    operation_id="token_revoke",
    summary="Revoke one of the caller's tokens",
    tags=["auth"],
    responses={204: OpenApiResponse(description="Revoked.")},
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
    responses={200: MeSerializer},
)
@api_view(["GET"])
def me(request):
    memberships = selectors.membership_list(user=request.user)
    return Response(
        MeSerializer.render({"username": request.user.username, "workspaces": memberships})
    )


@extend_schema(
    methods=["GET"],
    operation_id="workspace_list",
    summary="List the caller's workspaces",
    description="Every workspace the caller belongs to, with the caller's role (one page).",
    tags=["workspaces"],
    responses={200: WorkspaceListSerializer},
)
@extend_schema(
    methods=["POST"],
    operation_id="workspace_create",
    summary="Create a workspace",
    description="The caller becomes its owner.",
    tags=["workspaces"],
    request=s.WorkspaceCreateRequestSerializer,
    responses={
        201: WorkspaceSerializer,
        **s.errors(e409="A workspace with that name exists."),
    },
)
@api_view(["GET", "POST"])
def workspace_list(request):
    if request.method == "POST":
        workspace = services.workspace_create(name=_object(request).get("name"), owner=request.user)
        membership = workspace.memberships.get(user=request.user)
        return Response(WorkspaceSerializer.render(membership), status=status.HTTP_201_CREATED)
    memberships = selectors.membership_list(user=request.user)[: limits.LIST_MAX]
    return Response(WorkspaceListSerializer.render({"results": memberships, "next_cursor": None}))


@extend_schema(
    operation_id="workspace_retrieve",
    summary="One workspace, with the caller's role",
    tags=["workspaces"],
    responses={200: WorkspaceSerializer},
)
@api_view(["GET"])
def workspace_detail(request, workspace: str):
    _, membership = workspace_for(user=request.user, name=workspace)
    return Response(WorkspaceSerializer.render(membership))


@extend_schema(
    methods=["GET"],
    operation_id="member_list",
    summary="List a workspace's members",
    tags=["workspaces"],
    responses={200: MemberListSerializer},
)
@extend_schema(
    methods=["POST"],
    operation_id="member_set",
    summary="Add a member or change a member's role",
    description="Owners only. Someone who shares a workspace with the caller is added (or "
    "their role changed) at once: 201. Anyone else gets an invitation to accept: 202, the same "
    "answer whether or not the account exists. A workspace keeps at least one owner.",
    tags=["workspaces"],
    request=s.MemberSetRequestSerializer,
    responses={
        201: MemberSerializer,
        202: InvitationSerializer,
        **s.errors(e409="The last owner cannot be demoted."),
    },
)
@api_view(["GET", "POST"])
def member_list(request, workspace: str):
    if request.method == "POST":
        ws, _ = workspace_for(
            user=request.user, name=workspace, role=Role.OWNER, what="managing members"
        )
        data = _object(request)
        username, role = data.get("username"), data.get("role", Role.READER)
        user = selectors.user_visible_to(viewer=request.user, username=username)
        if user is None:
            # No account, or one the caller shares no workspace with: the same answer.
            made = services.membership_invite(
                workspace=ws, username=username, role=role, by=request.user
            )
            return Response(InvitationSerializer.render(made), status=status.HTTP_202_ACCEPTED)
        membership = services.membership_set(workspace=ws, user=user, role=role)
        return Response(MemberSerializer.render(membership), status=status.HTTP_201_CREATED)
    ws, _ = workspace_for(user=request.user, name=workspace)
    members = selectors.member_list(workspace=ws)[: limits.LIST_MAX]
    return Response(MemberListSerializer.render({"results": members}))


@extend_schema(
    operation_id="member_remove",
    summary="Remove a member",
    description="Owners only. A workspace keeps at least one owner.",
    tags=["workspaces"],
    responses={
        204: OpenApiResponse(description="Removed."),
        **s.errors(e409="The last owner cannot be removed."),
    },
)
@api_view(["DELETE"])
def member_remove(request, workspace: str, username: str):
    ws, _ = workspace_for(
        user=request.user, name=workspace, role=Role.OWNER, what="managing members"
    )
    membership = (
        ws.memberships.filter(user__username=username).select_related("user").first()
        if "\x00" not in username  # no one's name, and PostgreSQL refuses it in a query
        else None
    )
    if membership is None:
        raise NotFound(f"{username!r} is not a member of {ws.name!r}.", field="username")
    services.membership_remove(workspace=ws, user=membership.user)
    return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(
    operation_id="invitation_accept",
    summary="Accept an invitation to a workspace",
    description="The invitee (signed in as the invited username) joins with the invited role; "
    "201 when they join, 200 when already a member (their role is kept). Unknown, used, "
    "expired or someone else's invitations are one 404.",
    tags=["workspaces"],
    request=s.InvitationAcceptRequestSerializer,
    responses={
        200: WorkspaceSerializer,
        201: WorkspaceSerializer,
        **s.errors(404),
    },
)
@api_view(["POST"])
def invitation_accept(request):
    membership, created = services.membership_accept(
        user=request.user, key=_object(request).get("invitation")
    )
    return Response(
        WorkspaceSerializer.render(membership),
        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
    )
