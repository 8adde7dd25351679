"""Formatting for the run list's cells."""

from django import template

from runs.templatetags import studio_format

register = template.Library()


# One formatter for the whole studio (runs/templatetags/studio_format.py): a duration or a
# metric in the list reads the same as on the run page.
register.filter("duration", studio_format.duration)
register.filter("when", studio_format.when)
register.filter("when_exact", studio_format.when_exact)
register.filter("metric", studio_format.metric_value)
