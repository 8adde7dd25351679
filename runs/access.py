"""The one place that decides who may see and change what.

Every door loads workspaces and runs through these helpers: a user who is not a member
gets NotFound (the thing's existence does not leak), a member without the role gets Forbidden.
"""

from django.contrib.auth.models import AbstractBaseUser

from runs.errors import Forbidden, NotFound
from runs.models import Membership, Role, Run, Workspace


def _require(membership: Membership | None, role: str, what: str) -> None:
    if not membership.allows(role):
        raise Forbidden(
            f"You are a {membership.role} of workspace {membership.workspace.name!r}; "
            f"{what} needs the {role} role."
        )


def membership_for(*, user: AbstractBaseUser, workspace: Workspace) -> Membership | None:
    if not user.is_authenticated:
        return None
    return Membership.objects.filter(workspace=workspace, user=user).first()


def workspace_for(
    *, user: AbstractBaseUser, name: str, role: str = Role.READER, what: str = "this"
) -> tuple[Workspace, Membership]:
    membership = (
        Membership.objects.select_related("workspace")
        .filter(workspace__name=name, user=user)
        .first()
        if user.is_authenticated
        else None
    )
    if membership is None:
        raise NotFound(f"No workspace named {name!r}.", field="workspace")
    _require(membership, role, what)
    return membership.workspace, membership


def run_for(
    *, user: AbstractBaseUser, run_id: str, role: str = Role.READER, what: str = "this"
) -> tuple[Run, Membership]:
    run = (
        Run.objects.select_related("workspace", "experiment", "parent", "submitter")
        .filter(run_id=run_id)
        .first()
    )
    membership = membership_for(user=user, workspace=run.workspace) if run else None
    if membership is None:
        raise NotFound(f"No run with id {run_id!r}.", field="run_id")
    membership.workspace = run.workspace
    _require(membership, role, what)
    return run, membership
