"""One run's page and its tabs, the live fragments it polls, and its writes and downloads.

The page is server-rendered; `?tab=` picks a tab (so a link opens it) and `?fragment=`
returns a piece of it as HTML for static/js/run_detail.js to swap in while the run is live.
"""

import mimetypes
import posixpath
import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_POST

from runs import run_forms, selectors, services, storage
from runs.errors import InvalidInput, ServiceError
from runs.models import MetricKind, Role, Run, RunProperty, RunTag
from runs.rich_text import render_markdown
from runs.storage.search import fold_spans, run_file_find
from runs.views.common import load_run

TABS = {
    "overview": "Overview",
    "metrics": "Metrics",
    "children": "Child runs",
    "outputs": "Outputs + logs",
    "events": "Events",
}
FILES_SHOWN = 5_000  # a tree longer than this is cut (the zip still has everything)
ENTRIES_SHOWN = 200  # last entries shown per table / string / list / image metric
CHILD_METRICS_MAX = 5
# Shown in the page (an <img>); anything else downloads, so no run file renders as a page.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})
FILE_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
LOWER_IS_BETTER = re.compile(r"loss|err|rmse|mae|mse|perplexity|time|latency", re.IGNORECASE)


@login_required
@require_GET
def run_page(request, workspace: str, run_id: str):
    run, membership = load_run(request, workspace, run_id)
    tab = request.GET.get("tab") if request.GET.get("tab") in TABS else "overview"
    fragment = request.GET.get("fragment")
    if fragment == "log":
        return _log_fragment(request, run)
    context = {
        "run": run,
        "workspace": run.workspace,
        "membership": membership,
        "can_edit": membership.allows(Role.CONTRIBUTOR),
        "can_purge": membership.allows(Role.OWNER),
        "tab": tab,
        "nav_section": "runs",
        **_TAB_CONTEXT[tab](request, run, full=fragment != "live"),
    }
    if fragment == "live":
        return render(request, "runs/includes/run_live.html", context)
    context |= {"tabs": TABS, "counts": selectors.run_counts(run=run)}
    return render(request, "runs/run.html", context)


def _overview(request, run: Run, full: bool) -> dict:
    return {
        "tags": selectors.run_tags(run=run),
        "properties": selectors.run_properties(run=run),
        "inputs": list(run.inputs.all()) if full else [],  # the live fragment does not redraw them
        "metrics": selectors.metric_summaries(run=run),
        "description_html": render_markdown(run.description),
    }


def _metrics(request, run: Run, full: bool) -> dict:
    series = list(run.metric_series.order_by("name"))
    # The scalars' chart summaries are live parts too (run_chart_stats.html): the live fragment
    # redraws them from the series already read, with no query more.
    context = {
        "metrics": selectors.metric_summaries(run=run),
        "scalars": [s for s in series if s.kind == MetricKind.SCALAR],
    }
    if not full:
        return context
    others = [s for s in series if s.kind != MetricKind.SCALAR]
    entries = selectors.metric_entries_recent(
        series_ids=[s.pk for s in others], per_series=ENTRIES_SHOWN
    )
    return context | {
        "tables": [_metric_table(s, entries.get(s.pk, []), run) for s in others],
    }


def _metric_table(series, entries: list, run: Run) -> dict:
    """A non-scalar series as a table: rows of logged values, columns for `row` metrics."""
    table = {"series": series, "shown": len(entries), "columns": [], "rows": []}
    if series.kind == MetricKind.ROW:
        columns = list(dict.fromkeys(k for _, _, row in entries for k in row))
        table["columns"] = columns
        table["rows"] = [(step, [row.get(c) for c in columns]) for _, step, row in entries]
    elif series.kind == MetricKind.IMAGE:
        table["rows"] = [(step, path, _image_url(run, path)) for _, step, path in entries]
    else:
        table["rows"] = [(step, value) for _, step, value in entries]
    return table


def _image_url(run: Run, path) -> str | None:
    """The image's file URL, or None for a value that is no file path (an empty string or a
    newline, stored before ingest refused them): one bad row must not break the tab."""
    if not isinstance(path, str):
        return None
    try:
        return reverse("runs:run-file", args=[run.workspace.name, run.run_id, path])
    except NoReverseMatch:
        return None


def _children(request, run: Run, full: bool) -> dict:
    tree = selectors.child_run_tree(run=run)
    # Archived children (and what sits under them) are hidden unless asked for (`?archived=1`).
    show_archived = request.GET.get("archived") == "1"
    hidden = 0
    if not show_archived:
        kept, cut_below = [], None
        for child, depth in tree:
            if cut_below is not None and depth > cut_below:
                hidden += 1
                continue
            cut_below = None
            if child.archived_at is not None:
                cut_below, hidden = depth, hidden + 1
                continue
            kept.append((child, depth))
        tree = kept
    runs = [child for child, _ in tree]
    names = selectors.scalar_metric_names(runs=runs)
    chosen = [n for n in request.GET.getlist("metric") if n in names][:CHILD_METRICS_MAX]
    chosen = chosen or names[:1]
    goal = request.GET.get("goal")
    if goal not in ("min", "max"):
        goal = "min" if chosen and LOWER_IS_BETTER.search(chosen[0]) else "max"
    summaries = selectors.metric_summaries_for(runs=runs, names=chosen)
    kv_keys, kv_chosen, kv_values = _child_kv(request, runs)
    rows = [
        {
            "run": child,
            "depth": depth,
            "cells": [summaries[child.pk].get(n) for n in chosen],
            "kv": [kv_values.get((child.pk, column)) for column in kv_chosen],
        }
        for child, depth in tree
    ]
    return {
        "rows": rows,
        "metric_names": names,
        "archived_hidden": hidden,
        "show_archived": show_archived,
        "kv_keys": kv_keys,
        "kv_chosen": kv_chosen,
        "chosen": chosen,
        "goal": goal,
        "best_pk": _best(summaries, chosen[0], goal) if chosen else None,
    }


CHILD_KV_MAX = 10  # tag and property columns in the Child runs table
CHILD_KV_KEYS_SHOWN = 200  # keys offered in its picker


def _child_kv(request, runs: list[Run]) -> tuple[list[str], list[str], dict]:
    """Tag and property columns for the child table (`?kv=tags.<key>` / `properties.<key>`,
    repeatable): the keys the children have (two queries) and the chosen ones' values (one
    query per kind chosen)."""
    keys: list[str] = []
    for prefix, model in (("properties", RunProperty), ("tags", RunTag)):
        found = (
            model.objects.filter(run__in=runs)
            .order_by("key")
            .values_list("key", flat=True)
            .distinct()[:CHILD_KV_KEYS_SHOWN]
        )
        keys += [f"{prefix}.{key}" for key in found]
    chosen = [k for k in dict.fromkeys(request.GET.getlist("kv")) if k in keys][:CHILD_KV_MAX]
    values: dict = {}
    for prefix, model in (("properties", RunProperty), ("tags", RunTag)):
        wanted = [k.removeprefix(prefix + ".") for k in chosen if k.startswith(prefix + ".")]
        if wanted:
            rows = model.objects.filter(run__in=runs, key__in=wanted).values_list(
                "run_id", "key", "value"
            )
            for run_pk, key, value in rows:
                values[(run_pk, f"{prefix}.{key}")] = "✓" if value is None else value
    return keys, chosen, values


def _best(summaries: dict, name: str, goal: str) -> int | None:
    """The child whose min (or max) of the first chosen metric is best."""
    scored = []
    for pk, by_name in summaries.items():
        value = getattr(by_name.get(name), f"{goal}_value", None)
        if value is not None:
            scored.append((value, pk))
    return (min if goal == "min" else max)(scored)[1] if scored else None


def _outputs(request, run: Run, full: bool) -> dict:
    files = storage.run_files_servable(
        run=run, files=selectors.run_files(run=run)[: FILES_SHOWN + 1]
    )
    context = {
        "file_tree": selectors.file_tree(files=files[:FILES_SHOWN]),
        "files_cut": len(files) > FILES_SHOWN,
        "selected": request.GET.get("file", ""),
    }
    if full and context["selected"]:
        context["viewer"] = _viewer(request, run, context["selected"])
    return context


def _events(request, run: Run, full: bool) -> dict:
    return {"events": selectors.status_events(run=run)}


_TAB_CONTEXT = {
    "overview": _overview,
    "metrics": _metrics,
    "children": _children,
    "outputs": _outputs,
    "events": _events,
}


def _int(value, default: int | None = None) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number if number >= 0 else default


def _viewer(request, run: Run, path: str) -> dict:
    """The file viewer: an image, or one page of text read by offset, never the whole file."""
    try:
        return _viewer_page(request, run, path)
    except ServiceError as exc:  # not indexed, or a symlink / special file in storage
        return {"path": path, "error": exc.message}


def _viewer_page(request, run: Run, path: str) -> dict:
    record = storage.run_file_get(run=run, path=path)
    content_type = mimetypes.guess_type(path)[0] or ""
    viewer = {"path": path, "record": record, "content_type": content_type}
    if content_type in INLINE_TYPES:
        return viewer | {"kind": "image"}
    live = not run.is_terminal
    before = _int(request.GET.get("before"))
    find = _find(request, run, path)
    if find and find["line_start"] is not None:
        # The page starts at the matching line; "Next match" searches from the line after.
        page = storage.run_file_page(
            run=run, path=path, offset=find["line_start"], complete_lines=live
        )
        offset = page.start
    elif find:
        offset = max(0, record.size - storage.TEXT_PAGE_BYTES) if find["exhausted"] else 0
        page = storage.run_file_page(run=run, path=path, offset=offset, complete_lines=live)
    elif request.GET.get("tail"):
        offset = max(0, record.size - storage.TEXT_PAGE_BYTES)
        page = storage.run_file_page(run=run, path=path, offset=offset, complete_lines=live)
    elif before is not None:
        offset = max(0, before - storage.TEXT_PAGE_BYTES)
        page = storage.run_file_page(run=run, path=path, offset=offset, until=before)
    else:
        offset = _int(request.GET.get("offset"), 0)
        page = storage.run_file_page(run=run, path=path, offset=offset, complete_lines=live)
    if any("\x00" in line for line in page.lines):
        return viewer | {"kind": "binary"}
    line = _int(request.GET.get("line")) if "offset" in request.GET else None
    if line is None or page.start != offset:
        counted = storage.run_file_line_count(run=run, path=path, until=page.start)
        line = None if counted is None else counted + 1
    next_line = None if line is None else line + len(page.lines)
    return viewer | {
        "kind": "text",
        "page": page,
        "first_line": line,
        "next_line": next_line,
        "live": live,
        "tail": bool(request.GET.get("tail")),
        "find": find,
        "rows": _marked(page.lines, find["text"]) if find else None,
    }


def _find(request, run: Run, path: str) -> dict | None:
    """The viewer's Find: `find=TEXT` (+ `from=OFFSET`), searched on the server by streaming
    the file from the offset (runs/storage/search.py)."""
    text = request.GET.get("find", "")
    if not text:
        return None
    start = _int(request.GET.get("from"), 0)
    try:
        found = run_file_find(run=run, path=path, text=text, start=start)
    except InvalidInput as exc:
        return {"text": text, "error": exc.message, "line_start": None, "exhausted": False}
    return {
        "text": text,
        "from": start,
        "line_start": found.line_start,
        "scanned_to": found.scanned_to,
        "exhausted": found.exhausted,
        "next_from": None if found.line_start is None else found.line_start + 1,
    }


def _marked(lines: list[str], text: str) -> list[list[tuple[str, bool]]]:
    """Each line cut into (text, is a match) pieces, ignoring case as Find does, for <mark>."""
    rows = []
    for line in lines:
        pieces, at = [], 0
        for start, end in fold_spans(line, text):
            if start < at:  # two matches inside one folded character ("s" in "ß")
                continue
            pieces += [(line[at:start], False), (line[start:end], True)]
            at = end
        pieces.append((line[at:], False))
        rows.append([p for p in pieces if p[0]])
    return rows


def _log_fragment(request, run: Run):
    """New whole lines of a file after `offset`, as table rows, for the live tail."""
    path = request.GET.get("file", "")
    try:
        page = storage.run_file_page(
            run=run,
            path=path,
            offset=_int(request.GET.get("offset"), 0),
            complete_lines=not run.is_terminal,
        )
    except ServiceError as exc:
        raise Http404(exc.message) from None
    line = _int(request.GET.get("line"))
    context = {
        "page": page,
        "first_line": line,
        "next_line": None if line is None else line + len(page.lines),
        "fragment_wrapper": True,
    }
    return render(request, "runs/includes/run_log_rows.html", context)


# --- Writes: contributors only (readers get 403, outsiders 404), each a POST with CSRF -------


def _back(run: Run, request):
    url = reverse("runs:run-page", args=[run.workspace.name, run.run_id])
    tab = request.POST.get("tab")
    return redirect(f"{url}?tab={tab}" if tab in TABS and tab != "overview" else url)


def _apply(request, write, success: str) -> None:
    try:
        write()
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, success)


@login_required
@require_POST
def run_edit(request, workspace: str, run_id: str):
    """Saves the display name or the description, whichever the form sent."""
    run, _ = load_run(request, workspace, run_id, role=Role.CONTRIBUTOR)
    form_class = (
        run_forms.DisplayNameForm if "display_name" in request.POST else run_forms.DescriptionForm
    )
    form = form_class(request.POST)
    if not form.is_valid():
        messages.error(request, run_forms.first_error(form))
        return _back(run, request)
    what = "Display name" if "display_name" in form.cleaned_data else "Description"
    _apply(request, lambda: services.run_update(run=run, **form.cleaned_data), f"{what} saved.")
    return _back(run, request)


@login_required
@require_POST
def run_tags_edit(request, workspace: str, run_id: str):
    run, _ = load_run(request, workspace, run_id, role=Role.CONTRIBUTOR)
    form = run_forms.TagForm(request.POST)
    if not form.is_valid():
        messages.error(request, run_forms.first_error(form))
        return _back(run, request)
    done = "removed" if form.cleaned_data["action"] == "remove" else "saved"
    _apply(
        request,
        lambda: services.run_set_tags(run=run, **form.changes()),
        f"Tag {form.cleaned_data['key']!r} {done}.",
    )
    return _back(run, request)


@login_required
@require_POST
def run_cancel(request, workspace: str, run_id: str):
    run, _ = load_run(request, workspace, run_id, role=Role.CONTRIBUTOR)
    _apply(request, lambda: services.run_cancel(run=run, by=request.user), "Cancel requested.")
    return _back(run, request)


@login_required
@require_POST
def description_preview(request, workspace: str, run_id: str):
    """The description as it will show, through the same sanitiser; an HTML fragment."""
    load_run(request, workspace, run_id, role=Role.CONTRIBUTOR)
    form = run_forms.DescriptionForm(request.POST)
    if not form.is_valid():
        return HttpResponse(run_forms.first_error(form), status=400, content_type="text/plain")
    return HttpResponse(render_markdown(form.cleaned_data["description"]))


# --- Downloads: streamed, never read whole --------------------------------------------------


@login_required
@require_GET
def run_file(request, workspace: str, run_id: str, path: str):
    """One run file. Images show inline (for <img>); everything else is an attachment."""
    run, _ = load_run(request, workspace, run_id)
    try:
        chunks = storage.run_file_iter(run=run, path=path)
        next_chunk = next(chunks, b"")  # checks the path and opens the file now
    except ServiceError as exc:
        raise Http404(exc.message) from None
    except OSError:
        raise Http404("The file is indexed but missing from storage.") from None
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    inline = content_type in INLINE_TYPES and not request.GET.get("download")

    def body():
        yield next_chunk
        yield from chunks

    response = StreamingHttpResponse(
        body(), content_type=content_type if inline else "application/octet-stream"
    )
    response["Content-Disposition"] = content_disposition_header(
        not inline, posixpath.basename(path)
    )
    response["Content-Security-Policy"] = FILE_CSP
    return response


@login_required
@require_GET
def run_download_all(request, workspace: str, run_id: str):
    """Every file of the run as one zip, streamed as it is written (entries = run paths)."""
    run, _ = load_run(request, workspace, run_id)
    files = storage.run_files_servable(
        run=run, files=selectors.run_files(run=run).only("path", "size", "updated_at")
    )
    response = StreamingHttpResponse(
        storage.run_files_zip(run=run, files=files), content_type="application/zip"
    )
    response["Content-Disposition"] = content_disposition_header(True, f"{run.run_id}.zip")
    return response
