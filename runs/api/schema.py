"""OpenAPI extensions (imported by RunsConfig.ready so drf-spectacular finds them)."""

import re

from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from runs import limits


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's, plus the error answers that follow from an operation's form, so that
    a view's `@extend_schema` lists only its own (a 409, a 411, a 404 without a path
    parameter): 400 with a body or query parameters, 401 behind authentication, 403 for a change
    in a workspace or a run (a role can refuse it), 404 with a path parameter (not found, or not
    visible: the same answer) or behind authentication (a run-scoped token is an outsider
    everywhere but its own run), 413 with a body (any body over REQUEST_BODY_MAX_BYTES), 503
    on a run's operations and submits (the run-file bucket refused, runs/api/errors.py).
    `responses={403: None}` leaves an inferred one out."""

    def _get_response_bodies(self, direction="response"):
        declared = self.get_response_serializers()
        if not isinstance(declared, dict):
            return super()._get_response_bodies(direction)
        responses = {**self._usual_errors(), **declared}
        responses = {code: r for code, r in responses.items() if r is not None}
        # The base class reads the responses from this method; the instance attribute hands it
        # the completed dict for this one call.
        self.get_response_serializers = lambda: responses
        try:
            return super()._get_response_bodies(direction)
        finally:
            del self.get_response_serializers

    def _usual_errors(self) -> dict[int, OpenApiResponse]:
        from runs.api.schemas import errors

        path_parameters = set(re.findall(r"{(\w+)}", self.path))
        query = any(
            isinstance(p, OpenApiParameter) and p.location == OpenApiParameter.QUERY
            for p in self.get_override_parameters()
        )
        body = self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer()
        codes = []
        if body or query:
            codes.append(400)
        if self.view.get_authenticators():
            codes.append(401)
        if self.method != "GET" and path_parameters & {"workspace", "run_id"}:
            codes.append(403)
        # A run-scoped token (what a submitted script holds, runs/access.py) gets the
        # outsider's 404 from every authenticated operation outside its run, path or not.
        if path_parameters or self.view.get_authenticators():
            codes.append(404)
        if body:
            codes.append(413)
        # Run files live in a bucket on a team setup: what reads or writes them (a run's
        # files, its deletion, a submitted snapshot) answers 503 when the bucket refuses.
        if "run_id" in path_parameters or self.path.endswith("/submit"):
            codes.append(503)
        return errors(*codes)


class TokenScheme(OpenApiAuthenticationExtension):
    target_class = "runs.api.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>`: a key from `POST /api/v1/auth/token`.",
        }


_CONTROL = "\\u0000-\\u001f\\u007f-\\u009f"
_NUMBER = {
    "oneOf": [{"type": "number"}, {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]
}
# What each metric kind takes as a value (runs/services/metrics.py, _KIND_CHECKS).
_METRIC_VALUES = {
    "string": {"type": "string"},
    "list": {"type": "array"},
    "row": {"type": "object"},
    "image": {"type": "string", "minLength": 1, "maxLength": 1024, "pattern": f"^[^{_CONTROL}]+$"},
}


def state_limits(result, generator, request, public):
    """Post-processing hook (SPECTACULAR_SETTINGS): the rules that hang on more than one field,
    which a serializer cannot say, as JSON Schema (docs/architecture.md, "The OpenAPI schema
    states the real limits")."""
    schemas = result.get("components", {}).get("schemas", {})
    if children := schemas.get("RunChildrenRequest"):
        # `count` or `runs`, one at least: an empty object is a 400.
        children["oneOf"] = [
            {"required": ["count"], "properties": {"runs": {"type": "null"}}},
            {
                "required": ["runs"],
                "properties": {"runs": {"type": "array"}, "count": {"type": "null"}},
            },
        ]
        for path in result["paths"].values():
            body = path.get("post", {}).get("requestBody", {})
            if "RunChildrenRequest" in str(body):
                body["required"] = True
    if series := schemas.get("MetricBatchSeries"):
        # A value is what its series' kind takes; a scalar series (the default) takes numbers.
        series["anyOf"] = [
            {"properties": {"kind": {"const": "scalar"}, "values": {"items": _NUMBER}}},
            *(
                {
                    "required": ["kind"],
                    "properties": {"kind": {"const": kind}, "values": {"items": items}},
                }
                for kind, items in _METRIC_VALUES.items()
            ),
        ]
        steps = series["properties"]["steps"]["items"]
        steps.update(minimum=-(2**63), maximum=2**63 - 1)
    if rule := schemas.get("AlertRuleCreateRequest"):
        # An e-mail rule needs an address, a webhook rule a URL; the other field is ignored.
        email = {"type": "string", "format": "email", "maxLength": 254}
        url = {"type": "string", "format": "uri", "pattern": "^https?://", "maxLength": 2000}
        rule["oneOf"] = [
            {
                "required": ["recipients"],
                "properties": {
                    "channel": {"const": "email"},
                    "recipients": {"items": email, "minItems": 1, "maxItems": 20},
                },
            },
            {
                "required": ["webhook_url"],
                "properties": {"channel": {"const": "webhook"}, "webhook_url": url},
            },
        ]
    runs = result.get("paths", {}).get("/api/v1/workspaces/{workspace}/runs", {}).get("get")
    search = result.get("paths", {}).get("/api/v1/workspaces/{workspace}/runs/search", {})
    if runs and "post" in search:
        schemas["RunSearchRequest"] = _search_body(
            [p for p in runs["parameters"] if p["in"] == "query"]
        )
        body = search["post"]["requestBody"]
        body["content"] = {
            "application/json": {"schema": {"$ref": "#/components/schemas/RunSearchRequest"}}
        }
    for path in result.get("paths", {}).values():
        for operation in path.values():
            _no_nul_in_url(operation)
    return result


def _no_nul_in_url(operation: dict) -> None:
    """runs/middleware.py answers 400 to a NUL anywhere in the URL: every path and query
    string parameter says it, and every operation that has one lists the 400."""
    strings = []
    for parameter in operation.get("parameters", []):
        if parameter.get("in") not in ("path", "query"):
            continue
        schema = parameter.get("schema", {})
        schema = schema.get("items", schema) if schema.get("type") == "array" else schema
        if "string" in str(schema.get("type")) and not {"enum", "pattern", "format"} & set(schema):
            schema["pattern"] = "^[^\\u0000]*$"
        strings.append(parameter)
    responses = operation.get("responses", {})
    if strings and "400" not in responses:
        responses["400"] = {
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            "description": "A NUL in the URL; `field` names the parameter.",
        }


def _search_body(parameters: list[dict]) -> dict:
    """POST …/runs/search takes each query parameter of the GET list (`parameters`, its one
    declaration) as a value or a list of values (the CLI sends lists of strings), a number
    where a string is asked for being read as its text, and nothing else (views/runs.py
    _search_params)."""
    search: dict = {"type": "object", "properties": {}, "additionalProperties": False}
    for parameter in parameters:
        name, prop = parameter["name"], parameter["schema"]
        item = dict(prop.get("items", prop))
        if item.get("type") == "integer":
            item = {**item, "type": ["integer", "string"], "pattern": "^[0-9]{1,18}$"}
        elif item.get("type") == "string" and "enum" not in item and "format" not in item:
            item["type"] = ["string", "integer"]
        if name == "q":  # a query too long for a URL is what the body is for, up to this
            item["maxLength"] = limits.QUERY_MAX_LENGTH
        search["properties"][name] = {
            "anyOf": [item, {"type": "array", "items": item, "maxItems": 1000}],
            **({"description": parameter["description"]} if "description" in parameter else {}),
        }
    return search
