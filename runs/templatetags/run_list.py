"""Formatting for the run list's cells."""

import math
from datetime import timedelta

from django import template

register = template.Library()


@register.filter
def duration(value: timedelta | None) -> str:
    """1h 02m, 3m 05s, 12.3s — compact, like the studio's duration column."""
    if value is None:
        return "—"
    seconds = max(value.total_seconds(), 0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours < 1:
        return f"{minutes}m {secs:02d}s"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if days else f"{hours}h {minutes:02d}m"


@register.filter
def metric(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
