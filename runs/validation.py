"""Checks shared by the services: each names the field and the rule it broke."""

import math
import re
from typing import Any

import orjson

from runs import limits
from runs.errors import InvalidInput

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL = CONTROL_CHARACTERS
# Multi-line text (descriptions, tag and property values) keeps tab and line breaks only.
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def check_name(value: Any, *, field: str, what: str = "name") -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: the {what} must be a string.", field=field)
    if not value:
        raise InvalidInput(f"{field}: the {what} must not be empty.", field=field)
    if len(value) > limits.NAME_MAX_LENGTH:
        raise InvalidInput(
            f"{field}: the {what} is {len(value)} characters long; the limit is "
            f"{limits.NAME_MAX_LENGTH}. Use a shorter {what}.",
            field=field,
        )
    if _CONTROL.search(value):
        raise InvalidInput(
            f"{field}: the {what} {value!r} contains a control character; "
            "use printable characters only.",
            field=field,
        )
    return value


def check_text(
    value: Any,
    *,
    field: str,
    max_length: int,
    allow_none: bool = False,
    allow_control: bool = False,
) -> str | None:
    """Multi-line text: tab, CR and LF are kept; other control characters (terminal escapes,
    NUL) are refused unless `allow_control` (an error message may quote a terminal's output)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: must be a string.", field=field)
    if len(value) > max_length:
        raise InvalidInput(
            f"{field}: is {len(value)} characters long; the limit is {max_length}.", field=field
        )
    if "\x00" in value:
        raise InvalidInput(f"{field}: must not contain a NUL character.", field=field)
    if not allow_control and (match := _CONTROL_BUT_LINES.search(value)):
        raise InvalidInput(
            f"{field}: contains the control character {match.group()!r}; only tab and line "
            "breaks are allowed.",
            field=field,
        )
    return value


def check_line(value: Any, *, field: str, max_length: int, allow_none: bool = False) -> str | None:
    """One line of text (a display name, a view's or a rule's name): no control characters
    at all — a trailing newline or an escape sequence would break lists, CSV and logs."""
    value = check_text(value, field=field, max_length=max_length, allow_none=allow_none)
    if value is not None and (match := _CONTROL.search(value)):
        raise InvalidInput(
            f"{field}: {value[:100]!r} contains the control character {match.group()!r}; "
            "use printable characters on one line.",
            field=field,
        )
    return value


def check_stored_json(value: Any, *, field: str, max_bytes: int) -> None:
    """A value stored in a JSON column: at most STORED_JSON_MAX_DEPTH levels (orjson's own
    serialisation limit, under SQLite's JSON_VALID limit of 1,000, past which the insert failed
    its CHECK constraint: a 500) and `max_bytes` once serialised."""
    try:
        size = len(orjson.dumps(value))
    except orjson.JSONEncodeError:
        raise InvalidInput(
            f"{field}: nested deeper than {limits.STORED_JSON_MAX_DEPTH} levels "
            "(STORED_JSON_MAX_DEPTH); flatten it.",
            field=field,
        ) from None
    if size > max_bytes:
        raise InvalidInput(
            f"{field}: {size} bytes as JSON; the limit is {max_bytes}. Log a smaller value "
            "or upload it as a file.",
            field=field,
        )


def check_pattern(value: Any, *, field: str, pattern: re.Pattern, rule: str) -> str:
    # fullmatch: a pattern's `$` also matches before a trailing newline ("exp\n").
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidInput(f"{field}: {value!r} is not a valid name: {rule}.", field=field)
    return value


def check_mapping(value: Any, *, field: str, most: int = limits.TAGS_PER_REQUEST) -> dict:
    if not isinstance(value, dict):
        raise InvalidInput(f"{field}: must be a JSON object of key → value.", field=field)
    if len(value) > most:
        raise InvalidInput(f"{field}: has {len(value)} keys; the limit is {most}.", field=field)
    return value


def check_text_mapping(value: Any, *, field: str) -> dict[str, str]:
    """A key → text object (experiment and logged-model tags and params): each value is kept
    as its text, None as ""."""
    check_mapping(value, field=field)
    checked = {}
    for key, item in value.items():
        check_name(key, field=f"{field}.{key}", what="key")
        checked[key] = check_text(
            "" if item is None else str(item),
            field=f"{field}.{key}",
            max_length=limits.TAG_VALUE_MAX_LENGTH,
        )
    return checked


def scalar_value(value: Any, *, field: str) -> float:
    """A number, or one of the strings NaN / Infinity / -Infinity, as a float."""
    kind = type(value)
    if kind is float or kind is int:
        try:
            return float(value)
        except OverflowError:
            raise InvalidInput(
                f"{field}: the number is beyond a float's range.", field=field
            ) from None
    if kind is str and value in NON_FINITE:
        return NON_FINITE[value]
    raise InvalidInput(
        f'{field}: {value!r} is not a number (use a number, or "NaN", "Infinity", "-Infinity").',
        field=field,
    )
