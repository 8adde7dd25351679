"""The run list's one FilterSet: the studio's run list, the REST API's run list and saved views
(which store these parameters) all filter through `RunFilter`."""

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import django_filters
from django import forms
from django.db.models import Exists, OuterRef, Q, QuerySet

from runs import limits, query
from runs.models import Run, RunProperty, RunStatus, RunTag


@dataclass(frozen=True)
class ParsedQuery:
    text: str
    q: Q


class QueryField(forms.CharField):
    """The search language; cleaning compiles it, so a bad query is a form error on `q`."""

    def clean(self, value):
        text = super().clean(value)
        if not text:
            return ""
        try:
            return ParsedQuery(text, query.parse(text))
        except query.QueryError as exc:
            raise forms.ValidationError(exc.message, code="query") from None


class BoundedDateField(forms.DateField):
    """A day within DATE_MIN..DATE_MAX: `created_to=9999-12-31` plus the day it spans used to
    overflow datetime (a 500)."""

    def clean(self, value):
        day = super().clean(value)
        if day and not limits.DATE_MIN <= day.isoformat() <= limits.DATE_MAX:
            raise forms.ValidationError(
                f"{day.isoformat()} is out of range; use a day between {limits.DATE_MIN} and "
                f"{limits.DATE_MAX} (DATE_MIN, DATE_MAX).",
                code="range",
            )
        return day


class BoundedDateFilter(django_filters.DateFilter):
    field_class = BoundedDateField


class KeyValueField(forms.Field):
    """Repeatable `key` or `key=value` (a key alone matches any value)."""

    widget = forms.MultipleHiddenInput  # reads every value of the parameter

    def to_python(self, value):
        if not value:
            return []
        pairs = []
        for raw in value if isinstance(value, list | tuple) else [value]:
            raw = str(raw).strip()
            if not raw:
                continue
            # As Django's CharField does: PostgreSQL fails on a NUL (a POST search's body
            # reaches here without runs/middleware.py's URL check).
            if "\x00" in raw:
                raise forms.ValidationError("Null characters are not allowed.", code="null")
            key, sep, val = raw.partition("=")
            if not key.strip():
                raise forms.ValidationError(
                    f"{raw!r} needs a key: write key or key=value.", code="key"
                )
            pairs.append((key.strip(), val if sep else None))
        return pairs


class QueryFilter(django_filters.Filter):
    field_class = QueryField

    def filter(self, qs: QuerySet, value) -> QuerySet:
        if not value:
            return qs
        return qs.filter(query.probing(value.q) if _probing(self) else value.q)


class KeyValueFilter(django_filters.Filter):
    field_class = KeyValueField

    def __init__(self, *args, model, **kwargs):
        self.kv_model = model  # `model` is the FilterSet's, set by django-filter
        super().__init__(*args, **kwargs)

    def filter(self, qs: QuerySet, value) -> QuerySet:
        for key, val in value or []:
            match = self.kv_model.objects.filter(key=key)
            if val is not None:
                match = match.filter(value=val)
            if _probing(self):  # RunFilter.probe_qs: a correlated probe per run
                qs = qs.filter(Exists(match.filter(run_id=OuterRef("pk"))))
            else:  # IN (subquery), not EXISTS: planned once, from the (key, value) index.
                qs = qs.filter(pk__in=match.values("run_id"))
        return qs


def _probing(one: django_filters.Filter) -> bool:
    return getattr(one.parent, "probing", False)


def _day_start(day) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


TOP_LEVEL_CHOICES = [("1", "Top-level runs only"), ("0", "Include child runs")]
ARCHIVED_CHOICES = [
    ("0", "Live runs"),
    ("1", "Archived runs only"),
    ("all", "Live and archived"),
    ("false", "no"),
    ("true", "yes"),
]


class RunFilter(django_filters.FilterSet):
    q = QueryFilter(label="Search")
    experiment = django_filters.CharFilter(field_name="experiment__name")
    status = django_filters.MultipleChoiceFilter(choices=RunStatus.choices)
    tag = KeyValueFilter(model=RunTag, label="Tag (key or key=value)")
    property = KeyValueFilter(model=RunProperty, label="Property (key or key=value)")
    compute_target = django_filters.CharFilter()
    submitter = django_filters.CharFilter(field_name="submitter__username")
    created_from = BoundedDateFilter(method="filter_created_from")
    created_to = BoundedDateFilter(method="filter_created_to")
    top_level = django_filters.TypedChoiceFilter(
        choices=TOP_LEVEL_CHOICES + [("true", "yes"), ("false", "no")],
        coerce=lambda v: v in ("1", "true"),
        method="filter_top_level",
    )
    parent = django_filters.CharFilter(field_name="parent__run_id")
    # Archived runs (run management's soft delete) are left out unless asked for: `1` lists
    # only them (the Archived page), `all` both.
    archived = django_filters.ChoiceFilter(
        choices=ARCHIVED_CHOICES, method="filter_archived", empty_label=None
    )

    class Meta:
        model = Run
        fields: list[str] = []

    def filter_created_from(self, qs: QuerySet, name: str, value) -> QuerySet:
        return qs.filter(created_at__gte=_day_start(value))

    def filter_created_to(self, qs: QuerySet, name: str, value) -> QuerySet:
        return qs.filter(created_at__lt=_day_start(value) + timedelta(days=1))

    def filter_top_level(self, qs: QuerySet, name: str, value) -> QuerySet:
        return qs.filter(parent__isnull=True) if value else qs

    def filter_archived(self, qs: QuerySet, name: str, value) -> QuerySet:
        return qs  # applied in filter_queryset, which also runs when the parameter is absent

    probing = False

    def probe_qs(self) -> QuerySet:  # a method: `property` is a filter's name here
        """The same runs as `qs`, with each tag, property and metric condition a correlated
        EXISTS (runs.query.probing): what the run list checks a window of candidate runs
        against. Only after `is_valid()`."""
        self.probing = True
        try:
            return self.filter_queryset(self.queryset.all())
        finally:
            self.probing = False

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        archived = self.form.cleaned_data.get("archived") or "0"
        if archived in ("0", "false"):
            queryset = queryset.filter(archived_at__isnull=True)
        elif archived in ("1", "true"):
            queryset = queryset.filter(archived_at__isnull=False)
        return super().filter_queryset(queryset)


FILTER_NAMES = tuple(RunFilter.base_filters)
