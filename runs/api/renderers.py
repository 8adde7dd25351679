import json
import math
from typing import Any

from rest_framework import renderers

_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def encode_non_finite(data: Any) -> Any:
    """NaN and ±inf as the strings MLflow's REST API uses, so strict JSON parsers cope."""
    if isinstance(data, float):
        if data != data:
            return "NaN"
        return _NON_FINITE.get(data, data)
    if isinstance(data, dict):
        return {k: encode_non_finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [encode_non_finite(v) for v in data]
    return data


class JSONRenderer(renderers.JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except ValueError:  # a non-finite float; rare, so only then walk the data
            return super().render(encode_non_finite(data), accepted_media_type, renderer_context)


def dumps(data: Any) -> bytes:
    try:
        return json.dumps(data, allow_nan=False, separators=(",", ":")).encode()
    except ValueError:
        return json.dumps(encode_non_finite(data), separators=(",", ":")).encode()
