"""Filters for the run detail page: durations and metric values shown the same way
everywhere on it."""

from django import template

from runs.templatetags import studio_format

register = template.Library()


# The studio's one formatter (runs/templatetags/studio_format.py) serves both filters here.
register.filter("duration", studio_format.duration)
register.filter("when", studio_format.when)
register.filter("when_exact", studio_format.when_exact)
register.filter("metric_value", studio_format.metric_value)


@register.filter
def basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]
