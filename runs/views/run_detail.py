"""One run's page and its tabs."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from runs import selectors
from runs.views.common import load_run


@login_required
def run_page(request, workspace: str, run_id: str):
    run, membership = load_run(request, workspace, run_id)
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
