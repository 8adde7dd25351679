"""The compute page: each target of a workspace with its workers and its running and queued
runs (a live fragment polled by static/js/compute.js); owners add, resize and delete targets
through runs/services/compute.py."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from runs import links, selectors, services
from runs.errors import ServiceError
from runs.models import Role
from runs.views.common import load_workspace

LIVE_INTERVAL_SECONDS = 5


def _context(ws, membership, request) -> dict:
    return {
        "studio_url": links.studio_url(request),
        "workspace": ws,
        "membership": membership,
        "nav_section": "compute",
        "is_owner": membership.allows(Role.OWNER),
        "overview": selectors.compute_target_overview(workspace=ws),
        "live_interval": LIVE_INTERVAL_SECONDS,
    }


@login_required
def compute_page(request, workspace: str):
    ws, membership = load_workspace(request, workspace)
    return render(request, "runs/compute.html", _context(ws, membership, request))


@login_required
def compute_live(request, workspace: str):
    """The refreshed part of the page: targets, workers, running and queued runs."""
    ws, membership = load_workspace(request, workspace)
    return render(request, "runs/compute_live.html", _context(ws, membership, request))


def _capacity(raw: str):
    try:
        return int(raw)
    except (TypeError, ValueError):
        return raw  # the service names the field and the allowed range


@login_required
@require_POST
def target_create(request, workspace: str):
    ws, _ = load_workspace(request, workspace, role=Role.OWNER)
    name = request.POST.get("name", "").strip()
    try:
        services.compute_target_create(
            workspace=ws,
            name=name,
            capacity=_capacity(request.POST.get("capacity", "1")),
            description=request.POST.get("description", ""),
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Added compute target “{name}”.")
    return redirect("runs:compute", ws.name)


def _target(ws, name: str):
    try:
        return selectors.compute_target_get(workspace=ws, name=name)
    except ServiceError:
        raise Http404(f"No compute target named {name!r}.") from None


@login_required
@require_POST
def target_update(request, workspace: str, name: str):
    ws, _ = load_workspace(request, workspace, role=Role.OWNER)
    target = _target(ws, name)
    try:
        services.compute_target_update(
            target=target,
            capacity=_capacity(request.POST.get("capacity", target.capacity)),
            description=request.POST.get("description"),
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Saved compute target “{target.name}”.")
    return redirect("runs:compute", ws.name)


@login_required
@require_POST
def target_worker_key(request, workspace: str, name: str):
    """A new worker key, shown in this answer only (never stored in the session or a message);
    the page shows it once with the command that starts a worker."""
    ws, membership = load_workspace(request, workspace, role=Role.OWNER)
    target = _target(ws, name)
    try:
        key = services.compute_target_worker_key_rotate(target=target)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("runs:compute", ws.name)
    context = _context(ws, membership, request)
    context["new_key"] = {
        "target": target.name,
        "key": key,
        "command": selectors.worker_command(
            target=target, key=key, server_url=links.studio_url(request)
        ),
    }
    response = render(request, "runs/compute.html", context)
    response["Cache-Control"] = "no-store"  # the key must not linger in a cache
    return response


@login_required
@require_POST
def target_delete(request, workspace: str, name: str):
    ws, _ = load_workspace(request, workspace, role=Role.OWNER)
    target = _target(ws, name)
    try:
        services.compute_target_delete(target=target)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Deleted compute target “{target.name}”.")
    return redirect("runs:compute", ws.name)
