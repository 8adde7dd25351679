"""Workspaces, members, tokens."""

import hashlib
import secrets

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from runs import limits
from runs.errors import Conflict, InvalidInput
from runs.models import ApiToken, Membership, Role, Workspace
from runs.validation import check_pattern, check_text


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
        raise Conflict(f"A workspace named {name!r} already exists.", field="name") from None
    return workspace


def membership_set(*, workspace: Workspace, user: AbstractBaseUser, role: str) -> Membership:
    if role not in Role.values:
        raise InvalidInput(f"role: must be one of {', '.join(Role.values)}.", field="role")
    membership, _ = Membership.objects.update_or_create(
        workspace=workspace, user=user, defaults={"role": role}
    )
    return membership


def membership_remove(*, workspace: Workspace, user: AbstractBaseUser) -> None:
    with transaction.atomic():
        membership = Membership.objects.select_for_update().filter(workspace=workspace, user=user)
        owners = Membership.objects.filter(workspace=workspace, role=Role.OWNER)
        if owners.count() == 1 and owners.filter(user=user).exists():
            raise Conflict("A workspace keeps at least one owner; add another owner first.")
        membership.delete()


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_create(*, user: AbstractBaseUser, name: str = "") -> tuple[ApiToken, str]:
    """Returns the token and its key; the key is not stored and cannot be shown again."""
    check_text(name, field="name", max_length=100)
    key = "rs_" + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, prefix=key[:10], key_hash=_hash_key(key))
    return token, key


def token_authenticate(*, key: str) -> ApiToken | None:
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=_hash_key(key), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active:
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
