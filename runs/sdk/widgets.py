"""A Jupyter widget that watches a run, like azureml.widgets' RunDetails.

    from runs.sdk.widgets import RunDetails
    RunDetails(run).show()

`show()` returns at once: a daemon thread fetches the run's status, metrics (a table and a
small SVG line chart per scalar metric), the tail of `logs/70_driver_log.txt` (read by offset,
so a huge log costs one small read per refresh) and, for a parent, its children with their best
values, and redraws every `interval` seconds (default 10) until the run ends. With ipywidgets
(the `widgets` extra) the output is an `ipywidgets.HTML` updated in place; without it, a plain
text summary is printed and then one line per status change. Imports no Django.
"""

from __future__ import annotations

import html
import math
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runs.sdk.client import NotFound, RunstudioError, quote_path, quote_segment

TERMINAL = frozenset({"Completed", "Failed", "Canceled"})
DRIVER_LOG = "logs/70_driver_log.txt"
DEFAULT_INTERVAL = 10.0
LOG_TAIL_BYTES = 64 * 1024
LOG_TAIL_LINES = 40
MAX_CHARTS = 6
MAX_CHILDREN = 50
MAX_CHILD_METRICS = 4
CHART_BUCKETS = 100
LOWER_IS_BETTER = ("loss", "error", "err", "rmse", "mse", "mae", "mape", "perplexity")


def lower_is_better(name: str) -> bool:
    """The default goal of a metric when picking a child's best value: loss-like names go
    down, everything else up. Override per name with RunDetails(run, goals={name: "min"})."""
    lowered = name.lower()
    return any(word in lowered for word in LOWER_IS_BETTER)


@dataclass
class Snapshot:
    """Everything one refresh fetched; rendered as HTML or text."""

    details: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, dict[str, list]] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)
    has_log: bool = False
    children: list[dict[str, Any]] = field(default_factory=list)
    child_metrics: list[str] = field(default_factory=list)
    fetched_at: float = field(default_factory=time.time)
    error: str = ""

    @property
    def status(self) -> str:
        return self.details.get("status", "")

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


class RunDetails:
    """Shows a run in a notebook and keeps the view current until the run ends."""

    def __init__(
        self,
        run: Any,
        *,
        interval: float = DEFAULT_INTERVAL,
        log_lines: int = LOG_TAIL_LINES,
        goals: dict[str, str] | None = None,
    ) -> None:
        self.run = run
        self.interval = interval
        self.goals = dict(goals or {})
        self.snapshot: Snapshot | None = None
        self.updates = 0
        self._client = run._client
        self._path = f"/runs/{quote_segment(run.id)}"
        self._log = deque(maxlen=log_lines)
        self._log_offset = 0
        self._log_partial = b""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._widget: Any = None
        self._last_status = ""

    # -- public ---------------------------------------------------------------------------

    def show(self) -> RunDetails:
        """Displays the widget (or prints the summary) and returns at once; updates come from
        a background thread until the run ends or `stop()` is called."""
        widgets = _ipywidgets()
        if widgets is not None:
            self._widget = widgets.HTML(value=_loading_html(self.run.id))
            _display(self._widget)
        else:
            print(f"Watching run {self.run.id} (updates every {self.interval:g} s)…", flush=True)
        self._thread = threading.Thread(
            target=self._loop, name=f"RunDetails-{self.run.id}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until the updates end (the run finished, or `stop()`); True if they did."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def widget(self) -> Any:
        """The ipywidgets.HTML being updated (None in plain-text mode)."""
        return self._widget

    @property
    def is_updating(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def get_html(self) -> str:
        return render_html(self.snapshot, goals=self.goals) if self.snapshot else ""

    def get_text(self) -> str:
        return render_text(self.snapshot, goals=self.goals) if self.snapshot else ""

    # -- the loop -------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                snapshot = self.refresh()
            except RunstudioError as exc:  # the server is away: say so, keep trying
                self._show_error(str(exc))
            else:
                self._draw(snapshot)
                if snapshot.finished:
                    return
            self._stop.wait(self.interval)

    def refresh(self) -> Snapshot:
        """Fetches everything once and keeps it as `self.snapshot`."""
        details = self._client.get(self._path)
        snapshot = Snapshot(details=details)
        snapshot.metrics = self._client.get(f"{self._path}/metrics").get("metrics", [])
        scalars = [m["name"] for m in snapshot.metrics if m.get("kind") == "scalar"]
        for name in scalars[:MAX_CHARTS]:
            snapshot.series[name] = self._series(name)
        snapshot.has_log = self._read_log()
        snapshot.log_lines = list(self._log)
        snapshot.children, snapshot.child_metrics = self._children()
        self.snapshot = snapshot
        return snapshot

    def _series(self, name: str) -> dict[str, list]:
        try:
            answer = self._client.get(
                f"{self._path}/metrics/series", params={"name": name, "buckets": CHART_BUCKETS}
            )
        except NotFound:
            return {"x": [], "y": []}
        return answer.get("points") or {"x": [], "y": []}

    def _read_log(self) -> bool:
        """Appends the driver log's new lines; jumps to the last LOG_TAIL_BYTES when far
        behind. False while the run has no driver log."""
        url = f"{self._path}/files/{quote_path(DRIVER_LOG)}"
        for _ in range(2):
            try:
                response = self._client.request(
                    "GET",
                    url,
                    params={"offset": self._log_offset, "length": LOG_TAIL_BYTES},
                    headers={"Accept": "*/*"},
                )
            except NotFound:
                return False
            size = int(response.headers.get("X-File-Size", "0"))
            if size < self._log_offset:  # replaced by a shorter file: start over
                self._log.clear()
                self._log_offset, self._log_partial = 0, b""
                continue
            self._log_offset = int(
                response.headers.get("X-Next-Offset", self._log_offset + len(response.content))
            )
            self._add_log(response.content)
            if size - self._log_offset <= LOG_TAIL_BYTES:
                break
            self._log_offset, self._log_partial = size - LOG_TAIL_BYTES, b""  # far behind
        return True

    def _add_log(self, data: bytes) -> None:
        data = self._log_partial + data
        *lines, self._log_partial = data.split(b"\n")
        for line in lines:
            self._log.append(line.decode("utf-8", errors="replace").rstrip("\r"))

    def _children(self) -> tuple[list[dict[str, Any]], list[str]]:
        children = self._client.get(f"{self._path}/children").get("results", [])[:MAX_CHILDREN]
        names: list[str] = []
        for child in children:
            path = f"/runs/{quote_segment(child['run_id'])}/metrics"
            metrics = self._client.get(path).get("metrics", [])
            child["_metrics"] = {m["name"]: m for m in metrics if m.get("kind") == "scalar"}
            for name in child["_metrics"]:
                if name not in names and len(names) < MAX_CHILD_METRICS:
                    names.append(name)
        return children, names

    # -- output ---------------------------------------------------------------------------

    def _draw(self, snapshot: Snapshot) -> None:
        self.updates += 1
        if self._widget is not None:
            self._widget.value = render_html(snapshot, goals=self.goals)
        elif self.updates == 1:
            print(render_text(snapshot, goals=self.goals), flush=True)
        elif snapshot.status != self._last_status:
            stamp = datetime.now().strftime("%H:%M:%S")
            print(f"[{stamp}] {self.run.id}: {self._last_status} → {snapshot.status}", flush=True)
            if snapshot.finished:
                print(render_text(snapshot, goals=self.goals), flush=True)
        self._last_status = snapshot.status

    def _show_error(self, message: str) -> None:
        if self._widget is not None:
            note = f'<p style="color:#a40e26">Update failed: {html.escape(message)}</p>'
            self._widget.value = (self.get_html() or _loading_html(self.run.id)) + note
        else:
            print(f"RunDetails: update failed: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# optional imports


def _ipywidgets() -> Any:
    try:
        import ipywidgets
    except ImportError:
        return None
    return ipywidgets


def _display(widget: Any) -> None:
    try:
        from IPython.display import display
    except ImportError:  # ipywidgets without IPython: nothing can show it
        print(repr(widget))
        return
    display(widget)


# ---------------------------------------------------------------------------------------------
# rendering (pure functions of a Snapshot)


def _fmt(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{value:.6g}"
    return str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if value in ("NaN", "Infinity", "-Infinity"):
        return float(value.replace("Infinity", "inf"))
    return None


def best_value(metric: dict[str, Any], goal: str) -> float | None:
    return _number(metric.get("min" if goal == "min" else "max"))


def _goal(name: str, goals: dict[str, str]) -> str:
    return goals.get(name) or ("min" if lower_is_better(name) else "max")


def _when(value: str | None) -> str:
    if not value:
        return "—"
    return value.replace("T", " ").replace("Z", " UTC").split(".")[0].removesuffix(" UTC") + " UTC"


def _duration(details: dict[str, Any]) -> str:
    start = details.get("started_at")
    if not start:
        return "—"
    end = details.get("ended_at")
    try:
        t0 = datetime.fromisoformat(start.replace("Z", "+00:00"))
        t1 = datetime.fromisoformat(end.replace("Z", "+00:00")) if end else datetime.now(UTC)
    except ValueError:
        return "—"
    seconds = max(0, int((t1 - t0).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {seconds:02d}s" if hours else f"{minutes}m {seconds:02d}s"


_STATUS_COLORS = {
    "Completed": ("#dafbe1", "#116329"),
    "Failed": ("#ffebe9", "#a40e26"),
    "Canceled": ("#fff8c5", "#7d4e00"),
    "CancelRequested": ("#fff8c5", "#7d4e00"),
}


def _badge(status: str) -> str:
    bg, fg = _STATUS_COLORS.get(status, ("#ddf4ff", "#0550ae"))
    return (
        f'<span class="rs-status" style="background:{bg};color:{fg};border-radius:1em;'
        f'padding:1px 9px;font-weight:600;font-size:12px">{html.escape(status)}</span>'
    )


def svg_chart(name: str, points: dict[str, list], *, width: int = 260, height: int = 120) -> str:
    """A small line chart of one series as inline SVG (no JavaScript, no CDN)."""
    pairs = [
        (float(x), float(y))
        for x, y in zip(points.get("x", []), points.get("y", []), strict=False)
        if _number(x) is not None and _number(y) is not None and math.isfinite(float(y))
    ]
    title = f'<text x="4" y="12" font-size="11" font-weight="600">{html.escape(name)}</text>'
    box = (
        f'<svg class="rs-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{html.escape(name, quote=True)}" style="border:1px solid #d0d7de;'
        f'border-radius:4px;background:#fff;margin:0 6px 6px 0">{title}'
    )
    if not pairs:
        return box + '<text x="4" y="60" font-size="11" fill="#656d76">no points yet</text></svg>'
    left, right, top, bottom = 44, width - 8, 20, height - 18
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (right - left)

    def sy(y: float) -> float:
        return bottom - (y - y0) / (y1 - y0) * (bottom - top)

    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pairs)
    axis = (
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#d0d7de"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#d0d7de"/>'
        f'<text x="{left - 3}" y="{top + 4}" font-size="9" text-anchor="end" fill="#656d76">'
        f"{_fmt(y1)}</text>"
        f'<text x="{left - 3}" y="{bottom}" font-size="9" text-anchor="end" fill="#656d76">'
        f"{_fmt(y0)}</text>"
        f'<text x="{left}" y="{height - 5}" font-size="9" fill="#656d76">{_fmt(x0)}</text>'
        f'<text x="{right}" y="{height - 5}" font-size="9" text-anchor="end" fill="#656d76">'
        f"{_fmt(x1)}</text>"
    )
    line = f'<polyline fill="none" stroke="#0969da" stroke-width="1.5" points="{path}"/>'
    return box + axis + line + "</svg>"


def _table(headers: list[str], rows: list[list[str]], cls: str) -> str:
    head = "".join(
        f'<th style="text-align:left;padding:3px 8px;border-bottom:1px solid #d0d7de">{h}</th>'
        for h in headers
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td style="padding:3px 8px;border-bottom:1px solid #eaeef2">{c}</td>' for c in row
        )
        + "</tr>"
        for row in rows
    )
    return (
        f'<table class="{cls}" style="border-collapse:collapse;font-size:12px;margin:4px 0 8px">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def render_html(snapshot: Snapshot, *, goals: dict[str, str] | None = None) -> str:
    goals = goals or {}
    d = snapshot.details
    e = html.escape
    name = d.get("display_name") or d.get("run_id", "")
    portal = d.get("portal_url") or ""
    link = (
        f' · <a href="{e(portal, quote=True)}" target="_blank">open in the studio</a>'
        if portal
        else ""
    )
    updated = datetime.fromtimestamp(snapshot.fetched_at).strftime("%H:%M:%S")
    live = "final" if snapshot.finished else f"live · updated {updated}"
    parts = [
        '<div class="rs-run-details" style="font-family:system-ui,sans-serif;font-size:13px">',
        f'<div style="font-size:15px;font-weight:600;margin-bottom:4px">{e(name)} '
        f"{_badge(snapshot.status)} "
        f'<span style="font-weight:normal;font-size:11px;color:#656d76">{live}</span></div>',
        f'<div style="color:#656d76;margin-bottom:6px">{e(d.get("experiment", ""))} · '
        f"<code>{e(d.get('run_id', ''))}</code> · target {e(d.get('compute_target') or '—')} · "
        f"started {e(_when(d.get('started_at')))} · duration {_duration(d)}{link}</div>",
    ]
    error = d.get("error")
    if error:
        parts.append(
            f'<div class="rs-error" style="color:#a40e26;margin:4px 0">'
            f"{e(error.get('code') or 'Error')}: {e(error.get('message') or '')}</div>"
        )
    parts.append('<div style="font-weight:600;margin-top:6px">Metrics</div>')
    if snapshot.metrics:
        rows = [
            [
                e(m["name"]),
                e(m.get("kind", "")),
                e(_fmt(m.get("last"))),
                e(_fmt(m.get("min"))),
                e(_fmt(m.get("max"))),
                str(m.get("count", "")),
            ]
            for m in snapshot.metrics
        ]
        parts.append(_table(["name", "kind", "last", "min", "max", "count"], rows, "rs-metrics"))
        charts = "".join(svg_chart(n, p) for n, p in snapshot.series.items())
        parts.append(f'<div class="rs-charts" style="display:flex;flex-wrap:wrap">{charts}</div>')
    else:
        parts.append('<div style="color:#656d76">No metrics logged yet.</div>')
    if snapshot.children:
        names = snapshot.child_metrics
        headers = ["child", "status"] + [
            f"{e(n)} ({'min' if _goal(n, goals) == 'min' else 'max'})" for n in names
        ]
        rows = []
        for child in snapshot.children:
            metrics = child.get("_metrics", {})
            values = [
                e(_fmt(best_value(metrics[n], _goal(n, goals)))) if n in metrics else "—"
                for n in names
            ]
            label = child.get("display_name") or child.get("run_id", "")
            rows.append([e(label), _badge(child.get("status", ""))] + values)
        parts.append(
            f'<div style="font-weight:600;margin-top:6px">Children ({len(snapshot.children)})</div>'
        )
        parts.append(_table(headers, rows, "rs-children"))
    if snapshot.has_log:
        tail = "\n".join(snapshot.log_lines)
        parts.append(
            f'<div style="font-weight:600;margin-top:6px">Driver log ({e(DRIVER_LOG)}, last '
            f"lines)</div>"
            f'<pre class="rs-log" style="max-height:240px;overflow:auto;background:#f6f8fa;'
            f'padding:6px 8px;border-radius:4px;font-size:11.5px;margin:2px 0">{e(tail)}</pre>'
        )
    parts.append("</div>")
    return "".join(parts)


def render_text(snapshot: Snapshot, *, goals: dict[str, str] | None = None) -> str:
    goals = goals or {}
    d = snapshot.details
    lines = [
        f"Run {d.get('run_id', '')} ({d.get('display_name') or 'no display name'}) — "
        f"{snapshot.status}",
        f"  experiment {d.get('experiment', '')} · target {d.get('compute_target') or '—'} · "
        f"started {_when(d.get('started_at'))} · duration {_duration(d)}",
    ]
    if d.get("portal_url"):
        lines.append(f"  {d['portal_url']}")
    if d.get("error"):
        lines.append(f"  error: {d['error'].get('code')}: {d['error'].get('message')}")
    if snapshot.metrics:
        lines.append("Metrics (last / min / max):")
        for m in snapshot.metrics:
            lines.append(
                f"  {m['name']}: {_fmt(m.get('last'))} / {_fmt(m.get('min'))} / "
                f"{_fmt(m.get('max'))}  ({m.get('count', 0)} values)"
            )
    if snapshot.children:
        lines.append(f"Children ({len(snapshot.children)}):")
        for child in snapshot.children:
            metrics = child.get("_metrics", {})
            best = ", ".join(
                f"{n} {_goal(n, goals)} {_fmt(best_value(metrics[n], _goal(n, goals)))}"
                for n in snapshot.child_metrics
                if n in metrics
            )
            label = child.get("display_name") or child.get("run_id", "")
            lines.append(f"  {label}: {child.get('status', '')}" + (f" — {best}" if best else ""))
    if snapshot.has_log and snapshot.log_lines:
        lines.append(f"Driver log (last {len(snapshot.log_lines)} lines):")
        lines += [f"  | {line}" for line in snapshot.log_lines]
    return "\n".join(lines)


def _loading_html(run_id: str) -> str:
    return (
        '<div class="rs-run-details" style="font-family:system-ui,sans-serif;font-size:13px;'
        f'color:#656d76">Loading run {html.escape(run_id)}…</div>'
    )
