"""The studio's one formatter for durations, metric numbers and times: the run list, the run
page, the child-run tables, the compute, alerts, views and experiments pages load their filters
from here, so a value reads the same everywhere."""

import math
from datetime import datetime, timedelta

from django import template
from django.utils import dateformat, timezone
from django.utils.html import format_html

register = template.Library()


def duration_text(seconds: float | None) -> str:
    """0.5s, 12.3s, 3m 05s, 1h 02m 03s, 2d 3h 04m; "—" for nothing."""
    if seconds is None:
        return "—"
    seconds = max(seconds, 0.0)
    if seconds < 60:
        # One decimal below a minute: a 0.5 s run is not "0s".
        return f"{math.floor(seconds * 10) / 10:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours < 1:
        return f"{minutes}m {secs:02d}s"
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    return f"{hours}h {minutes:02d}m {secs:02d}s"


@register.filter
def duration(value) -> str:
    """A timedelta, or a run (started → ended, or → now while it runs)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, timedelta):
        return duration_text(value.total_seconds())
    started: datetime | None = getattr(value, "started_at", None)
    if started is None:
        return "—"
    ended = getattr(value, "ended_at", None) or timezone.now()
    return duration_text((ended - started).total_seconds())


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


def _time_tag(value, shown: str, relative: bool) -> str:
    if not isinstance(value, datetime):
        return "—"
    # Rendered in the request's time zone, as Django's |date filter does.
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    return format_html(
        '<time datetime="{}" title="{}"{}>{}</time>',
        dateformat.format(local, "c"),
        dateformat.format(local, "Y-m-d H:i:s e"),
        " data-relative" if relative else "",
        dateformat.format(local, shown),
    )


@register.filter
def when(value) -> str:
    """A moment in a list: "2026-05-01 14:03" (studio.js turns it into "3 h ago" up to ~6 weeks
    old), the exact second in the title; "—" for nothing."""
    return _time_tag(value, "Y-m-d H:i", relative=True)


@register.filter
def when_exact(value) -> str:
    """A moment where the second matters (run details, events): "2026-05-01 14:03:27", never
    relative; "—" for nothing."""
    return _time_tag(value, "Y-m-d H:i:s", relative=False)
