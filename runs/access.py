"""The one place that decides who may see and change what.

Every door loads workspaces and runs through these helpers: a user who is not a member
gets NotFound (the thing's existence does not leak), a member without the role gets Forbidden.

A request made with a run-scoped token (ApiToken.run: what a worker gives a submitted script)
carries the run on its user (scope_user, set by the token authentication), and these helpers
narrow the user's role to that run's tree: the run and its descendants with the user's role,
its ancestors read-only (`run.parent` in a child's script), nothing else — every other run,
and every workspace-level door, is the same NotFound an outsider gets. The only workspace
door such a token passes is submitting a child of a run in its tree (workspace_for's
`child_of`).
"""

from django.contrib.auth.models import AbstractBaseUser

from runs.errors import Forbidden, NotFound
from runs.models import Membership, Role, Run, Workspace
from runs.prepared import Prepared

SCOPE_ATTR = "runstudio_scope_run_pk"
# Parents are followed at most this far (a tree deeper than this is out of scope).
MAX_TREE_DEPTH = 10_000


def scope_user(user: AbstractBaseUser, run_pk: int) -> AbstractBaseUser:
    """Marks the request's user as acting through a token scoped to run `run_pk`."""
    setattr(user, SCOPE_ATTR, run_pk)
    return user


def run_scope(user: AbstractBaseUser) -> int | None:
    """The pk of the run the caller's token is scoped to; None for an ordinary caller."""
    return getattr(user, SCOPE_ATTR, None)


def _ancestors(run_pk: int) -> list[int]:
    """The pks above a run, parent first (one query per level)."""
    found: list[int] = []
    current = Run.objects.filter(pk=run_pk).values_list("parent_id", flat=True).first()
    while current is not None and current not in found and len(found) < MAX_TREE_DEPTH:
        found.append(current)
        current = Run.objects.filter(pk=current).values_list("parent_id", flat=True).first()
    return found


def _in_scope(scope: int, run: Run, role: str) -> bool:
    if run.pk == scope or scope in _ancestors(run.pk):
        return True  # the token's run or one of its descendants
    return role == Role.READER and run.pk in _ancestors(scope)


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


# The lookups every API and MLflow request makes, compiled once (runs/prepared.py). Names and
# ids are unique keys, so no order is needed.
_MEMBERSHIP_BY_NAME = Prepared(
    lambda name, user: Membership.objects.select_related("workspace").filter(
        workspace__name=name, user_id=user
    ),
    name=str,
    user=int,
)
_RUN_IN_WORKSPACE = Prepared(
    lambda run_id, workspace: Run.objects.filter(run_id=run_id, workspace_id=workspace),
    run_id=str,
    workspace=int,
)


def workspace_for(
    *,
    user: AbstractBaseUser,
    name: str,
    role: str = Role.READER,
    what: str = "this",
    child_of: str | None = None,
) -> tuple[Workspace, Membership]:
    """`child_of`: the operation creates a child of that run (submitting one); a run-scoped
    token may do that for a run in its tree, and nothing else at workspace level."""
    if run_scope(user) is not None:
        run = run_for(user=user, run_id=child_of, role=role, what=what)[0] if child_of else None
        if run is None or run.workspace.name != name:
            raise NotFound(f"No workspace named {name!r}.", field="workspace")
    membership = (
        _MEMBERSHIP_BY_NAME.first(name=name, user=user.pk) if user.is_authenticated else None
    )
    if membership is None:
        raise NotFound(f"No workspace named {name!r}.", field="workspace")
    _require(membership, role, what)
    return membership.workspace, membership


def run_in_workspace(*, user: AbstractBaseUser, membership: Membership, run_id: str) -> Run | None:
    """A run of the workspace the caller already holds `membership` of (from workspace_for),
    or None when it is elsewhere or does not exist: run_for's answer for a door that resolves
    the workspace on every request (the MLflow door, where this is the hot path of log-metric
    and log-batch). One query without joins; the run's workspace is the membership's, and its
    other relations load only if used. The caller checks the role (membership.allows)."""
    if run_scope(user) is not None:
        try:
            run = run_for(user=user, run_id=run_id)[0]
        except NotFound:
            return None
        return run if run.workspace_id == membership.workspace_id else None
    run = _RUN_IN_WORKSPACE.first(run_id=run_id, workspace=membership.workspace_id)
    if run is not None:
        run.workspace = membership.workspace
    return run


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
    scope = run_scope(user)
    if scope is not None and not _in_scope(scope, run, role):
        raise NotFound(f"No run with id {run_id!r}.", field="run_id")
    membership.workspace = run.workspace
    _require(membership, role, what)
    return run, membership
