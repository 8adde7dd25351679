"""Helpers the API views share: query parameters, the JSON body, keyset pages."""

import math

from rest_framework.response import Response

from runs import limits
from runs.errors import InvalidInput


def _int_param(
    request,
    name: str,
    default: int,
    *,
    minimum: int = 0,
    maximum: int | None = None,
    params=None,
) -> int:
    """`params` (a mapping) instead of the query string: a POST search's body."""
    raw = (request.query_params if params is None else params).get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name}: {raw!r} is not a whole number.", field=name) from None
    if value < minimum or (maximum is not None and value > maximum):
        raise InvalidInput(
            f"{name}: must be between {minimum} and {maximum if maximum is not None else '∞'}.",
            field=name,
        )
    return value


def _object(request) -> dict:
    if not isinstance(request.data, dict):
        raise InvalidInput("The request body must be a JSON object.", field="body")
    return request.data


def _page(request, queryset, shape, *, params=None) -> Response:
    """Keyset pagination, newest first, on the primary key; `shape` (serializers.page_of) renders
    the page."""
    limit = _int_param(
        request,
        "limit",
        limits.PAGE_SIZE_DEFAULT,
        minimum=1,
        maximum=limits.PAGE_SIZE_MAX,
        params=params,
    )
    cursor = _int_param(request, "cursor", 0, params=params)
    if cursor:
        queryset = queryset.filter(pk__lt=cursor)
    items = list(queryset[: limit + 1])
    more = len(items) > limit
    items = items[:limit]
    return Response(
        shape.render(
            {"results": items, "next_cursor": str(items[-1].pk) if more else None},
            request=request,
        )
    )


def _float_param(request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InvalidInput(f"{name}: {raw!r} is not a finite number.", field=name)
    return value


def _flag_param(request, name: str) -> bool:
    """A yes/no query parameter: absent, empty, 0/false → False; 1/true → True; else a 400
    (the schema lists the values, and an unknown one must not pass for "no")."""
    raw = request.query_params.get(name, "")
    if raw.lower() in ("", "0", "false"):
        return False
    if raw.lower() in ("1", "true"):
        return True
    raise InvalidInput(f"{name}: {raw!r} is not a yes/no flag; use 1 or 0.", field=name)
