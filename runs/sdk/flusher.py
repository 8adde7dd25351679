"""The metric pipeline behind ``Run.log``: buffer, batch, send, retry.

``Run.log`` appends ``(name, kind, value, step, time)`` to a ``collections.deque`` (atomic
under the GIL, no lock, ~1 µs a call). One daemon thread per live run wakes every
``FLUSH_INTERVAL`` seconds, or as soon as ``FLUSH_POINTS`` points wait, drains the deque,
groups the points into the columnar batches of the ingest API (see docs/architecture.md)
under the server's limits, and sends them on ``LANES`` lanes, each series always on the same
one and each lane's batches one after another, so the points of a series arrive in logged
order. Each batch carries a uuid4 ``idempotency_key`` that is reused on
every retry of that batch: a batch whose response was lost is stored once.

Transient failures (no connection, timeouts, 5xx, 429) are retried with exponential
backoff for as long as the script runs (stderr says so once, in one line); at close
(``complete()``, ``fail()``, interpreter exit) the retrying stops once the server has not
answered for ``RUNSTUDIO_EXIT_TIMEOUT`` seconds, and what is left — batches with their
idempotency keys, queued tags, properties and files, the final status — goes to the spool
(runs/sdk/spool.py) for ``runstudio sync``. A refusal (4xx) drops that batch with a one-time
warning; nothing ever raises into the training loop.
"""

from __future__ import annotations

import collections
import math
import os
import pickle
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from runs.sdk import limits, spool
from runs.sdk.client import (
    Client,
    Conflict,
    NotFound,
    RunstudioError,
    dumps,
    encode_non_finite,
    is_transient,
)

# Server limits: runs/sdk/limits.py duplicates runs/limits.py (no server imports here).
MAX_BATCH_POINTS = limits.MAX_POINTS_PER_BATCH
MAX_BATCH_SERIES = limits.MAX_SERIES_PER_BATCH
# Batches are cut well under the body limit: the size estimate below is rough.
BATCH_BYTES_BUDGET = limits.MAX_BATCH_BYTES * 3 // 4

FLUSH_INTERVAL = 1.0  # seconds between flushes
FLUSH_POINTS = 20_000  # a buffer this full wakes the flusher at once
# Requests carry about this many points (a batch of LANES × this is cut into one request a
# lane). Each request costs the server ~5 ms besides its points
# (token, membership, run, locks) and a thread wake-up on each side, so bigger batches ingest
# faster (end to end, 25,000 → 100,000 points a batch: ~1.25× the points/s), but the server's
# web worker holds a whole batch while it stores it (peak RSS of the worker in bench/ingest.py:
# ~120 MiB at 25,000, ~175 at 50,000, ~240 at 100,000). Half the server's limit is the middle.
# Encoding still overlaps sending (each lane's _Sender keeps one batch queued).
BATCH_POINTS = 50_000
# Batches go out on this many lanes at once, each series always on the same lane, so a series'
# points still arrive in logged order. A batch holds its series' row locks while the database
# stores it, so two batches of one series cannot be stored at once; two of disjoint series
# can. On PostgreSQL each lane's COPY then runs in a database backend of its own, on its own
# core: end to end, two lanes took 1.46–1.75 s for 1M points where one took 2.03–2.36 s.
LANES = 2
# The server's RUNSTUDIO_HEARTBEAT_INTERVAL; a worker passes it to the scripts it starts.
HEARTBEAT_INTERVAL = float(os.environ.get("RUNSTUDIO_HEARTBEAT_INTERVAL") or 30.0)
FIRST_HEARTBEAT_AFTER = 5.0  # the first one comes early: it tells the reaper to watch the run
BACKOFF_START = 0.2
BACKOFF_MAX = 10.0
# While the server is unreachable, the oldest points go to disk in chunks of this many once
# twice as many wait (~100 bytes each in a deque): a long outage under a fast training loop
# holds at most ~2 chunks in memory.
SPILL_POINTS = 500_000


def close_timeout() -> float:
    """Seconds ``complete()``/exit keep retrying before dropping unsent points."""
    try:
        return float(os.environ.get("RUNSTUDIO_FLUSH_TIMEOUT", "120"))
    except ValueError:
        return 120.0


Point = tuple[str, str, Any, int | None, float]  # (name, kind, value, step, time)

# A scalar point costs about this many bytes of JSON (step, value, time and separators).
_SCALAR_POINT_BYTES = 48
_SERIES_OVERHEAD_BYTES = 100


def _estimate_bytes(kind: str, value: Any) -> int:
    if kind == "scalar":
        return _SCALAR_POINT_BYTES
    try:
        return len(dumps(value)) + 30
    except (TypeError, ValueError):
        return 1000


def encode_batch(metrics: list[dict[str, Any]], key: str) -> bytes:
    """The JSON body of one ingest batch, NaN and ±inf as "NaN", "Infinity", "-Infinity".

    orjson encodes floats ~10× faster than the stdlib but writes non-finite floats as null,
    so scalar columns are checked first (one C-speed pass) and only a column holding such a
    value or an int beyond 64 bits, or a non-scalar series, is rewritten in Python.
    """
    for series in metrics:
        values = series["values"]
        if series["kind"] != "scalar":
            series["values"] = encode_non_finite(values)
        elif not _all_finite(values):
            series["values"] = [_scalar(v) for v in values]
    return orjson.dumps({"idempotency_key": key, "metrics": metrics})


def _all_finite(values: list) -> bool:
    """Whether every value is a finite float or an int JSON carries as one: the sum first (C's
    float loop), each value only when the sum overflowed or an int may be beyond 64 bits."""
    try:
        total = sum(values)
        if type(total) is int and not _INT64_MIN <= total <= _INT64_MAX:
            return False
        return math.isfinite(total) or all(map(math.isfinite, values))
    except OverflowError:  # an int beyond a float's range
        return False


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _scalar(value: float | int) -> float | int | str:
    """A scalar as the batch carries it: NaN and ±inf as strings; an int beyond 64 bits (which
    JSON parsers refuse) as the float the server stores it as, ±inf past a float's range."""
    if type(value) is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return value
        try:
            value = float(value)
        except OverflowError:
            return "Infinity" if value > 0 else "-Infinity"
    return encode_non_finite(value)


def build_batches(
    points: Iterable[Point],
    *,
    max_points: int = min(BATCH_POINTS, MAX_BATCH_POINTS),
    max_series: int = MAX_BATCH_SERIES,
    max_bytes: int = BATCH_BYTES_BUDGET,
) -> list[list[dict[str, Any]]]:
    """Group points into the ``metrics`` lists of ingest batches, in order.

    Pure: no network, no clock. Within a series, points keep their logged order and a
    series split across batches continues in the next one. A series column ``steps`` is
    left out when no point in it has a step, and holds ``None`` (= the server's default,
    the point's sequence number) for the points that have none.
    """
    points = points if isinstance(points, list) else list(points)
    batches: list[list[dict[str, Any]]] = []
    # A training loop logs the same metrics in the same order at every step: such a stretch of
    # scalars is cut into columns by C-speed slicing (every k-th point) instead of a Python
    # step per point. Batches come out exactly as the general loop below would cut them.
    at = 0
    while at < len(points):
        batch = _cyclic_batch(points[at : at + max_points], max_series, max_bytes)
        if batch is None:
            break
        batches.append(batch)
        at += max_points
    if at:
        return batches + (_build_general(points[at:], max_points, max_series, max_bytes))
    return _build_general(points, max_points, max_series, max_bytes)


_NONE_TYPE = type(None)
_NAME, _KIND, _VALUE, _STEP, _TIME = (itemgetter(i) for i in range(5))


def _cyclic_batch(
    chunk: list[Point], max_series: int, max_bytes: int
) -> list[dict[str, Any]] | None:
    """The batch of ``chunk`` when it is scalars whose names repeat with a period of k
    distinct names (name[i] == name[i - k]); None otherwise, or when a limit would cut it."""
    # map(itemgetter) over the point tuples: ~10 ns a point (zip(*chunk) costs ~15× that).
    names = list(map(_NAME, chunk))
    n = len(names)
    try:
        k = names.index(names[0], 1)
    except ValueError:
        k = n
    if (
        k > max_series
        or names[k:] != names[:-k]
        or len(set(names[:k])) != k
        or list(map(_KIND, chunk)).count("scalar") != n
        or n * _SCALAR_POINT_BYTES + sum(_SERIES_OVERHEAD_BYTES + len(m) for m in names[:k])
        > max_bytes
    ):
        return None
    batch = []
    for j in range(k):
        points = chunk[j::k]
        series = {"name": names[j], "kind": "scalar", "steps": list(map(_STEP, points))}
        series["values"] = list(map(_VALUE, points))
        series["times"] = list(map(_TIME, points))
        _finish_steps(series)
        batch.append(series)
    return batch


def _finish_steps(series: dict[str, Any]) -> None:
    """Leave ``steps`` out when no point has one; make every given step an int."""
    steps = series["steps"]
    types = set(map(type, steps))
    if types == {_NONE_TYPE}:
        del series["steps"]
    elif not types <= {int, _NONE_TYPE}:
        series["steps"] = [None if s is None else int(s) for s in steps]


def _build_general(
    points: list[Point], max_points: int, max_series: int, max_bytes: int
) -> list[list[dict[str, Any]]]:
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    by_name: dict[str, dict[str, Any]] = {}
    n_points = 0
    n_bytes = 0

    def cut() -> None:
        nonlocal current, by_name, n_points, n_bytes
        if current:
            batches.append(current)
        current, by_name, n_points, n_bytes = [], {}, 0, 0

    for name, kind, value, step, t in points:
        size = _estimate_bytes(kind, value)
        series = by_name.get(name)
        extra = size + (0 if series is not None else _SERIES_OVERHEAD_BYTES + len(name))
        if n_points and (
            n_points >= max_points
            or n_bytes + extra > max_bytes
            or (series is None and len(by_name) >= max_series)
        ):
            cut()
            series = None
            extra = size + _SERIES_OVERHEAD_BYTES + len(name)
        if series is None:
            series = {"name": name, "kind": kind, "steps": [], "values": [], "times": []}
            by_name[name] = series
            current.append(series)
        series["steps"].append(step)
        series["values"].append(value)
        series["times"].append(t)
        n_points += 1
        n_bytes += extra
    cut()

    for batch in batches:
        for series in batch:
            _finish_steps(series)
    return batches


def _warn(message: str) -> None:
    print(f"runstudio: {message}", file=sys.stderr, flush=True)


class _Sender:
    """Sends encoded batches one after another, in order, on one thread of its own while the
    caller encodes the next. When an answer comes the next body is already waiting and goes
    out at once: one thread wake-up per batch. (A thread per batch took three — the answer,
    the encoder resuming, the new thread starting — each waiting up to the GIL's 5 ms switch
    interval behind a busy training loop.) At interpreter shutdown, when no thread can start,
    bodies go out in the caller's thread. Each result: True sent, False refused (dropped),
    None not sent by the deadline (kept for the spool)."""

    def __init__(self, send: Callable[[bytes, int], bool | None]) -> None:
        self._send = send
        self._cond = threading.Condition()
        self._waiting: collections.deque[tuple[bytes, int]] = collections.deque()
        self._done: list[tuple[bytes, int, bool | None]] = []
        self._closed = False
        self._thread: threading.Thread | None = None

    def put(self, body: bytes, points: int) -> None:
        with self._cond:
            # One batch on the wire and one behind it: encoding stays a batch ahead, and no
            # more than that is held in memory.
            while len(self._waiting) >= 2:
                self._cond.wait()
            self._waiting.append((body, points))
            self._cond.notify_all()
        if self._thread is None:
            thread = threading.Thread(target=self._run, name="runstudio-sender", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down
                self._send_here()
                return
            self._thread = thread

    def _send_one(self, body: bytes, points: int) -> bool | None:
        try:
            return self._send(body, points)
        except Exception as e:  # a bug must not stop the batches behind this one
            _warn(f"sending {points} metric points hit {type(e).__name__}: {e}; dropped")
            return False

    def _send_here(self) -> None:
        while self._waiting:
            body, points = self._waiting[0]
            ok = self._send_one(body, points)
            self._waiting.popleft()
            self._done.append((body, points, ok))

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if not self._waiting:
                    return
                body, points = self._waiting[0]
            ok = self._send_one(body, points)
            with self._cond:
                self._waiting.popleft()
                self._done.append((body, points, ok))
                self._cond.notify_all()

    def finished(self) -> list[tuple[bytes, int, bool | None]]:
        """The batches answered (or given up) since the last call, in order."""
        with self._cond:
            done, self._done = self._done, []
        return done

    def close(self) -> list[tuple[bytes, int, bool | None]]:
        """Wait until every batch put is answered or given up; what finished() has not said."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        self._send_here()  # none left, unless a thread never started
        return self.finished()


class Flusher:
    """Buffer and background sender of one run's metric points (and its heartbeat)."""

    def __init__(
        self,
        client: Client,
        run_id: str,
        *,
        heartbeat: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        create: dict[str, Any] | None = None,
        workspace: str | None = None,
        experiment: str | None = None,
    ) -> None:
        self.client = client
        self.run_id = run_id
        # An offline-first run: {"op": "create", "path", "body"} still to send; nothing else
        # about the run can go before it.
        self.create = create
        self.workspace = workspace
        self.experiment = experiment
        # Encoded batches not yet answered, in order: what the spool gets if the server
        # does not come back. Each keeps its idempotency key inside its body.
        self.unsent: list[tuple[bytes, int]] = []
        # Tags, properties and files set while the server was unreachable, in order.
        self.ops: collections.deque[dict[str, Any]] = collections.deque()
        self._staging: Path | None = None
        self._create_refused = False
        # Chunks of points moved from the buffer to disk during an outage, oldest first. They
        # are older than everything in the buffer, so _drain takes them first.
        self.spilled: collections.deque[Path] = collections.deque()
        self._spill_lock = threading.Lock()
        self._spills = 0
        self._staged = 0
        self._close_timeout = spool.DEFAULT_EXIT_TIMEOUT
        self.buffer: collections.deque[Point] = collections.deque()
        self.kinds: dict[str, str] = {}  # metric name -> kind, shared by the run's objects
        self.wake = threading.Event()
        self.heartbeat = heartbeat
        self._sleep = sleep
        self._send_lock = threading.Lock()  # one flush at a time keeps each lane in order
        self._spilling = threading.Lock()  # the lanes' threads spill one at a time
        self._lanes: dict[str, int] = {}  # metric name -> its lane, for the run's lifetime
        self._lane_sizes = [0] * LANES  # series a lane has
        self._idle = threading.Condition()
        self._busy = False
        self._stop = False
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._last_heartbeat = 0.0
        self._refused: str | None = None  # run no longer takes metrics (e.g. Canceled)
        self._warned = False
        self.sent = 0
        self.dropped = 0

    # -- thread ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = False
        self._deadline = None
        # The server stamps a new run itself; the first heartbeat comes FIRST_HEARTBEAT_AFTER
        # seconds in (or sooner with a shorter interval), then every HEARTBEAT_INTERVAL.
        self._last_heartbeat = (
            time.monotonic() - HEARTBEAT_INTERVAL + min(FIRST_HEARTBEAT_AFTER, HEARTBEAT_INTERVAL)
        )
        thread = threading.Thread(
            target=self._loop, name=f"runstudio-flusher-{self.run_id}", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down: flush() then works synchronously
            return
        self._thread = thread

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop:
            self.wake.wait(FLUSH_INTERVAL)
            self.wake.clear()
            try:
                self._maybe_spill()
                self.send_pending()
                self.send_ops()
                if self.heartbeat and not self._stop:
                    self._maybe_heartbeat()
            except Exception as e:  # never let the thread die silently
                _warn(f"metric flusher for run {self.run_id} hit {type(e).__name__}: {e}")

    def _maybe_heartbeat(self) -> None:
        now = time.monotonic()
        if self.create is not None or now - self._last_heartbeat < HEARTBEAT_INTERVAL:
            return
        self._last_heartbeat = now
        try:
            self.client.post(f"/runs/{self.run_id}/heartbeat", {})
            self._answered()
        except (Conflict, NotFound) as e:
            # The server ended the run meanwhile (its reaper took a long silence for a dead
            # process). Say it once; metrics are still stored and the final status this
            # process sends replaces a heartbeat-timeout failure.
            self.heartbeat = False
            _warn(
                f"run {self.run_id}: the server stopped taking heartbeats: {e.message} "
                "Logging goes on; raise the server's RUNSTUDIO_HEARTBEAT_TIMEOUT if runs "
                "stall this long."
            )
        except RunstudioError as e:
            # The next one may get through (the server tolerates gaps); an idle script still
            # learns at once that the server is gone.
            if is_transient(e):
                spool.report_down(self.client.url, e)

    # -- sending --------------------------------------------------------------------------

    def send_pending(self) -> None:
        """Drain the buffer and send it, batch by batch, until it is empty."""
        if not self._send_create():
            return
        with self._send_lock:
            with self._idle:
                self._busy = True
            senders = [_Sender(self._send_batch) for _ in range(LANES)]
            try:
                # On each lane one batch is on the wire while the next is built and encoded:
                # the server's work and ours overlap, and a lane's batches go out one at a
                # time, in order.
                while self.buffer or self.spilled:
                    # A batch of LANES × BATCH_POINTS is cut into one request a lane.
                    for batch in build_batches(self._drain(), max_points=self._batch_points):
                        for lane, metrics in self._by_lane(batch):
                            n = sum(len(series["values"]) for series in metrics)
                            try:
                                body = encode_batch(metrics, str(uuid.uuid4()))
                            except TypeError as e:  # a value JSON cannot encode
                                self._warn_once(n, f"the batch could not be encoded: {e}")
                                self.dropped += n
                                continue
                            self.unsent.append((body, n))
                            senders[lane].put(body, n)
                            for sender in senders:
                                for done in sender.finished():
                                    self._settle(*done)
            finally:
                for sender in senders:
                    for done in sender.close():
                        self._settle(*done)
                with self._idle:
                    self._busy = False
                    self._idle.notify_all()

    @property
    def _batch_points(self) -> int:
        return min(LANES * BATCH_POINTS, MAX_BATCH_POINTS)

    def _by_lane(self, batch: list[dict[str, Any]]) -> list[tuple[int, list[dict[str, Any]]]]:
        """The batch's series grouped by lane. A series new to the run takes the lane with the
        fewest series, so a training loop's metrics spread evenly."""
        lanes, sizes = self._lanes, self._lane_sizes
        parts: dict[int, list[dict[str, Any]]] = {}
        for series in batch:
            lane = lanes.get(series["name"])
            if lane is None:
                lane = lanes[series["name"]] = sizes.index(min(sizes))
                sizes[lane] += 1
            parts.setdefault(lane, []).append(series)
        return sorted(parts.items())

    @property
    def pending(self) -> bool:
        """Anything logged, queued or encoded that the server has not taken yet."""
        return bool(self.buffer or self.spilled or self.unsent or self.ops)

    def _maybe_spill(self) -> None:
        """During an outage, move all but the newest SPILL_POINTS points to disk."""
        if len(self.buffer) < 2 * SPILL_POINTS or not spool.is_down(self.client.url):
            return
        with self._spilling:  # two threads popping at once would interleave their chunks
            self._spill()

    def _spill(self) -> None:
        staging = self._staging_dir()
        while len(self.buffer) >= 2 * SPILL_POINTS:
            popleft = self.buffer.popleft
            chunk = [popleft() for _ in range(SPILL_POINTS)]
            self._spills += 1
            path = staging / f"points-{self._spills:06d}.pickle"
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL))
            os.replace(tmp, path)
            with self._spill_lock:
                self.spilled.append(path)

    def _staging_dir(self) -> Path:
        if self._staging is None:
            root = spool.spool_root()
            root.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds run data
            self._staging = root / f".staging-{os.getpid()}-{self.run_id}"
        self._staging.mkdir(parents=True, exist_ok=True)
        return self._staging

    def _drain(self) -> list[Point]:
        with self._spill_lock:
            path = self.spilled.popleft() if self.spilled else None
        if path is not None:  # our own file, written by this process: safe to unpickle
            points = pickle.loads(path.read_bytes())
            path.unlink(missing_ok=True)
            return points
        buffer = self.buffer
        n = min(len(buffer), 4 * MAX_BATCH_POINTS)
        popleft = buffer.popleft
        return [popleft() for _ in range(n)]

    def _drop_buffer(self) -> None:
        n = len(self.buffer)
        for _ in range(n):
            self.buffer.popleft()
        self.dropped += n

    def _expired(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _settle(self, body: bytes, points: int, ok: bool | None) -> None:
        if ok is None:
            return  # not sent by the deadline: stays in self.unsent for the spool
        self.unsent = [u for u in self.unsent if u[0] is not body]
        if ok:
            self.sent += points
        else:
            self.dropped += points

    def _transient(self, error: RunstudioError, delay: float) -> float:
        """Say (once per outage) that the server is unreachable, sleep, return the next delay."""
        spool.report_down(self.client.url, error)
        remaining = self._deadline - time.monotonic() if self._deadline is not None else delay
        wait = max(0.0, min(delay, remaining))
        while True:  # in slices: the buffer may need spilling while we wait
            self._maybe_spill()
            self._sleep(min(wait, 1.0))
            wait -= 1.0
            if wait <= 0:
                return min(delay * 2, BACKOFF_MAX)

    def _answered(self) -> None:
        spool.report_up(self.client.url)
        if self._deadline is not None:  # progress: the exit deadline counts silence only
            self._deadline = max(self._deadline, time.monotonic() + self._close_timeout)

    def _send_batch(self, body: bytes, n: int) -> bool | None:
        """Send one encoded batch, retrying transient failures with its idempotency key
        (inside ``body``); False if it was refused, None if the deadline passed first."""
        if self._refused is not None:
            return False
        delay = BACKOFF_START
        while True:
            if self._expired():
                return None
            try:
                self.client.call(
                    "POST",
                    f"/runs/{self.run_id}/metrics/batch",
                    data=body,
                    headers={"Content-Type": "application/json"},
                )
            except RunstudioError as e:
                if is_transient(e):
                    delay = self._transient(e, delay)
                    continue
                if isinstance(e, Conflict):
                    self._refused = e.message
                self._warn_once(n, f"the server refused them (HTTP {e.status}): {e.message}")
                return False
            self._answered()
            return True

    # -- an offline-first run's creation, and queued tags, properties, files --------------

    def _send_create(self) -> bool:
        """True once the run exists on the server. While it does not, one attempt per call
        (the loop calls every second); at close, retried until the deadline."""
        if self.create is None:
            return True
        if self._create_refused:
            return False
        delay = BACKOFF_START
        while True:
            try:
                spool.send_op(self.client, self.run_id, self.create)
            except RunstudioError as e:
                if not is_transient(e):
                    self._create_refused = True
                    _warn(
                        f"run {self.run_id} could not be created on {self.client.url}: "
                        f"{e.message} What it logs is saved to the spool at exit; fix that, "
                        "then run `runstudio sync`."
                    )
                    return False
                if self._deadline is None or self._expired():
                    spool.report_down(self.client.url, e)
                    return False
                delay = self._transient(e, delay)
                continue
            self._answered()
            self.create = None
            return True

    def must_queue(self) -> bool:
        """True while a tag, property or file must wait its turn rather than be sent now:
        the run does not exist on the server yet, others wait before it, or it is down."""
        return self.create is not None or bool(self.ops) or spool.is_down(self.client.url)

    def queue_op(self, op: dict[str, Any], source: Any = None) -> None:
        """Queue a tag, property or file change (a file is copied aside at once: the script
        may change or delete it before the server answers)."""
        if op["op"] == "file":
            self._staged += 1
            op = {**op, "staged": str(spool.stage_file(self._staging_dir(), self._staged, source))}
        self.ops.append(op)
        self.wake.set()

    def send_ops(self) -> None:
        """Send queued operations in order; stop at the first transient failure."""
        if not self.ops or not self._send_create():
            return
        delay = BACKOFF_START
        while self.ops:
            op = self.ops[0]
            try:
                spool.send_op(self.client, self.run_id, op)
            except RunstudioError as e:
                if is_transient(e):
                    if self._deadline is None or self._expired():
                        spool.report_down(self.client.url, e)
                        return
                    delay = self._transient(e, delay)
                    continue
                _warn(f"run {self.run_id}: the server refused a queued {op['op']}: {e.message}")
            else:
                self._answered()
            self.ops.popleft()
            if "staged" in op:
                Path(op["staged"]).unlink(missing_ok=True)

    def _warn_once(self, n: int, why: str) -> None:
        if not self._warned:
            self._warned = True
            _warn(
                f"run {self.run_id}: {n} metric points were not stored, {why}. "
                "They are dropped; logging goes on."
            )

    # -- flush and close ------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything logged so far is sent (or dropped). False on timeout."""
        if not self.running:
            self.send_pending()
            return not self.buffer
        end = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self.buffer or self._busy:
                self.wake.set()
                remaining = None if end is None else end - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(0.05 if remaining is None else min(0.05, remaining))
        return True

    def close(
        self, timeout: float | None = None, *, final: dict[str, Any] | None = None
    ) -> Any:
        """Stop the thread and send what is left, then ``final`` (the run's status operation,
        ``{"op": "status", "endpoint", "body"}``); return the server's answer to it.

        Retrying stops once the server has been silent for ``timeout`` seconds (default
        RUNSTUDIO_EXIT_TIMEOUT); then everything unsent, ``final`` included, is written to
        the spool and None is returned. Raises ``Conflict`` if the server refuses ``final``."""
        timeout = spool.exit_timeout() if timeout is None else timeout
        self._close_timeout = timeout
        self._deadline = time.monotonic() + timeout
        if spool.is_down(self.client.url) and (self.pending or final):
            spool.report_waiting(self.client.url, timeout)
        self._stop = True
        self.wake.set()
        thread = self._thread
        stuck = False
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout + BACKOFF_MAX)
            stuck = thread.is_alive()  # a request to a server that accepts but never answers
        self._thread = None
        answer = None
        try:
            if stuck:
                return None
            self.send_pending()
            if not self.unsent:
                self.send_ops()
            if final is not None and not self.unsent and not self.ops and self.create is None:
                try:
                    answer = self._send_final(final)
                except RunstudioError:
                    final = None  # refused for good (e.g. already Canceled): nothing to keep
                    raise
                if answer is not None:
                    final = None
        finally:
            if self.pending or final is not None or self.create:
                try:
                    self._spool(final)
                except OSError as e:
                    _warn(
                        f"run {self.run_id}: the server did not answer and the spool could not "
                        f"be written ({e}); what was unsent is lost. Point RUNSTUDIO_SPOOL_DIR "
                        "at a writable folder."
                    )
            elif self._staging is not None:  # files queued earlier went out: nothing to keep
                shutil.rmtree(self._staging, ignore_errors=True)
            self._report_dropped()
            self._deadline = None
        return answer

    def _send_final(self, final: dict[str, Any]) -> Any:
        """The status operation, retried until the deadline; None if it never got through."""
        delay = BACKOFF_START
        while True:
            try:
                answer = spool.send_op(self.client, self.run_id, final)
            except RunstudioError as e:
                if not is_transient(e):
                    raise
                if self._expired():
                    spool.report_down(self.client.url, e)
                    return None
                delay = self._transient(e, delay)
                continue
            self._answered()
            return answer

    def _spool(self, final: dict[str, Any] | None) -> None:
        """Write what is left to a spool entry and say so in one line."""
        entry = spool.SpoolEntry(
            url=self.client.url,
            run_id=self.run_id,
            workspace=self.workspace,
            experiment=self.experiment,
            reason=f"{self.client.url} did not answer",
        )
        if self.create is not None:
            entry.add({k: v for k, v in self.create.items()})
        for body, n in self.unsent:
            entry.add_batch(body, n)
        while self.buffer or self.spilled:  # a chunk at a time: spilled outages can be large
            for metrics in build_batches(self._drain()):
                n = sum(len(series["values"]) for series in metrics)
                try:
                    entry.add_batch(encode_batch(metrics, str(uuid.uuid4())), n)
                except TypeError:
                    self.dropped += n
        others = 0
        for op in self.ops:
            if op["op"] == "file":
                entry.add_file(op["path"], Path(op["staged"]))
            else:
                entry.add(op)
            others += 1
        if final is not None:
            entry.add(final)
        path = entry.commit()
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
        status = f", status {final['body'].get('status', 'Canceled')}" if final else ""
        spool.say(
            f"run {self.run_id}: saved {entry.points} metric points, {others} other "
            f"change{'' if others == 1 else 's'}"
            f"{status} to {spool.shown(path)}; send them with `runstudio sync` "
            "(the next run that reaches the server sends them too)."
        )
        self.unsent.clear()
        self.ops.clear()
        self.create = None

    def _report_dropped(self) -> None:
        if self.dropped:
            _warn(
                f"run {self.run_id}: {self.dropped} metric points could not be stored and were "
                f"dropped ({self.sent} sent)."
                + (f" Server said: {self._refused}" if self._refused else "")
            )
            self.dropped = 0
        self._deadline = None
