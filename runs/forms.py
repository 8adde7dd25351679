"""The run list's state beyond the filters (columns, sort, page, selection), read from the query
string, and the links a page needs to change one part of it. Filters are runs.filters.RunFilter.
"""

from dataclasses import dataclass, field

from django import forms
from django.http import QueryDict

from runs import query
from runs.selectors import SORT_DEFAULT
from runs.services.saved_views import DEFAULT_COLUMNS, VIEW_COLUMNS_MAX, VIEW_NAME_MAX_LENGTH

PAGE_SIZE = 100
PAGE_MAX = 10_000  # offset paging: beyond this, narrow the search instead

# The columns offered as checkboxes; tags, properties and metrics are added by key.
STANDARD_COLUMNS = [
    "display_name",
    "run_id",
    "experiment",
    "status",
    "submitter",
    "compute_target",
    "run_type",
    "created",
    "duration",
    "description",
    "parent",
]


@dataclass
class SortLink:
    field: query.Field
    url: str
    direction: str  # "asc", "desc" or "" (not the sort column)


@dataclass
class ListState:
    data: QueryDict  # the effective query string (defaults filled in)
    columns: list[query.Field]
    sort: str
    page: int
    selected: list[str]
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_query(cls, raw: QueryDict, *, top_level_default: bool = True) -> "ListState":
        data = raw.copy()
        if top_level_default and "top_level" not in data:
            data["top_level"] = "1"
        errors, columns, seen = [], [], set()
        for key in data.getlist("col") or DEFAULT_COLUMNS:
            if not key.strip():
                continue
            try:
                column = query.parse_field(key)
            except query.QueryError as exc:
                errors.append(f"Column {key!r}: {exc.message}")
                continue
            if column.key not in seen and len(columns) < VIEW_COLUMNS_MAX:
                seen.add(column.key)
                columns.append(column)
        # The name column leads whatever the URL asks for: without it rows can't be told apart.
        if "display_name" not in seen:
            columns = [query.parse_field("display_name"), *columns[: VIEW_COLUMNS_MAX - 1]]
        if data.getlist("col"):
            data.setlist("col", [c.key for c in columns])
        sort = data.get("sort") or SORT_DEFAULT
        try:
            sort = ("-" if sort.startswith("-") else "") + query.parse_field(sort.lstrip("-+")).key
        except query.QueryError as exc:
            errors.append(f"Sort {sort!r}: {exc.message}")
            sort = SORT_DEFAULT
        try:
            page = min(max(int(data.get("page", 1)), 1), PAGE_MAX)
        except ValueError:
            page = 1
        return cls(data, columns, sort, page, data.getlist("run"), errors)

    def querystring(self, **changes) -> str:
        """The current state with some parameters replaced (None removes one)."""
        data = self.data.copy()
        data.pop("page", None)
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            elif isinstance(value, list):
                data.setlist(key, value)
            else:
                data[key] = str(value)
        return data.urlencode()

    def state_querystring(self) -> str:
        """What a saved view or the CSV export keeps: everything but the page."""
        data = self.data.copy()
        data.pop("page", None)
        if not data.getlist("col"):
            data.setlist("col", [c.key for c in self.columns])
        return data.urlencode()

    def sort_links(self) -> list[SortLink]:
        current = self.sort.lstrip("-")
        links = []
        for column in self.columns:
            if column.key == current:
                direction = "desc" if self.sort.startswith("-") else "asc"
                new = column.key if direction == "desc" else f"-{column.key}"
            else:
                direction = ""
                # Numbers and times read best biggest / newest first.
                numeric = column.kind == "metric" or column.key in ("created", "duration")
                new = f"-{column.key}" if numeric else column.key
            links.append(SortLink(column, "?" + self.querystring(sort=new), direction))
        return links

    def page_url(self, page: int) -> str:
        return "?" + self.querystring(page=page)

    def without_column(self, key: str) -> str:
        return "?" + self.querystring(col=[c.key for c in self.columns if c.key != key])


class ViewSaveForm(forms.Form):
    name = forms.CharField(max_length=VIEW_NAME_MAX_LENGTH)
    shared = forms.BooleanField(required=False)
    state = forms.CharField(required=False)  # the list's query string
