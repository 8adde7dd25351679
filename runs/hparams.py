"""Hyperparameter analysis for a set of runs (pure: no database): the parameters (properties
and tags) as parallel-coordinates axes next to metric summaries, and each parameter's rank
correlation with a chosen metric — W&B's "parameter importance", as a Spearman correlation.

Input is columns in the run list's language (runs/compare.py): a `runs.query.Field` and the
runs' values for it, as `selectors.run_rows` reads them."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runs.charts import FONT, _escape, color
from runs.query import Field


@dataclass(frozen=True)
class Param:
    key: str  # the column key: "properties.lr" / "tags.optimizer"
    label: str
    values: list[Any]  # per run: a float, a str (a category), or None
    numeric: bool


def _as_value(value: Any) -> float | str | None:
    if value is None:
        return None
    if value is True:
        return "(set)"  # a bare tag
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None


def params(columns: Sequence[tuple[Field, Sequence[Any]]]) -> list[Param]:
    """The property and tag columns that vary between the runs (a constant says nothing), as
    axes, properties first, each kind in key order."""
    found: list[Param] = []
    for kind in ("property", "tag"):
        for field, raw in sorted(
            (c for c in columns if c[0].kind == kind), key=lambda c: c[0].name
        ):
            values = [_as_value(v) for v in raw]
            present = [v for v in values if v is not None]
            if len({repr(v) for v in present}) < 2:
                continue
            numeric = all(isinstance(v, float) for v in present)
            found.append(Param(field.key, field.label, values, numeric))
    return found


def _ranks(values: Sequence[float]) -> list[float]:
    """Average ranks (ties share the mean of their positions), 1-based."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(xs: Sequence[float | None], ys: Sequence[float | None]) -> float | None:
    """Spearman's rank correlation over the pairs where both are numbers; None with fewer than
    three pairs or when either side is constant."""
    pairs = [
        (x, y) for x, y in zip(xs, ys, strict=True) if isinstance(x, float) and isinstance(y, float)
    ]
    if len(pairs) < 3:
        return None
    rx = _ranks([p[0] for p in pairs])
    ry = _ranks([p[1] for p in pairs])
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    if vx == 0 or vy == 0:
        return None
    return cov / math.sqrt(vx * vy)


def importance(found: list[Param], target: list[float | None]) -> list[dict]:
    """Each numeric parameter's rank correlation with the target, strongest first."""
    rows = []
    for param in found:
        if not param.numeric:
            continue
        rho = spearman(param.values, target)
        if rho is not None:
            rows.append({"key": param.key, "label": param.label, "rho": rho, "abs": abs(rho)})
    return sorted(rows, key=lambda r: -r["abs"])


def parcoords_figure(
    found: list[Param], metrics: list[tuple[str, list[float | None]]], *, color_by: int = 0
) -> dict[str, Any]:
    """A parallel-coordinates figure: one axis per parameter (categories as ticks) and per
    metric; lines coloured by the first metric. Drag along an axis to filter (plotly's own)."""
    dimensions = []
    for param in found:
        if param.numeric:
            dimensions.append({"label": _escape(param.label), "values": list(param.values)})
        else:
            categories = sorted({str(v) for v in param.values if v is not None})
            index = {c: i for i, c in enumerate(categories)}
            dimensions.append(
                {
                    "label": _escape(param.label),
                    "values": [None if v is None else index[str(v)] for v in param.values],
                    "tickvals": list(range(len(categories))),
                    "ticktext": [_escape(c) for c in categories],
                }
            )
    for name, values in metrics:
        dimensions.append({"label": _escape(name), "values": list(values)})
    line: dict[str, Any] = {"color": color(0)}
    if metrics and color_by < len(metrics):
        line = {"color": list(metrics[color_by][1]), "colorscale": "Viridis", "showscale": True}
    return {
        "data": [{"type": "parcoords", "dimensions": dimensions, "line": line}],
        "layout": {
            "height": 380,
            "margin": {"l": 70, "r": 70, "t": 60, "b": 30},
            "font": FONT,
            "paper_bgcolor": "#ffffff",
            "plot_bgcolor": "#ffffff",
        },
    }
