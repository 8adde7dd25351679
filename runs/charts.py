"""Series and summaries → plotly figure dicts. Pure: no database, no request.

The browser code (static/js/charts.js, compare.js) asks the chart views for these figures and
hands them to `Plotly.react` as they are, so every trace and layout choice lives here.

Smoothing is TensorBoard's: an exponential moving average with weight w in [0, 1), debiased so
the first points are not pulled towards zero. It runs on the points being drawn — after
downsampling — which is what TensorBoard does with its sampled points too; the raw line stays
faintly behind the smoothed one.
"""

import math
from collections.abc import Iterable, Sequence
from typing import Any

PALETTE = [
    "#1f6feb",
    "#d1242f",
    "#1a7f37",
    "#9a6700",
    "#8250df",
    "#0598bc",
    "#bf3989",
    "#57606a",
    "#fb8500",
    "#2da44e",
]
NAN_COLOR = "#d1242f"
X_TITLES = {"step": "step", "time": "wall time (UTC)", "relative": "relative time (s)"}
AGGREGATES = ("last", "min", "max")
FONT = {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12, "color": "#24292f"}


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def ema(values: Sequence[float | None], weight: float) -> list[float | None]:
    """TensorBoard's debiased exponential moving average; None (NaN, gaps) passes through."""
    if not 0 <= weight < 1:
        raise ValueError("smoothing weight must be in [0, 1)")
    if weight == 0:
        return list(values)
    out: list[float | None] = []
    last, debias_steps = 0.0, 0
    for value in values:
        if value is None or not math.isfinite(value):
            out.append(None)
            continue
        last = last * weight + (1 - weight) * value
        debias_steps += 1
        out.append(last / (1 - weight**debias_steps))
    return out


def _x_for_plotly(xs: Iterable[float], x: str) -> list:
    # A date axis reads numbers as milliseconds since the epoch, in UTC.
    if x == "time":
        return [v * 1000.0 for v in xs]
    return list(xs)


def _base_layout(title: str, *, height: int = 340) -> dict[str, Any]:
    return {
        "title": {"text": title, "x": 0, "xanchor": "left", "font": {"size": 14}},
        "height": height,
        "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
        "font": FONT,
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "legend": {"orientation": "h", "y": -0.2, "x": 0},
        "hovermode": "closest",
    }


def _axis(title: str, **extra) -> dict[str, Any]:
    return {
        "title": {"text": title},
        "gridcolor": "#eaeef2",
        "zerolinecolor": "#d0d7de",
        "automargin": True,
        **extra,
    }


def line_figure(
    series: Sequence[dict[str, Any]],
    *,
    x: str = "step",
    smoothing: float = 0.0,
    title: str = "",
    x_range: Sequence[float | None] | None = None,
) -> dict[str, Any]:
    """Metric against step / wall time / relative time, one line per series.

    Each series: {"label", "points": {"x", "y"}, "nan": {"x", "count"}, "downsampled",
    "in_range"}. `x_range`, in the series' x units, keeps the view where the user zoomed."""
    traces: list[dict[str, Any]] = []
    nan_total = 0
    for index, item in enumerate(series):
        xs = _x_for_plotly(item["points"]["x"], x)
        ys = list(item["points"]["y"])
        hue = item.get("color") or color(index)
        label = item["label"]
        note = " (downsampled)" if item.get("downsampled") else ""
        raw = {
            "type": "scatter",
            "mode": "lines" if len(xs) > 1 else "markers",
            "name": label,
            "x": xs,
            "y": ys,
            "line": {"color": hue, "width": 1.5},
            "marker": {"color": hue, "size": 6},
            "connectgaps": False,
            "hovertemplate": f"%{{y:.6g}} at %{{x}}<extra>{_escape(label)}{note}</extra>",
            "meta": {"role": "raw", "label": label},
        }
        if smoothing > 0:
            raw.update(
                opacity=0.25, showlegend=False, hoverinfo="skip", legendgroup=label, name=label
            )
            raw.pop("hovertemplate")
            traces.append(raw)
            traces.append(
                {
                    **raw,
                    "y": ema(ys, smoothing),
                    "opacity": 1,
                    "showlegend": True,
                    "hoverinfo": None,
                    "hovertemplate": f"%{{y:.6g}} at %{{x}}<extra>{_escape(label)} "
                    f"(smoothed){note}</extra>",
                    "meta": {"role": "smoothed", "label": label},
                }
            )
            traces[-1].pop("hoverinfo")
        else:
            traces.append(raw)
        nan = item.get("nan") or {"x": [], "count": []}
        if nan["x"]:
            nan_total += sum(nan["count"])
            traces.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": f"{label}: NaN",
                    "x": _x_for_plotly(nan["x"], x),
                    "y": [0.03] * len(nan["x"]),
                    "yaxis": "y2",
                    "customdata": nan["count"],
                    "marker": {
                        "symbol": "x-thin",
                        "size": 8,
                        "color": NAN_COLOR,
                        "line": {"width": 1.5, "color": NAN_COLOR},
                    },
                    "hovertemplate": "%{customdata} NaN at %{x}<extra>"
                    f"{_escape(label)}</extra>",
                    "showlegend": False,
                    "meta": {"role": "nan", "label": label},
                }
            )
    xaxis = _axis(X_TITLES[x], type="date" if x == "time" else "linear")
    if x_range and x_range[0] is not None and x_range[1] is not None:
        xaxis["range"] = _x_for_plotly(x_range, x)
    layout = _base_layout(title)
    layout.update(
        xaxis=xaxis,
        yaxis=_axis(""),
        # NaN marks ride along the bottom edge on an axis of their own.
        yaxis2={"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True},
        showlegend=len(series) > 1,
        uirevision="keep",  # zoom survives Plotly.react with refetched traces
    )
    if nan_total:
        layout["annotations"] = [
            {
                "text": f"× {nan_total} NaN",
                "xref": "paper",
                "yref": "paper",
                "x": 1,
                "y": 1.08,
                "showarrow": False,
                "font": {"color": NAN_COLOR, "size": 11},
                "xanchor": "right",
            }
        ]
    if not series or not any(item["points"]["x"] for item in series):
        layout["annotations"] = [*layout.get("annotations", []), _no_data()]
    return _as_text({"data": traces, "layout": layout})


def _bar_range(values: Sequence[float | None]) -> dict[str, Any]:
    """A bar chart's y range: from zero as usual, but when the values sit close together far
    from zero (accuracies of 0.91–0.93) a zero-based axis hides every difference, so the range
    hugs the values (with a margin) and the axis says so by not starting at 0."""
    known = [v for v in values if v is not None]
    if not known:
        return {}
    low, high = min(known), max(known)
    spread = high - low
    scale = max(abs(low), abs(high))
    if scale == 0 or (low < 0 < high) or spread > 0.25 * scale:
        return {}
    pad = spread * 0.15 if spread else scale * 0.01
    return {"range": [low - pad, high + pad], "autorange": False}


def summary_bar_figure(
    rows: Sequence[dict[str, Any]], *, metric: str, aggregates: Sequence[str] = AGGREGATES
) -> dict[str, Any]:
    """A metric's last / min / max across runs, from the series summaries (no points).

    Each row: {"label", "last", "min", "max"}; None (no such metric, or NaN) is left out."""
    labels = [row["label"] for row in rows]
    shades = {"last": "#1f6feb", "min": "#1a7f37", "max": "#d1242f"}
    traces = [
        {
            "type": "bar",
            "name": aggregate,
            "x": labels,
            "y": [_number(row.get(aggregate)) for row in rows],
            "marker": {"color": shades.get(aggregate, color(i))},
            "hovertemplate": f"%{{x}}<br>{aggregate}: %{{y:.6g}}<extra></extra>",
        }
        for i, aggregate in enumerate(aggregates)
    ]
    layout = _base_layout(f"{metric}: {' / '.join(aggregates)} by run")
    layout.update(
        barmode="group",
        xaxis=_axis("", type="category", tickangle=-20),
        yaxis=_axis(metric, **_bar_range([v for t in traces for v in t["y"]])),
        showlegend=True,
        legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
    )
    if not rows:
        layout["annotations"] = [_no_data()]
    return _as_text({"data": traces, "layout": layout})


def _spans_decades(values: Sequence[Any]) -> bool:
    """Positive numbers two or more orders of magnitude apart (a learning-rate sweep of
    0.1 … 0.0001): a linear axis piles all but the largest onto zero, so it goes log."""
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) < 2 or len(numbers) != len(values) or min(numbers) <= 0:
        return False
    return max(numbers) / min(numbers) >= 100


def scatter_figure(
    points: Sequence[dict[str, Any]], *, x_label: str, y_label: str
) -> dict[str, Any]:
    """One column against another across runs. Each point: {"label", "x", "y"}; a point
    missing either value is left out. Text values make a category axis; positive numbers
    spanning two decades or more a log axis."""
    kept = [
        {"color": color(i), **p}
        for i, p in enumerate(points)
        if p.get("x") is not None and p.get("y") is not None
    ]
    trace = {
        "type": "scatter",
        "mode": "markers",
        "name": "runs",
        "x": [p["x"] for p in kept],
        "y": [p["y"] for p in kept],
        "text": [p["label"] for p in kept],
        "marker": {
            "size": 10,
            "color": [p["color"] for p in kept],
            "line": {"width": 1, "color": "#ffffff"},
        },
        "hovertemplate": f"%{{text}}<br>{_escape(x_label)}: %{{x}}<br>"
        f"{_escape(y_label)}: %{{y}}<extra></extra>",
    }
    layout = _base_layout(f"{y_label} vs {x_label}")
    x_type = {"type": "log"} if _spans_decades(trace["x"]) else {}
    y_type = {"type": "log"} if _spans_decades(trace["y"]) else {}
    layout.update(xaxis=_axis(x_label, **x_type), yaxis=_axis(y_label, **y_type), showlegend=False)
    if not kept:
        layout["annotations"] = [_no_data()]
    return _as_text({"data": [trace], "layout": layout})


def children_figure(
    rows: Sequence[dict[str, Any]], *, metric: str, best: str = "min", kind: str = "bar"
) -> dict[str, Any]:
    """The AutoML / sweep view: each child's best (min or max) value of a metric.

    Each row: {"label", "min", "max", "status"}; the best child is drawn in another color."""
    if best not in ("min", "max"):
        raise ValueError("best must be 'min' or 'max'")
    values = [_number(row.get(best)) for row in rows]
    known = [v for v in values if v is not None]
    winner = (min(known) if best == "min" else max(known)) if known else None
    colors = ["#1a7f37" if v is not None and v == winner else "#8c959f" for v in values]
    labels = [row["label"] for row in rows]
    trace: dict[str, Any] = {
        "name": f"{best} {metric}",
        "x": labels,
        "y": values,
        "customdata": [row.get("status", "") for row in rows],
        "hovertemplate": f"%{{x}}<br>{best}: %{{y:.6g}}<br>%{{customdata}}<extra></extra>",
    }
    if kind == "scatter":
        trace.update(type="scatter", mode="markers", marker={"size": 10, "color": colors})
    else:
        trace.update(type="bar", marker={"color": colors})
    title = f"Best ({best}) {metric} by child run"
    if winner is not None:
        title += f" — best {winner:.6g}"
    layout = _base_layout(title)
    layout.update(
        xaxis=_axis("child run", type="category", tickangle=-20),
        yaxis=_axis(metric, **(_bar_range(values) if kind == "bar" else {})),
        showlegend=False,
    )
    if not rows:
        layout["annotations"] = [_no_data("No child has this metric")]
    return _as_text({"data": [trace], "layout": layout})


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _escape(text: str) -> str:
    # Plotly renders hover text as (a subset of) HTML: keep user text as text.
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, list):
        return [_escape(v) if isinstance(v, str) else v for v in value]
    return value


def _as_text(figure: dict[str, Any]) -> dict[str, Any]:
    """Every string plotly draws as pseudo-HTML — legend names, titles, axis titles, category
    labels (run display names on a bar chart) and `text` — escaped once, here, so a display
    name, metric or experiment name like `<a href=…>` or `<b>` shows as typed and never as a
    link. Hover templates escape their own pieces where they are built; `meta` is data."""
    for trace in figure["data"]:
        for key in ("name", "text", "x", "y"):
            if key in trace:
                trace[key] = _escaped(trace[key])
    layout = figure["layout"]
    axes = (layout.get(name, {}).get("title") for name in ("xaxis", "yaxis"))
    for part in (layout.get("title"), *axes):
        if isinstance(part, dict) and "text" in part:
            part["text"] = _escape(part["text"])
    return figure


def _no_data(text: str = "No data") -> dict[str, Any]:
    return {
        "text": text,
        "xref": "paper",
        "yref": "paper",
        "x": 0.5,
        "y": 0.5,
        "showarrow": False,
        "font": {"size": 14, "color": "#57606a"},
    }
