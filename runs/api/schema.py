"""OpenAPI extensions (imported by RunsConfig.ready so drf-spectacular finds them)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


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
    return result
