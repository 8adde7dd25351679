"""Workspaces, members, tokens."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from runs import limits
from runs.errors import Conflict, InvalidInput, NotFound
from runs.models import ApiToken, Invitation, Membership, Role, Run, Workspace
from runs.prepared import Prepared
from runs.validation import check_line, check_pattern

INVITATION_MAX_AGE = timedelta(days=7)


def workspace_create(*, name: str, owner: AbstractBaseUser) -> Workspace:
    check_pattern(
        name,
        field="name",
        pattern=limits.WORKSPACE_NAME_RE,
        rule="1–64 letters, digits, '_', '.' or '-', starting with a letter or digit",
    )
    try:
        with transaction.atomic():
            workspace = Workspace.objects.create(name=name)
            Membership.objects.create(workspace=workspace, user=owner, role=Role.OWNER)
    except IntegrityError:
        # Names are global addresses (URLs), so this one door must say a name is taken; it
        # says nothing else about the workspace (docs/architecture.md, "No existence oracles").
        raise Conflict(
            f"The workspace name {name!r} is taken; choose another.", field="name"
        ) from None
    return workspace


def _lock_workspace(workspace: Workspace) -> None:
    """Serialises membership changes of one workspace: two owners demoting each other at
    once both count the owners after the other's change, so one of them gets the 409."""
    Workspace.objects.select_for_update().filter(pk=workspace.pk).first()


def _refuse_last_owner(*, workspace: Workspace, user: AbstractBaseUser, field: str) -> None:
    owners = Membership.objects.filter(workspace=workspace, role=Role.OWNER)
    if owners.filter(user=user).exists() and owners.count() == 1:
        raise Conflict(
            f"{user.get_username()!r} is the last owner of workspace {workspace.name!r}; "
            "a workspace keeps at least one owner, so make another member an owner first.",
            field=field,
            code="last_owner",
        )


def membership_check_demotion(*, workspace: Workspace, user: AbstractBaseUser) -> None:
    """Conflict if `user` is the workspace's last owner: what a form checks before it offers
    to save (the services check again under the lock)."""
    _refuse_last_owner(workspace=workspace, user=user, field="role")


def user_check_deletable(*, user: AbstractBaseUser) -> None:
    """Conflict if deleting the user would leave a workspace without an owner."""
    for membership in Membership.objects.filter(user=user, role=Role.OWNER).select_related(
        "workspace"
    ):
        _refuse_last_owner(workspace=membership.workspace, user=user, field="user")


def membership_set(*, workspace: Workspace, user: AbstractBaseUser, role: str) -> Membership:
    """Adds a member or changes a member's role; demoting the last owner is a 409."""
    if role not in Role.values:
        raise InvalidInput(f"role: must be one of {', '.join(Role.values)}.", field="role")
    with transaction.atomic():
        _lock_workspace(workspace)
        if role != Role.OWNER:
            _refuse_last_owner(workspace=workspace, user=user, field="role")
        membership, _ = Membership.objects.update_or_create(
            workspace=workspace, user=user, defaults={"role": role}
        )
    return membership


def membership_remove(*, workspace: Workspace, user: AbstractBaseUser) -> None:
    """Removes a member; removing the last owner is a 409."""
    with transaction.atomic():
        _lock_workspace(workspace)
        _refuse_last_owner(workspace=workspace, user=user, field="username")
        Membership.objects.filter(workspace=workspace, user=user).delete()


@dataclass(frozen=True)
class InvitationKey:
    invitation: Invitation
    key: str  # shown once, to the owner who invites; only its hash is stored


def membership_invite(
    *, workspace: Workspace, username: str, role: str, by: AbstractBaseUser
) -> InvitationKey:
    """An invitation for whoever signs in as `username`, for an owner to pass on. Made the same
    way whether or not such an account exists, so it tells the owner nothing about accounts
    they share no workspace with (docs/architecture.md, "No existence oracles")."""
    if role not in Role.values:
        raise InvalidInput(f"role: must be one of {', '.join(Role.values)}.", field="role")
    username = check_line(username, field="username", max_length=150)
    if not username.strip():
        raise InvalidInput("username: give the name the person signs in with.", field="username")
    key = "rsi_" + secrets.token_urlsafe(24)
    invitation = Invitation.objects.create(
        workspace=workspace,
        username=username,
        role=role,
        invited_by=by,
        key_hash=_hash_key(key),
        expires_at=timezone.now() + INVITATION_MAX_AGE,
    )
    return InvitationKey(invitation=invitation, key=key)


def membership_accept(*, user: AbstractBaseUser, key: str) -> tuple[Membership, bool]:
    """Joins the workspace an invitation names; returns the membership and whether it is new.
    Every reason to refuse — unknown, used, expired, meant for another account, or its inviter
    no longer an owner — is the same 404, so the key says nothing it should not. A member
    already keeps their role: an invitation never demotes."""
    refused = NotFound(
        "No invitation with that key for you: it may be used, expired (after "
        f"{INVITATION_MAX_AGE.days} days) or meant for another account.",
        field="invitation",
    )
    if not isinstance(key, str) or not key:
        raise refused
    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update()
            .select_related("workspace")
            .filter(key_hash=_hash_key(key), accepted_at__isnull=True)
            .first()
        )
        if (
            invitation is None
            or invitation.expires_at <= timezone.now()
            or invitation.username != user.get_username()
            or not Membership.objects.filter(
                workspace_id=invitation.workspace_id,
                user_id=invitation.invited_by_id,
                role=Role.OWNER,
            ).exists()
        ):
            raise refused
        workspace = invitation.workspace
        _lock_workspace(workspace)
        invitation.accepted_at = timezone.now()
        invitation.save(update_fields=["accepted_at"])
        membership, created = Membership.objects.get_or_create(
            workspace=workspace, user=user, defaults={"role": invitation.role}
        )
    return membership, created


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_create(
    *, user: AbstractBaseUser, name: str = "", run: Run | None = None
) -> tuple[ApiToken, str]:
    """Returns the token and its key; the key is not stored and cannot be shown again.

    With `run`, the token is scoped to that run: it reaches the run and its descendants only,
    with the user's role there (runs/access.py); a worker hands one to each script it starts."""
    check_line(name, field="name", max_length=100)
    key = "rs_" + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, prefix=key[:10], key_hash=_hash_key(key), run=run
    )
    return token, key


# Every API and MLflow request looks its token up: compiled once (runs/prepared.py).
_LIVE_TOKEN = Prepared(
    lambda key_hash: ApiToken.objects.select_related("user").filter(
        key_hash=key_hash, revoked_at__isnull=True
    ),
    key_hash=str,
)


def token_authenticate(*, key: str, run_scoped: bool = False) -> ApiToken | None:
    """The live token with this key, or None. A run-scoped token (ApiToken.run) counts only
    where the caller says it enforces the scope (`run_scoped=True`: the API's token
    authentication, through runs/access.py): any other door taking tokens would otherwise
    hand a script its user's whole reach."""
    token = _LIVE_TOKEN.first(key_hash=_hash_key(key))
    if token is None or not token.user.is_active:
        return None
    if token.run_id is not None and not run_scoped:
        return None
    now = timezone.now()
    # At most one write a minute, so a busy ingest loop does not write on every request.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def token_revoke(*, token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
