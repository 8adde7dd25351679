"""Filters for the run detail page: durations and metric values shown the same way
everywhere on it."""

import math
from datetime import datetime

from django import template
from django.utils import timezone

register = template.Library()


@register.filter
def duration(run) -> str:
    """Started → ended (or → now while it runs), as `1h 02m 03s`; "—" before it starts."""
    started: datetime | None = run.started_at
    if started is None:
        return "—"
    seconds = max(0, int(((run.ended_at or timezone.now()) - started).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {seconds:02d}s"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


@register.filter
def metric_value(value) -> str:
    """Six significant digits; NaN and infinities by name; "—" for nothing."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}"


@register.filter
def basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]
