"""The compare page's data, in the run list's column language.

Every value the compare page shows — the scatter's axes, the diff table's rows, the parallel
coordinates' axes, the parameter importance — is a column of the run list: a `runs.query.Field`
named by its key (`status`, `duration`, `tags.opt`, `properties.lr`, ``metrics.`val loss`.min``)
and read by `selectors.run_rows`, the function that fills the list's cells. So a run's duration,
a bare tag or a NaN last value reads the same on the list, on the compare page and in a saved
view, and a key typed in the search bar names the same value in a compare URL.

Compare URLs written before this (`sx=metric:loss:last`, `tag:opt`, `property:lr`,
`attr:duration (s)`) are read by `legacy_column_key` and redirected to their keys.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from runs import selectors
from runs.models import Run
from runs.query import AGGREGATES, Field, QueryError, parse_field

METRIC_AGGREGATES = ("last", "min", "max")
# Attributes the diff table always shows, and the one the scatter may plot (a number).
DIFF_ATTRIBUTES = ("experiment", "status", "duration")
SCATTER_ATTRIBUTES = ("duration",)


@dataclass
class CompareTable:
    """The runs, in the order asked, and per column key the runs' values in that order."""

    runs: list[Run]
    metrics: list[str]  # the runs' scalar metric names
    columns: list[Field]  # every column the page may show, diff-table order
    values: dict[str, list[Any]]

    def column(self, key: str) -> list[Any]:
        return self.values.get(key) or [None] * len(self.runs)


def compare_table(*, runs: list[Run]) -> CompareTable:
    """The compare columns of `runs` (loaded by `selectors.with_run_details`, so tags and
    properties are prefetched): attributes, each property and tag key any run has, and each
    scalar metric's last / min / max; their values read by `selectors.run_rows` (one query for
    every metric column)."""
    metrics = selectors.scalar_metric_names(runs=runs)
    columns = [Field("attribute", name) for name in DIFF_ATTRIBUTES]
    columns += [
        Field("property", key) for key in sorted({p.key for r in runs for p in r.properties.all()})
    ]
    columns += [Field("tag", key) for key in sorted({t.key for r in runs for t in r.tags.all()})]
    columns += [Field("metric", name, agg) for name in metrics for agg in METRIC_AGGREGATES]
    rows = selectors.run_rows(runs=runs, columns=columns)
    values = {f.key: [cells[i] for _, cells in rows] for i, f in enumerate(columns)}
    return CompareTable(runs=runs, metrics=metrics, columns=columns, values=values)


def scatter_columns(table: CompareTable) -> list[Field]:
    """What the scatter may plot: metric summaries first, then properties, tags, duration."""
    order = {"metric": 0, "property": 1, "tag": 2, "attribute": 3}
    found = [f for f in table.columns if f.kind != "attribute" or f.name in SCATTER_ATTRIBUTES]
    return sorted(found, key=lambda f: order[f.kind])


def axis_title(field: Field) -> str:
    """A chart axis's title: the column's label, with the unit a plotted duration has."""
    if field.kind == "attribute" and field.name == "duration":
        return "Duration (s)"
    if field.kind in ("tag", "property"):
        return f"{field.name} ({field.kind})"
    return field.label


def plot_value(value: Any) -> float | str | None:
    """A cell as a chart reads it: numbers (and numeric text) as finite floats, a duration in
    seconds, a time as ISO text, a bare tag as "(set)", other text as a category; NaN,
    infinities and missing values as None (left out)."""
    if value is None:
        return None
    if value is True:
        return "(set)"
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else str(value)


def pick_column(raw: str | None, columns: list[Field]) -> Field | None:
    """The column a URL names (any spelling `parse_field` reads: `params.lr`, `metrics.loss`),
    if it is one of `columns`."""
    if not raw:
        return None
    try:
        key = parse_field(raw).key
    except QueryError:
        return None
    return next((f for f in columns if f.key == key), None)


def legacy_column_key(raw: str) -> str | None:
    """A compare column written the old way — `metric:<name>:<last|min|max>`, `tag:<key>`,
    `property:<key>`, `attr:duration (s)` — as its key today; None for anything else (including
    every key of today: none of them starts with one of those prefixes and a colon)."""
    kind, sep, rest = (raw or "").partition(":")
    if not sep or not rest:
        return None
    if kind == "metric":
        name, _, agg = rest.rpartition(":")
        return Field("metric", name, agg).key if name and agg in AGGREGATES else None
    if kind in ("tag", "property"):
        return Field(kind, rest).key
    if kind == "attr" and rest.startswith("duration"):
        return "duration"
    return None


def diff_rows(table: CompareTable, *, metrics: list[str], only_diff: bool) -> list[dict]:
    """The diff table: one row per attribute, property, tag and chosen metric's last / min /
    max, a value per run; `differs` when the runs do not all agree (a missing value counts as
    a value of its own). Rows are columns: `field.key` names them as the run list does."""
    chosen = set(metrics)
    rows = []
    for field in table.columns:
        if field.kind == "metric" and field.name not in chosen:
            continue
        values = table.column(field.key)
        differs = len({repr(_as_shown(v)) for v in values}) > 1
        if differs or not only_diff:
            rows.append({"field": field, "values": values, "differs": differs})
    return rows


def _as_shown(value: Any) -> Any:
    """A value at the precision the page shows it: two running runs' durations, read a few
    microseconds apart, are the same "3.9s" and do not differ (studio_format's duration:
    tenths of a second below a minute, whole seconds above)."""
    if isinstance(value, timedelta):
        seconds = max(value.total_seconds(), 0.0)
        return math.floor(seconds * 10) / 10 if seconds < 60 else int(seconds)
    return value
