"""Request checks that hold for every door, before any view runs."""

from urllib.parse import unquote

from django.http import HttpResponseBadRequest, JsonResponse, QueryDict


def refuse_nul_characters(get_response):
    """A NUL in the URL's path or query string is a 400 naming where it is.

    No name, id, path or search term may hold a NUL, and PostgreSQL refuses one in any string
    (SQLite takes it): a `?property=%00` reached the database and came back as a 500 on
    PostgreSQL only. One check here covers every filter of every list, page and CSV, so no
    view has to remember it."""

    def middleware(request):
        field = _nul_field(request)
        if field is None:
            return get_response(request)
        message = f"{field}: contains a NUL character (%00), which no name or value may hold."
        if request.path.startswith("/api/"):
            return JsonResponse(
                {"error": {"code": "invalid", "message": message, "field": field}}, status=400
            )
        return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")

    return middleware


def _nul_field(request) -> str | None:
    if "\x00" in request.path:
        return "path"
    query = request.META.get("QUERY_STRING", "")
    if "\x00" not in unquote(query):
        return None
    for key, values in QueryDict(query).lists():
        if "\x00" in key or any("\x00" in value for value in values):
            return key.replace("\x00", "") or "query"
    return "query"
