from django.core.exceptions import PermissionDenied
from django.http import Http404

from runs.access import run_for, workspace_for
from runs.errors import Forbidden, NotFound
from runs.models import Membership, Role, Run, Workspace


def load_workspace(request, name: str, role: str = Role.READER) -> tuple[Workspace, Membership]:
    """A workspace the signed-in user belongs to: 404 for outsiders, 403 without the role."""
    try:
        return workspace_for(user=request.user, name=name, role=role)
    except NotFound as exc:
        raise Http404(exc.message) from None
    except Forbidden as exc:
        raise PermissionDenied(exc.message) from None


def load_run(
    request, workspace: str, run_id: str, role: str = Role.READER
) -> tuple[Run, Membership]:
    try:
        run, membership = run_for(user=request.user, run_id=run_id, role=role)
    except NotFound as exc:
        raise Http404(exc.message) from None
    except Forbidden as exc:
        raise PermissionDenied(exc.message) from None
    if run.workspace.name != workspace:
        raise Http404("No such run in this workspace.")
    return run, membership
