"""Workspaces, experiments, run lists (with the search language), the CSV export, the live
status fragment and custom views."""

import csv
import itertools
import math
import re
from datetime import datetime, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseBadRequest, QueryDict, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_POST

from runs import limits, selectors
from runs.budget import query_budget
from runs.errors import Forbidden, InvalidInput, NotFound
from runs.forms import PAGE_SIZE, STANDARD_COLUMNS, ListState, ViewSaveForm
from runs.models import TERMINAL_STATUSES, Role, RunStatus
from runs.query import ATTRIBUTES, Field
from runs.run_tree import run_tree_page, tree_root_set
from runs.selectors.run_pages import (
    RunSet,
    count_number,
    count_words,
    run_count,
    run_order,
    run_page,
)
from runs.services import saved_views
from runs.views.common import load_workspace


@login_required
def home(request):
    memberships = selectors.membership_list(user=request.user)
    return render(request, "runs/home.html", {"memberships": memberships})


@login_required
def experiments_page(request, workspace: str):
    ws, membership = load_workspace(request, workspace)
    experiments = selectors.experiment_overview(workspace=ws)
    context = {"workspace": ws, "membership": membership, "experiments": experiments}
    return render(request, "runs/experiments.html", context | {"nav_section": "experiments"})


@login_required
def run_list_page(request, workspace: str):
    ws, membership = load_workspace(request, workspace)
    return _run_list(request, ws, membership, ListState.from_query(request.GET))


@login_required
def experiment_page(request, workspace: str, experiment: str):
    ws, membership = load_workspace(request, workspace)
    exp = get_object_or_404(ws.experiments, name=experiment)
    state = ListState.from_query(request.GET)
    state.data["experiment"] = exp.name
    return _run_list(request, ws, membership, state, experiment=exp)


@login_required
def view_page(request, workspace: str, view_id: int):
    ws, membership = load_workspace(request, workspace)
    view = _load_view(request, ws, view_id)
    # Opened plain, a view shows exactly what was saved; changed, the page keeps the changes.
    data = request.GET if request.GET else saved_views.params_to_query(view.params)
    return _run_list(request, ws, membership, ListState.from_query(data), view=view)


def _run_list(request, ws, membership, state: ListState, *, experiment=None, view=None, **extra):
    filterset = selectors.run_filterset(workspace=ws, params=state.data)
    page, total = None, None
    tree = state.data.get("top_level") in ("0", "false")
    if filterset.is_valid():
        try:
            runs = RunSet(filterset.qs, filterset.probe_qs(), ws.pk)
            order = run_order(state.sort)
            with query_budget():  # a search may not hold the worker (runs/budget.py)
                if tree:
                    # Child runs included: each sits under its parent (runs/run_tree.py).
                    total = run_count(runs=tree_root_set(runs))
                    page = run_tree_page(
                        runs=runs,
                        order=order,
                        columns=state.columns,
                        offset=_offset(state),
                        limit=PAGE_SIZE,
                        count=total,
                    )
                else:
                    total = run_count(runs=runs)
                    page, _ = run_page(
                        runs=runs,
                        order=order,
                        columns=state.columns,
                        offset=_offset(state),
                        limit=PAGE_SIZE,
                        count=total,
                    )
        except InvalidInput as exc:
            state.errors.append(exc.message)
    context = {
        "workspace": ws,
        "membership": membership,
        # An experiment's runs sit under Experiments in the top bar, where they were opened.
        "nav_section": "views" if view else "experiments" if experiment else "runs",
        "experiment": experiment,
        "view": view,
        "can_edit_view": view is not None and view.owner_id == request.user.pk,
        "views": selectors.view_list(workspace=ws, user=request.user),
        "state": state,
        "filterset": filterset,
        "experiments": [] if experiment else ws.experiments.order_by("name"),
        "form_action": request.path,
        "terminal_statuses": sorted(TERMINAL_STATUSES),
        "compare_url": _compare_url(ws),
        # Exact up to LIST_TOTAL_MAX, then "about …" (PostgreSQL) or "more than …" (SQLite).
        "total": total,
        "total_of": count_number(total),
        "total_words": count_words(total, "top-level run" if tree else "run"),
        "can_manage": membership.allows(Role.CONTRIBUTOR),
        "can_purge": membership.allows(Role.OWNER),
        **_table_context(state, page),
        **extra,
    }
    # A search or filter that cannot run is the request's fault: the page still shows the
    # form with the error next to it, under a 400 like the API's and the CSV's.
    invalid = not filterset.is_valid() or state.errors
    return render(request, "runs/list_runs.html", context, status=400 if invalid else 200)


def _offset(state: ListState) -> int:
    return (state.page - 1) * PAGE_SIZE


def _compare_url(ws) -> str:
    """The compare page for selected runs (runs/views/charts.py): ?run=<id>&run=<id>…"""
    try:
        return reverse("runs:compare", args=[ws.name])
    except NoReverseMatch:  # until the charts pages land
        return f"/w/{ws.name}/compare/"


def _table_context(state: ListState, page) -> dict:
    """What the template needs to draw the filters, the column picker, the rows and pager."""
    depths = getattr(page, "depths", {})
    child_counts = getattr(page, "child_counts", {})
    rows = (
        [
            (
                run,
                list(zip(state.columns, values, strict=True)),
                depths.get(run.pk, 0),
                child_counts.get(run.pk, 0),
            )
            for run, values in page.rows
        ]
        if page
        else []
    )
    on_page = {run.run_id for run, *_ in rows}
    suggestions: dict[str, None] = {}
    for run, *_ in rows:
        for tag in run.tags.all():
            suggestions[Field("tag", tag.key).key] = None
        for prop in run.properties.all():
            suggestions[Field("property", prop.key).key] = None
    for name in page.metric_names if page else []:
        for agg in ("last", "min", "max"):
            suggestions[Field("metric", name, agg).key] = None
    return {
        "page": page,
        "rows": rows,
        "tree": hasattr(page, "depths"),
        "tree_max": limits.TREE_DESCENDANTS_MAX,
        "sort_links": state.sort_links(),
        "first_index": _offset(state) + 1,
        # A tree page is paged by top-level run: its range counts those, not the children
        # under them ("Top-level runs 1–6 of 6", not "1–19 of 6").
        "last_index": _offset(state) + sum(1 for _, _, depth, _ in rows if depth == 0),
        "prev_url": state.page_url(state.page - 1),
        "next_url": state.page_url(state.page + 1),
        "selected_elsewhere": [r for r in state.selected if r not in on_page],
        "filter_values": {
            name: [v for v in state.data.getlist(name) if v]
            for name in ("status", "tag", "property")
        },
        "status_choices": RunStatus.choices,
        "standard_columns": [ATTRIBUTES[name] for name in STANDARD_COLUMNS],
        "chosen_keys": [c.key for c in state.columns],
        "column_suggestions": sorted(suggestions),
    }


# OWASP's CSV injection rule: a cell a spreadsheet would read as a formula starts with one of
# these; such text gets a leading single quote. A plain number ("-0.5", a tag's value) is left
# alone — it cannot be a formula, and a quote would turn data into text; the numbers this
# export writes itself (metrics, durations) never pass through here as text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _csv_cell(value) -> str:
    if isinstance(value, str):
        if value.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
            return "'" + value
        return value
    return _csv_text(value)


def _csv_text(value) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value.total_seconds():.3f}"
    return str(value)


class _Echo:
    def write(self, value: str) -> str:
        return value


@login_required
def run_list_csv(request, workspace: str):
    ws, _ = load_workspace(request, workspace)
    state = ListState.from_query(request.GET)
    try:
        runs = selectors.run_sort(
            runs=selectors.run_search(workspace=ws, params=state.data), sort=state.sort
        )
        rows = selectors.run_rows_iter(runs=runs, columns=state.columns)
        # The search runs under the time budget up to its first row; the rest streams.
        with query_budget():
            first = next(rows, None)
    except InvalidInput as exc:
        return HttpResponseBadRequest(exc.message, content_type="text/plain; charset=utf-8")
    writer = csv.writer(_Echo())

    # The run id leads every row, so a row always says which run it is.
    columns = [c for c in state.columns if c.key != "run_id"]
    keep = [i for i, c in enumerate(state.columns) if c.key != "run_id"]

    def lines():
        yield writer.writerow(["run_id", *(_csv_cell(c.key) for c in columns)])
        for run, values in itertools.chain([first] if first else [], rows):
            yield writer.writerow([_csv_cell(run.run_id), *(_csv_cell(values[i]) for i in keep)])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{ws.name}-runs.csv"'
    return response


@login_required
def run_statuses(request, workspace: str):
    """The live-status fragment the lists poll: one status pill per requested run id."""
    ws, _ = load_workspace(request, workspace)
    statuses = selectors.run_statuses(workspace=ws, run_ids=request.GET.getlist("run"))
    return render(request, "runs/includes/list_statuses.html", {"statuses": statuses})


# ---------------------------------------------------------------------------------------------
# Custom views


def _load_view(request, ws, view_id: int):
    try:
        return selectors.view_get(workspace=ws, user=request.user, view_id=view_id)
    except NotFound as exc:
        raise Http404(exc.message) from None


def _state_params(raw: str) -> dict:
    return saved_views.params_from_query(QueryDict(raw or ""))


@login_required
def views_page(request, workspace: str):
    ws, membership = load_workspace(request, workspace)
    views = selectors.view_list(workspace=ws, user=request.user)
    context = {"workspace": ws, "membership": membership, "views": views, "nav_section": "views"}
    return render(request, "runs/views_list.html", context)


@login_required
@require_POST
def view_create(request, workspace: str):
    ws, _ = load_workspace(request, workspace)
    form = ViewSaveForm(request.POST)
    back = reverse("runs:run-list", args=[ws.name]) + "?" + request.POST.get("state", "")
    if not form.is_valid():
        messages.error(request, "Give the view a name (at most 100 characters).")
        return redirect(back)
    try:
        view = saved_views.view_save(
            workspace=ws,
            owner=request.user,
            name=form.cleaned_data["name"],
            shared=form.cleaned_data["shared"],
            params=_state_params(form.cleaned_data["state"]),
        )
    except InvalidInput as exc:
        messages.error(request, exc.message)
        return redirect(back)
    messages.success(request, f"Saved view “{view.name}”.")
    return redirect(view.get_absolute_url())


@login_required
@require_POST
def view_edit(request, workspace: str, view_id: int):
    """The owner saves the page's current state into the view, renames it or (un)shares it."""
    ws, _ = load_workspace(request, workspace)
    view = _load_view(request, ws, view_id)
    post = request.POST
    try:
        saved_views.view_update(
            view=view,
            user=request.user,
            name=post.get("name") if "name" in post else None,
            shared=(post.get("shared") == "on") if "sharing" in post else None,
            params=_state_params(post["state"]) if "state" in post else None,
        )
    except Forbidden as exc:
        raise PermissionDenied(exc.message) from None
    except InvalidInput as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Updated view “{view.name}”.")
    return redirect(view.get_absolute_url())


@login_required
@require_POST
def view_remove(request, workspace: str, view_id: int):
    ws, _ = load_workspace(request, workspace)
    view = _load_view(request, ws, view_id)
    try:
        saved_views.view_delete(view=view, user=request.user)
    except Forbidden as exc:
        raise PermissionDenied(exc.message) from None
    messages.success(request, f"Deleted view “{view.name}”.")
    return redirect("runs:view-list", ws.name)


@login_required
@require_POST
def view_duplicate(request, workspace: str, view_id: int):
    ws, _ = load_workspace(request, workspace)
    view = _load_view(request, ws, view_id)
    try:
        copy = saved_views.view_copy(
            view=view, user=request.user, name=request.POST.get("name") or None
        )
    except InvalidInput as exc:
        messages.error(request, exc.message)
        return redirect(view.get_absolute_url())
    messages.success(request, f"Saved “{copy.name}”, your own copy.")
    return redirect(copy.get_absolute_url())
