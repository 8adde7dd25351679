"""Studio pages. Each loads through runs.access (outsiders get 404) and renders on the server."""

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render

from runs import selectors
from runs.access import run_for, workspace_for
from runs.errors import Forbidden, NotFound


def _or_404(load, **kwargs):
    try:
        return load(**kwargs)
    except (NotFound, Forbidden) as exc:
        raise Http404(exc.message) from None


@login_required
def home(request):
    memberships = selectors.membership_list(user=request.user)
    return render(request, "runs/home.html", {"memberships": memberships})


@login_required
def workspace_runs(request, workspace: str):
    ws, membership = _or_404(workspace_for, user=request.user, name=workspace)
    runs = selectors.run_list(workspace=ws, top_level=True)[:100]
    experiments = selectors.experiment_list(workspace=ws)
    return render(
        request,
        "runs/workspace.html",
        {"workspace": ws, "membership": membership, "runs": runs, "experiments": experiments},
    )


@login_required
def run_page(request, workspace: str, run_id: str):
    run, membership = _or_404(run_for, user=request.user, run_id=run_id)
    if run.workspace.name != workspace:
        raise Http404("No such run in this workspace.")
    context = {
        "run": run,
        "workspace": run.workspace,
        "membership": membership,
        "tags": selectors.run_tags(run=run),
        "properties": selectors.run_properties(run=run),
        "metrics": selectors.metric_summaries(run=run),
        "children": selectors.run_children(run=run),
        "files": selectors.run_files(run=run),
    }
    return render(request, "runs/run.html", context)
