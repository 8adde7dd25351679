"""Workspace and run lists."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from runs import selectors
from runs.views.common import load_workspace


@login_required
def home(request):
    memberships = selectors.membership_list(user=request.user)
    return render(request, "runs/home.html", {"memberships": memberships})


@login_required
def workspace_runs(request, workspace: str):
    ws, membership = load_workspace(request, workspace)
    runs = selectors.run_list(workspace=ws, top_level=True)[:100]
    experiments = selectors.experiment_list(workspace=ws)
    return render(
        request,
        "runs/workspace.html",
        {"workspace": ws, "membership": membership, "runs": runs, "experiments": experiments},
    )
