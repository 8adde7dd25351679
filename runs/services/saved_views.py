"""Custom views: saved run-list setups. The services (writes) and the state helpers; the
reads (`view_list`, `view_get`) are in runs/selectors.py.

A view's `params` is the run list's state as JSON:

    {"filters": {"q": ["metrics.loss < 1"], "status": ["Running"], ...},   # RunFilter params
     "columns": ["display_name", "status", "metrics.loss.min"],            # column keys
     "sort": "-metrics.loss.min",
     "selected": ["exp_1700000000_ab12cd34", ...],                          # selected run ids
     "charts": [...]}                                                       # the charts' setup

The same state travels in the list page's query string (RunFilter names, `col`, `sort`,
`run`, `chart`), so a view opens exactly as saved and a page can be saved as it is shown.

Who may do what: any member (readers included — a view changes no run data) saves views,
private or shared with the workspace; only a view's owner updates or deletes it; anyone who
can see a view can save a copy of their own. A private view is 404 to everyone else.
"""

import json
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.http import QueryDict

from runs import query
from runs.errors import Forbidden, InvalidInput, NotFound
from runs.filters import FILTER_NAMES
from runs.models import CustomView, Workspace
from runs.validation import check_line, check_stored_json

VIEW_NAME_MAX_LENGTH = 100
VIEW_PARAMS_MAX_BYTES = 64 * 1024
VIEW_COLUMNS_MAX = 50
VIEW_SELECTED_MAX = 1_000

DEFAULT_COLUMNS = ["display_name", "experiment", "status", "submitter", "created", "duration"]


# ---------------------------------------------------------------------------------------------
# The state: query string ⇄ params


def _strings(values: Any, *, field: str, limit: int) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidInput(f"{field}: must be a list of strings.", field=field)
    if len(values) > limit:
        raise InvalidInput(f"{field}: at most {limit} values.", field=field)
    return values


def clean_params(params: Any) -> dict[str, Any]:
    """A view's params, checked: known filter names, readable column and sort keys, size."""
    if not isinstance(params, dict):
        raise InvalidInput("params: must be an object.", field="params")
    filters = params.get("filters") or {}
    if not isinstance(filters, dict):
        raise InvalidInput("params.filters: must be an object.", field="params.filters")
    clean_filters = {}
    for name, values in filters.items():
        if name not in FILTER_NAMES:
            raise InvalidInput(
                f"params.filters: unknown filter {name!r} (one of {', '.join(FILTER_NAMES)}).",
                field="params.filters",
            )
        values = [v for v in _strings(values, field=f"params.filters.{name}", limit=100) if v]
        if values:
            clean_filters[name] = values
    columns = _strings(params.get("columns"), field="params.columns", limit=VIEW_COLUMNS_MAX)
    for key in columns:
        try:
            query.parse_field(key)
        except query.QueryError as exc:
            raise InvalidInput(f"params.columns: {exc.message}", field="params.columns") from None
    sort = params.get("sort") or ""
    if not isinstance(sort, str):
        raise InvalidInput("params.sort: must be a column key.", field="params.sort")
    if sort:
        try:
            query.parse_field(sort.lstrip("-+"))
        except query.QueryError as exc:
            raise InvalidInput(f"params.sort: {exc.message}", field="params.sort") from None
    cleaned = {
        "filters": clean_filters,
        "columns": columns,
        "sort": sort,
        "selected": _strings(
            params.get("selected"), field="params.selected", limit=VIEW_SELECTED_MAX
        ),
        "charts": params.get("charts") or [],
    }
    if not isinstance(cleaned["charts"], list):
        raise InvalidInput("params.charts: must be a list.", field="params.charts")
    if len(json.dumps(cleaned)) > VIEW_PARAMS_MAX_BYTES:
        raise InvalidInput(
            f"params: a view holds at most {VIEW_PARAMS_MAX_BYTES // 1024} KiB of settings; "
            "select fewer runs or columns.",
            field="params",
        )
    return cleaned


def params_from_query(data: QueryDict) -> dict[str, Any]:
    """The run list's query string → view params (unchecked; clean_params checks)."""
    charts = []
    for raw in data.getlist("chart"):
        try:
            chart = json.loads(raw)
            check_stored_json(chart, field="chart", max_bytes=VIEW_PARAMS_MAX_BYTES)
            charts.append(chart)
        except (ValueError, RecursionError, InvalidInput):  # too deep for a chart: kept as text
            charts.append(raw)
    return {
        "filters": {name: data.getlist(name) for name in FILTER_NAMES if data.getlist(name)},
        "columns": [c for c in data.getlist("col") if c.strip()],
        "sort": data.get("sort", ""),
        "selected": data.getlist("run"),
        "charts": charts,
    }


def params_to_query(params: dict[str, Any]) -> QueryDict:
    data = QueryDict(mutable=True)
    for name, values in (params.get("filters") or {}).items():
        data.setlist(name, list(values))
    if params.get("columns"):
        data.setlist("col", list(params["columns"]))
    if params.get("sort"):
        data["sort"] = params["sort"]
    if params.get("selected"):
        data.setlist("run", list(params["selected"]))
    if params.get("charts"):
        data.setlist(
            "chart", [c if isinstance(c, str) else json.dumps(c) for c in params["charts"]]
        )
    return data


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("name: give the view a name.", field="name")
    name = name.strip()
    if len(name) > VIEW_NAME_MAX_LENGTH:
        raise InvalidInput(
            f"name: at most {VIEW_NAME_MAX_LENGTH} characters (this one has {len(name)}).",
            field="name",
        )
    return check_line(name, field="name", max_length=VIEW_NAME_MAX_LENGTH)


def _require_owner(view: CustomView, user: AbstractBaseUser, what: str) -> None:
    if view.owner_id != user.pk:
        raise Forbidden(
            f"Only the owner of view {view.name!r} can {what} it; save a copy to change it."
        )


# ---------------------------------------------------------------------------------------------
# Services


def view_save(
    *,
    workspace: Workspace,
    owner: AbstractBaseUser,
    name: str,
    shared: bool = False,
    params: dict[str, Any],
) -> CustomView:
    return CustomView.objects.create(
        workspace=workspace,
        owner=owner,
        name=_check_name(name),
        shared=bool(shared),
        params=clean_params(params),
    )


def view_update(
    *,
    view: CustomView,
    user: AbstractBaseUser,
    name: str | None = None,
    shared: bool | None = None,
    params: dict[str, Any] | None = None,
) -> CustomView:
    _require_owner(view, user, "change")
    fields = ["updated_at"]
    if name is not None:
        view.name = _check_name(name)
        fields.append("name")
    if shared is not None:
        view.shared = bool(shared)
        fields.append("shared")
    if params is not None:
        view.params = clean_params(params)
        fields.append("params")
    view.save(update_fields=fields)
    return view


def view_delete(*, view: CustomView, user: AbstractBaseUser) -> None:
    _require_owner(view, user, "delete")
    view.delete()


def view_copy(
    *, view: CustomView, user: AbstractBaseUser, name: str | None = None, shared: bool = False
) -> CustomView:
    """A private copy (unless `shared`) owned by `user`, who must be able to see `view`."""
    if not view.shared and view.owner_id != user.pk:
        raise NotFound("No such view.", field="view")
    with transaction.atomic():
        return view_save(
            workspace=view.workspace,
            owner=user,
            name=name or f"Copy of {view.name}"[:VIEW_NAME_MAX_LENGTH],
            shared=shared,
            params=view.params,
        )
