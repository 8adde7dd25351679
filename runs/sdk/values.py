"""What ``Run.log`` and friends accept: name checks and value coercion (no network)."""

from __future__ import annotations

import numbers
import sys
from collections.abc import Mapping
from typing import Any

from runs.sdk import limits

MAX_NAME_LENGTH = limits.NAME_MAX_LENGTH


def validate_metric_name(name: Any) -> str:
    """Raise ``ValueError`` for a name the server would refuse (checked once per name)."""
    if not isinstance(name, str):
        raise TypeError(f"metric name must be a str, not {type(name).__name__}")
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise ValueError(
            f"metric name must be 1-{MAX_NAME_LENGTH} characters long, got {len(name)}: "
            f"{name[:40]!r}"
        )
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        raise ValueError(f"metric name {name!r} contains a control character; remove it")
    return name


def register_kind(kinds: dict[str, str], name: str, kind: str) -> None:
    """Record the kind of a metric's first value; a later value of another kind is refused at
    once (the server would refuse the whole batch it travels in)."""
    known = kinds.get(name)
    if known is None:
        validate_metric_name(name)
        kinds[name] = kind
    elif known != kind:
        raise ValueError(
            f"metric {name!r} holds {known} values in this run; a {kind} value cannot "
            "join it (log it under another name)"
        )


def coerce_value(value: Any) -> tuple[Any, str]:
    """The slow path of ``Run.log`` for values that are not exactly int, float or str.

    bool is logged as the scalar 1 or 0 (so it charts); numpy and other ``numbers.Real``
    become float; anything else is refused (use ``log_list``/``log_row`` for collections).
    """
    if isinstance(value, bool):
        return int(value), "scalar"
    if isinstance(value, numbers.Real):
        return float(value), "scalar"
    if isinstance(value, str):
        return str(value), "string"
    raise TypeError(
        f"run.log() takes a number or a string, not {type(value).__name__}; "
        "use log_list() for lists, log_row()/log_table() for tables"
    )


def plain(value: Any) -> Any:
    """numpy scalars and arrays to JSON-friendly Python values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
        return value
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return str(value)


def error_text(error: Any) -> str:
    """An exception as ``"<ExcType>: <text>"``; anything else as its text."""
    if isinstance(error, BaseException):
        text = str(error)
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    return "" if error is None else str(error)


def safe_path_part(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).strip(".")
    return keep or "image"


def warn(message: str) -> None:
    print(f"runstudio: {message}", file=sys.stderr, flush=True)
