"""Run management in the studio: the Archived page and the one POST every management form uses
(the run list's selection, the Archived page, the run page). The rules, the roles and the record
are runs/services/run_management.py's; this view only reads the form and says what happened."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from runs.errors import Forbidden, ServiceError
from runs.forms import ListState
from runs.models import Role, RunAction, RunActivity
from runs.services import run_management
from runs.views.common import load_workspace
from runs.views.lists import _run_list

ACTIVITY_SHOWN = 50

DONE = {
    RunAction.ARCHIVE: "Archived",
    RunAction.RESTORE: "Restored",
    RunAction.DELETE: "Deleted for good",
    RunAction.TAG: "Tagged",
    RunAction.UNTAG: "Removed the tags from",
    RunAction.CANCEL: "Canceled",
}


@login_required
def archived_page(request, workspace: str):
    ws, membership = load_workspace(request, workspace)
    state = ListState.from_query(request.GET)
    state.data["archived"] = "1"
    activity = (
        RunActivity.objects.filter(workspace=ws)
        .select_related("by")
        .order_by("-at", "-id")[:ACTIVITY_SHOWN]
    )
    return _run_list(request, ws, membership, state, archived=True, activity=list(activity))


def _back(request, ws) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("runs:run-list", args=[ws.name])


def _key_values(raw: str) -> dict[str, str | None]:
    """`key=value, other, k2=v2` → tags; a key alone is a bare tag."""
    tags: dict[str, str | None] = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        tags[key.strip()] = value.strip() if sep else None
    return tags


@login_required
@require_POST
def run_manage(request, workspace: str):
    action = request.POST.get("action", "")
    role = run_management.ACTION_ROLES.get(action, Role.CONTRIBUTOR)
    ws, membership = load_workspace(request, workspace, role=role)
    back = _back(request, ws)
    try:
        result = run_management.run_bulk_apply(
            membership=membership,
            action=action,
            run_ids=request.POST.getlist("run"),
            tags=_key_values(request.POST.get("tags", "")),
            keys=[k.strip() for k in request.POST.get("keys", "").split(",") if k.strip()],
        )
    except Forbidden as exc:
        raise PermissionDenied(exc.message) from None
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    done = len(result.runs) - len(result.skipped)
    text = f"{DONE[result.action]} {done} run{'s' if done != 1 else ''}"
    if result.action in (RunAction.ARCHIVE, RunAction.RESTORE, RunAction.DELETE):
        if result.affected > done:
            text += f" ({result.affected} with their child runs)"
    if result.skipped:
        text += f"; {len(result.skipped)} had nothing to do"
    messages.success(request, text + ".")
    if result.action == RunAction.DELETE and request.POST.get("next_after_delete"):
        return redirect(reverse("runs:run-list", args=[ws.name]))
    return redirect(back)
