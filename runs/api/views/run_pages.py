"""The REST run list's page (`GET …/runs`, `POST …/runs/search`): filtered by RunFilter like
the studio's list, sorted by `sort` (any column key; default the run id, newest first), keyset
paged by `cursor`, with the pager's total (`count`, `count_is_estimate`, `count_relation`).

Without `sort` the cursor is the last run's id, as it always was; with one it is an opaque
position (the sort key, the last run's value and id) that only the same sort reads back. Either
way the next page starts where the last one ended, so page 10,000 costs what page 1 does
(runs/selectors/run_pages.py walks the sort's index from the position)."""

from drf_spectacular.utils import OpenApiParameter
from rest_framework.response import Response

from runs import limits, selectors
from runs.access import run_for, workspace_for
from runs.api.serializers import RunPageSerializer
from runs.api.views.common import _int_param
from runs.budget import query_budget
from runs.errors import InvalidInput
from runs.models import Run
from runs.selectors.run_pages import (
    ID_ORDER,
    RunSet,
    cursor_decode,
    cursor_encode,
    run_count,
    run_order,
    run_page_ids,
)

RUN_PAGE_PARAMETERS = [
    OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": limits.PAGE_SIZE_MAX},
        description=f"Runs per page, 1–{limits.PAGE_SIZE_MAX} "
        f"(default {limits.PAGE_SIZE_DEFAULT}).",
    ),
    OpenApiParameter(
        "cursor",
        {"type": "string", "pattern": "^[A-Za-z0-9_-]{0,2000}$"},
        description="`next_cursor` of the previous page, under the same `sort`: the last run's "
        "id without `sort`, an opaque position with one.",
    ),
    OpenApiParameter(
        "sort",
        str,
        description="A column key, `-` first for descending: `created`, `status`, "
        "`tags.<key>`, `properties.<key>`, `metrics.<name>.last|min|max`, … Missing values "
        "come last either way; ties by run id. Default: the run id, newest first.",
    ),
]


def run_search_page(request, workspace: str, params) -> Response:
    ws, _ = workspace_for(user=request.user, name=workspace)
    if params.get("parent"):
        run_for(user=request.user, run_id=params["parent"])  # 404 if not visible
    filterset = selectors.run_filterset(workspace=ws, params=params)
    if not filterset.is_valid():
        field, messages = next(iter(filterset.errors.items()))
        raise InvalidInput(f"{field}: {messages[0]}", field=field)
    limit = _int_param(
        request, "limit", limits.PAGE_SIZE_DEFAULT, minimum=1, maximum=limits.PAGE_SIZE_MAX,
        params=params,
    )  # fmt: skip
    sort = str(params.get("sort") or "")
    order = run_order(sort) if sort else ID_ORDER
    after = cursor_decode(order, str(params.get("cursor") or ""))
    runs = RunSet(filterset.qs, filterset.probe_qs(), ws.pk)
    with query_budget():  # a search may not hold the worker (runs/budget.py)
        count = run_count(runs=runs)
        page = run_page_ids(runs=runs, order=order, limit=limit, after=after, count=count)
        by_id = selectors.with_run_details(Run.objects.filter(pk__in=page.ids)).in_bulk()
    answer = {
        "results": [by_id[pk] for pk in page.ids if pk in by_id],
        "next_cursor": cursor_encode(order, page.after) if page.has_next else None,
        "count": count.value,
        "count_is_estimate": count.is_estimate,
        "count_relation": count.relation,
    }
    return Response(RunPageSerializer.render(answer, request=request))
