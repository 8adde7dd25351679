"""The OpenAPI schema at /api/schema/: complete (every route, every method), specific (bodies,
query parameters, errors) and valid OpenAPI 3. Request bodies come from runs/api/schemas.py,
answers from runs/api/serializers.py (which renders them too); these tests pin the main shapes,
and tests/conformance.py checks every answer the suite gets against the schema."""

import json
import re

import pytest
from django.urls import URLPattern

from runs.api import urls as api_urls
from runs.models import RunStatus

METHODS = ("get", "post", "put", "patch", "delete")


def _openapi_path(route: str) -> str:
    """`runs/<str:run_id>/files/<path:path>` → `/api/v1/runs/{run_id}/files/{path}`."""
    return "/api/v1/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


@pytest.fixture
def schema(cast) -> dict:
    response = cast.reader.client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def _resolve(schema: dict, node: dict) -> dict:
    """Follows a `$ref` (or a nullable `allOf: [$ref]`) to its component."""
    if "allOf" in node:
        node = node["allOf"][0]
    ref = node.get("$ref")
    if ref is None:
        return node
    return schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def _body(schema: dict, operation: dict, media_type: str = "application/json") -> dict:
    return _resolve(schema, operation["requestBody"]["content"][media_type]["schema"])


def _response(schema: dict, operation: dict, code: str = "200") -> dict:
    content = operation["responses"][code]["content"]["application/json"]
    return _resolve(schema, content["schema"])


def _query(operation: dict) -> dict[str, dict]:
    return {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "query"}


def _operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_anonymous_gets_401(cast):
    response = cast.anonymous.get("/api/schema/", {"format": "json"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_openapi_3_and_valid(schema):
    from drf_spectacular.validation import validate_schema

    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Runstudio API"
    validate_schema(schema)  # what `manage.py spectacular --validate` runs (jsonschema)
    try:
        from openapi_spec_validator import validate
    except ImportError:  # not a dependency; its stricter check runs where it is installed
        return
    validate(schema)


def test_every_route_and_method_is_documented(schema):
    patterns = [p for p in api_urls.urlpatterns if isinstance(p, URLPattern)]
    assert {_openapi_path(str(p.pattern)) for p in patterns} == set(schema["paths"])
    for pattern in patterns:
        path = _openapi_path(str(pattern.pattern))
        assert path in schema["paths"], f"{pattern.name}: {path} is not in the schema"
        view_methods = {m for m in METHODS if hasattr(pattern.callback.cls, m)}
        documented = set(schema["paths"][path]) & set(METHODS)
        assert documented == view_methods, pattern.name


def test_operations_are_unique_summarised_tagged_and_have_bodies(schema):
    ids = []
    for path, method, operation in _operations(schema):
        where = f"{method.upper()} {path}"
        ids.append(operation["operationId"])
        assert operation.get("summary"), where
        assert operation.get("tags"), where
        ok = [code for code in operation["responses"] if code.startswith("2")]
        assert ok, where
        for code in ok:
            if code != "204":
                assert operation["responses"][code].get("content"), f"{where} {code}"
        # Heartbeat, cancel and a new worker key take no body (the server makes the key).
        bodiless = ("/heartbeat", "/cancel", "/worker-key")
        if method in ("post", "put", "patch") and not path.endswith(bodiless):
            assert operation.get("requestBody"), where
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert "workspace_list" in ids and "workspace_retrieve" in ids


def test_errors_share_one_component(schema):
    error = schema["components"]["schemas"]["Error"]
    detail = _resolve(schema, error["properties"]["error"])
    assert set(detail["properties"]) == {"code", "message", "field"}
    assert set(detail["required"]) == {"code", "message"}
    for path, method, operation in _operations(schema):
        errors = [code for code in operation["responses"] if code[0] in "45"]
        assert errors, f"{method.upper()} {path} documents no error"
        for code in errors:
            ref = operation["responses"][code]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/Error"
        if path != "/api/v1/auth/token":
            assert "401" in operation["responses"], f"{method.upper()} {path}"


def test_metric_batch_documents_its_body(schema):
    operation = schema["paths"]["/api/v1/runs/{run_id}/metrics/batch"]["post"]
    body = _body(schema, operation)
    assert {"metrics", "idempotency_key"} <= set(body["properties"])
    assert body["required"] == ["metrics"]
    metrics = body["properties"]["metrics"]
    assert metrics["type"] == "array"
    series = _resolve(schema, metrics["items"])
    assert {"name", "kind", "values", "steps", "times"} <= set(series["properties"])
    result = _response(schema, operation)
    assert set(result["properties"]) == {"accepted", "duplicate"}
    assert {"400", "409", "413"} <= set(operation["responses"])


def test_run_detail_documents_the_run(schema):
    item = schema["paths"]["/api/v1/runs/{run_id}"]
    run = _response(schema, item["get"])
    assert {"run_id", "status", "tags", "properties", "error", "portal_url"} <= set(
        run["properties"]
    )
    status = _resolve(schema, run["properties"]["status"])
    assert set(status["enum"]) == set(RunStatus.values)
    assert run["properties"]["tags"]["type"] == "object"
    patch = _body(schema, item["patch"])
    assert set(patch["properties"]) == {"display_name", "description"}
    assert item["get"]["operationId"] != item["patch"]["operationId"]


def test_query_parameters(schema):
    paths = schema["paths"]
    runs = _query(paths["/api/v1/workspaces/{workspace}/runs"]["get"])
    assert {
        "limit",
        "cursor",
        "q",
        "experiment",
        "status",
        "tag",
        "property",
        "compute_target",
        "submitter",
        "created_from",
        "created_to",
        "top_level",
        "parent",
    } <= set(runs)
    assert runs["status"]["schema"]["type"] == "array"  # repeatable
    assert runs["limit"]["schema"]["type"] == "integer"
    assert set(_query(paths["/api/v1/runs/{run_id}/children"]["get"])) == {"recursive"}
    assert set(_query(paths["/api/v1/runs/{run_id}/metrics/values"]["get"])) == {"name"}
    assert set(_query(paths["/api/v1/runs/{run_id}/metrics/history"]["get"])) == {
        "name",
        "after_seq",
        "limit",
    }
    series = _query(paths["/api/v1/runs/{run_id}/metrics/series"]["get"])
    assert set(series) == {"name", "x", "buckets", "x_min", "x_max"}
    assert set(series["x"]["schema"]["enum"]) == {"step", "time", "relative"}
    assert set(_query(paths["/api/v1/runs/{run_id}/files"]["get"])) == {"prefix"}
    file = paths["/api/v1/runs/{run_id}/files/{path}"]
    assert set(_query(file["get"])) == {"offset", "length"}
    assert _query(file["post"])["append"]["required"] is True
    assert _query(file["put"]) == {}


def test_files_are_raw_bytes(schema):
    binary = {"type": "string", "format": "binary"}
    file = schema["paths"]["/api/v1/runs/{run_id}/files/{path}"]
    download = file["get"]["responses"]["200"]
    assert download["content"]["application/octet-stream"]["schema"] == binary
    assert "X-File-Size" in download["headers"]
    for method in ("put", "post"):
        content = file[method]["requestBody"]["content"]
        assert content["application/octet-stream"]["schema"] == binary
    submit = schema["paths"]["/api/v1/workspaces/{workspace}/experiments/{experiment}/submit"]
    form = _body(schema, submit["post"], "multipart/form-data")
    assert form["properties"]["snapshot"]["format"] == "binary"


def test_the_conformance_check_catches_an_undeclared_or_missing_field(cast, make_run):
    """The check every test's API answers go through (tests/conformance.py) fails on a field
    the schema does not declare and on a missing required one, not only on a wrong type."""
    from tests.conformance import problems_with

    run = make_run()
    path = f"/api/v1/runs/{run.run_id}"
    served = cast.reader.client.get(path)
    assert problems_with("GET", path, 200, served.content) == []
    extra = json.dumps({**served.json(), "undeclared": 1}).encode()
    assert any("'undeclared' was unexpected" in p for p in problems_with("GET", path, 200, extra))
    missing = served.json()
    del missing["status"]
    problems = problems_with("GET", path, 200, json.dumps(missing).encode())
    assert any("'status' is a required property" in p for p in problems)
    assert any("not documented" in p for p in problems_with("GET", path, 418, served.content))
