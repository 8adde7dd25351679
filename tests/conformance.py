"""Every JSON answer of the REST API that a test receives is checked against the OpenAPI schema
the server serves (tests/conftest.py `_responses_match_the_schema`, autouse).

The schema is generated once per session, as /api/schema/ serves it. A response is checked
against its operation's documented status code, with every documented object closed
(`additionalProperties: false` where it lists its properties): a field the schema does not
declare fails, as does a missing required one or a value of the wrong type. The schema itself
stays open for clients (a field may be added later); only the tests hold the server to it.
"""

import copy
import json
import re
import threading
from functools import cache

import jsonschema

API_PREFIX = "/api/v1/"


_SCHEMA_LOCK = threading.Lock()


def served_schema() -> dict:
    # drf-spectacular's generator is not thread-safe: live-server tests whose racing requests
    # were the first to be checked built it at once and got 500s. One thread builds it.
    with _SCHEMA_LOCK:
        return _served_schema()


@cache
def _served_schema() -> dict:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(json.dumps(schema, default=str))


def _closed(node):
    """A copy of a schema node whose objects with listed properties admit no other key."""
    if isinstance(node, list):
        return [_closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _closed(value) for key, value in node.items()}
    if "properties" in node and "additionalProperties" not in node and "allOf" not in node:
        node["additionalProperties"] = False
    return node


@cache
def _operations() -> list[tuple[re.Pattern, str, dict]]:
    """(path regex, method, operation), fewest path parameters first so that a literal
    segment (`runs/search`) wins over a parameter."""
    found = []
    for path, item in served_schema()["paths"].items():
        params = re.findall(r"{(\w+)}", path)
        pattern = re.escape(path)
        for name in params:
            # A run file's path spans folders; every other parameter is one segment.
            pattern = pattern.replace(
                re.escape("{" + name + "}"), "(.+)" if name == "path" else "([^/]+)"
            )
        for method, operation in item.items():
            found.append((len(params), re.compile(f"^{pattern}$"), method, operation))
    found.sort(key=lambda entry: entry[0])
    return [(regex, method, operation) for _, regex, method, operation in found]


@cache
def _validator(operation_id: str, status: str) -> jsonschema.Draft202012Validator | None:
    schema = served_schema()
    operation = next(op for _, _, op in _operations() if op["operationId"] == operation_id)
    content = operation["responses"][status].get("content", {})
    body = content.get("application/json", {}).get("schema")
    if body is None:
        return None
    root = {**_closed(copy.deepcopy(body)), "components": _closed(schema["components"])}
    return jsonschema.Draft202012Validator(root)


def problems_with(method: str, path: str, status: int, body: bytes) -> list[str]:
    """What is wrong with one answer, as sentences; [] when it matches its operation."""
    operation = next(
        (op for regex, m, op in _operations() if m == method.lower() and regex.match(path)), None
    )
    if operation is None:
        return []  # not an operation of the schema (e.g. /api/v1/, the index)
    where = f"{method} {path} → {status}"
    if str(status) not in operation["responses"]:
        return [f"{where}: status {status} is not documented for {operation['operationId']}"]
    validator = _validator(operation["operationId"], str(status))
    if validator is None:
        return []
    try:
        data = json.loads(body)
    except ValueError:
        return [f"{where}: the body is not JSON"]
    return [
        f"{where} ({operation['operationId']}): {error.message} at "
        f"{'/'.join(map(str, error.absolute_path)) or 'the top'}"
        for error in validator.iter_errors(data)
    ][:5]


class Recorder:
    """Wraps Django's request handling (test client and live server alike) and collects the
    mismatches of every JSON answer under /api/v1/."""

    def __init__(self):
        self.problems: list[str] = []
        self._lock = threading.Lock()

    def wrap(self, get_response):
        recorder = self

        def checked(handler, request):
            response = get_response(handler, request)
            if (
                request.path.startswith(API_PREFIX)
                and not getattr(response, "streaming", False)
                and response.get("Content-Type", "").startswith("application/json")
            ):
                found = problems_with(
                    request.method, request.path, response.status_code, response.content
                )
                if found:
                    with recorder._lock:
                        recorder.problems.extend(found)
            return response

        return checked
