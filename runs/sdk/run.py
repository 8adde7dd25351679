"""``Run``: log metrics, tags, properties and files to one run (Azure ML SDK v1's shape).

``run.log()`` never touches the network: points go to a buffer that a background thread
flushes (see ``runs.sdk.flusher``). Runs this process started (``start_logging``,
``child_run``) and left open are completed at interpreter exit, or failed with the
exception that killed the script.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from runs.sdk import config, shutdown, spool
from runs.sdk.client import (
    Client,
    Conflict,
    RunstudioError,
    decode_number,
    has_non_finite_marker,
    is_transient,
    quote_path,
    quote_segment,
)
from runs.sdk.flusher import BACKOFF_MAX, BACKOFF_START, FLUSH_POINTS, Flusher, close_timeout
from runs.sdk.upload import sized_body
from runs.sdk.values import (
    coerce_value,
    error_text,
    plain,
    register_kind,
    safe_path_part,
    validate_metric_name,
    warn,
)

if TYPE_CHECKING:
    from runs.sdk.experiment import Experiment
    from runs.sdk.workspace import Workspace

TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Canceled"})

_time = time.time  # a module global: one lookup less per log() call


def _retrying(call: Any, timeout: float) -> Any:
    """Run ``call()``, retrying transient failures with backoff until ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = BACKOFF_START
    while True:
        try:
            return call()
        except RunstudioError as e:
            if not is_transient(e) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)


# --- Run -------------------------------------------------------------------------------


class Run:
    """A run in an experiment. ``Run(experiment, run_id)`` fetches an existing one."""

    _context_run: Run | None = None

    def __init__(
        self,
        experiment: Experiment,
        run_id: str,
        *,
        _details: dict[str, Any] | None = None,
    ) -> None:
        self._experiment = experiment
        self._client: Client = experiment.workspace._client
        self._id = run_id
        self._details = _details
        self._owned = False  # completed/failed by this process at exit
        self._finished = False
        self._kinds: dict[str, str] = {}
        self._flusher: Flusher | None = None
        self._buffer: Any = None
        self._wake: threading.Event | None = None
        self._image_counts: dict[str, int] = {}
        self._parent: Run | None = None
        self._parent_loaded = False
        if _details is None:
            self._refresh()
            owner = self._details.get("experiment") if self._details else None
            if owner and owner != experiment.name:
                raise ValueError(
                    f"run {run_id} belongs to experiment {owner!r}, not {experiment.name!r}; "
                    f"use Experiment(workspace, {owner!r}) or ws.get_run({run_id!r})"
                )

    # -- construction helpers -------------------------------------------------------------

    @classmethod
    def _from_details(
        cls,
        workspace: Workspace,
        details: dict[str, Any],
        *,
        experiment: Experiment | None = None,
    ) -> Run:
        from runs.sdk.experiment import Experiment

        name = details.get("experiment")
        if experiment is None or (name and experiment.name != name):
            experiment = Experiment(workspace, name or "")
        return cls(experiment, details["run_id"], _details=details)

    @classmethod
    def _from_id(cls, workspace: Workspace, run_id: str) -> Run:
        details = workspace._client.get(f"/runs/{quote_segment(run_id)}")
        return cls._from_details(workspace, details)

    @classmethod
    def _started(cls, experiment: Experiment, details: dict[str, Any]) -> Run:
        """A run this process started: heartbeats, and finished at exit if left open."""
        run = cls(experiment, details["run_id"], _details=details)
        run._owned = True
        flusher = run._ensure_flusher(heartbeat=True)
        shutdown.install()
        # One heartbeat now: the reaper watches a run from its first heartbeat after creation,
        # so a process killed in its first second is still noticed.
        try:
            flusher.client.post(f"{run._path}/heartbeat", {})
        except RunstudioError:
            pass
        return run

    @classmethod
    def _started_offline(
        cls, experiment: Experiment, body: dict[str, Any], error: RunstudioError
    ) -> Run:
        """An offline-first run: the server did not answer ``start_logging()``. Its id is
        chosen here as a client-chosen id in the server's form, ``<workspace>~<experiment>_
        <unix time>_<8 hex>`` (32 random bits: two machines do not pick the same one); the
        run is created on the server under that id as soon as it answers — by the background
        thread while the script runs, else by ``runstudio sync`` — with its real start."""
        import secrets
        from datetime import UTC, datetime

        started = time.time()
        run_id = (
            f"{experiment.workspace.name}~{experiment.name[:150]}_{int(started)}_"
            f"{secrets.token_hex(4)}"
        )
        body = {**body, "run_id": run_id, "started_at": started}
        details = {
            "run_id": run_id,
            "experiment": experiment.name,
            "workspace": experiment.workspace.name,
            "parent_id": None,
            "display_name": body.get("display_name") or "",
            "description": body.get("description") or "",
            "status": "Running",
            "run_type": body.get("run_type", "interactive"),
            "created_at": datetime.fromtimestamp(started, UTC).isoformat(),
            "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
            "tags": dict(body.get("tags") or {}),
            "properties": dict(body.get("properties") or {}),
            "error": None,
        }
        run = cls(experiment, run_id, _details=details)
        run._owned = True
        create = {"op": "create", "path": f"{experiment._api_path}/runs", "body": body}
        spool.report_down(experiment.workspace._client.url, error, offline_run=run_id)
        run._ensure_flusher(heartbeat=True, create=create)
        shutdown.install()
        return run

    @staticmethod
    def get(workspace: Workspace, run_id: str) -> Run:
        return Run._from_id(workspace, run_id)

    @classmethod
    def get_context(cls, allow_offline: bool = True) -> Run:
        """The run this script was submitted as (``RUNSTUDIO_RUN_ID``), or an offline run
        that prints what it would log when the script runs on its own."""
        run_id = os.environ.get("RUNSTUDIO_RUN_ID")
        if not run_id:
            if not allow_offline:
                raise RunstudioError(
                    "Run.get_context(allow_offline=False): RUNSTUDIO_RUN_ID is not set; "
                    "this script is not running as a submitted run. Submit it "
                    "(`runstudio run submit-script` or exp.submit(ScriptRunConfig(...))), "
                    "or call get_context() to log offline"
                )
            from runs.sdk.offline import _OfflineRun

            return _OfflineRun()
        current = cls._context_run
        if current is not None and current.id == run_id:
            return current
        from runs.sdk.workspace import Workspace

        settings = config.resolve()
        client = Client(settings.url, settings.token)
        details = client.get(f"/runs/{quote_segment(run_id)}")
        workspace = Workspace(details["workspace"], _client=client)
        run = cls._from_details(workspace, details)
        shutdown.install()
        cls._context_run = run
        return run

    # -- identity -------------------------------------------------------------------------

    def __repr__(self) -> str:
        d = self._details or {}
        return (
            f"Run(Experiment: {self._experiment.name},\nId: {self._id},\n"
            f"Type: {d.get('run_type')},\nStatus: {d.get('status')})"
        )

    @property
    def id(self) -> str:
        return self._id

    @property
    def experiment(self) -> Experiment:
        return self._experiment

    @property
    def _path(self) -> str:
        return f"/runs/{quote_segment(self._id)}"

    def _refresh(self) -> dict[str, Any]:
        self._details = self._client.get(self._path)
        return self._details

    def _cached(self) -> dict[str, Any]:
        return self._details if self._details is not None else self._refresh()

    @property
    def status(self) -> str:
        """The status as last seen; ``get_status()`` asks the server."""
        return self._cached().get("status", "")

    @property
    def type(self) -> str:
        return self._cached().get("run_type", "")

    @property
    def display_name(self) -> str:
        return self._cached().get("display_name") or ""

    @display_name.setter
    def display_name(self, value: str) -> None:
        self._details = self._client.patch(self._path, {"display_name": value})

    @property
    def description(self) -> str:
        return self._cached().get("description") or ""

    @description.setter
    def description(self, value: str) -> None:
        self._details = self._client.patch(self._path, {"description": value})

    @property
    def parent(self) -> Run | None:
        """The parent run, fetched on first use; None for a top-level run."""
        if not self._parent_loaded:
            parent_id = self._cached().get("parent_id")
            self._parent = (
                Run._from_id(self._experiment.workspace, parent_id) if parent_id else None
            )
            self._parent_loaded = True
        return self._parent

    @property
    def tags(self) -> dict[str, str | None]:
        return self.get_tags()

    @property
    def properties(self) -> dict[str, str]:
        return self.get_properties()

    def get_status(self) -> str:
        return self._refresh().get("status", "")

    def get_details(self) -> dict[str, Any]:
        """The run's details in Azure ML's ``get_details()`` shape.

        Keys: runId, experiment, workspace, parentRunId, displayName, description, status,
        runType, target, submittedBy, createdTimeUtc, startTimeUtc, endTimeUtc,
        lastHeartbeatUtc, error ({code, message} or None), properties, tags, portalUrl.
        """
        d = self._refresh()
        return {
            "runId": d.get("run_id"),
            "experiment": d.get("experiment"),
            "workspace": d.get("workspace"),
            "parentRunId": d.get("parent_id"),
            "displayName": d.get("display_name"),
            "description": d.get("description"),
            "status": d.get("status"),
            "runType": d.get("run_type"),
            "target": d.get("compute_target"),
            "submittedBy": d.get("submitter"),
            "createdTimeUtc": d.get("created_at"),
            "startTimeUtc": d.get("started_at"),
            "endTimeUtc": d.get("ended_at"),
            "lastHeartbeatUtc": d.get("heartbeat_at"),
            "error": d.get("error"),
            "properties": dict(d.get("properties") or {}),
            "tags": dict(d.get("tags") or {}),
            "portalUrl": d.get("portal_url"),
        }

    def get_portal_url(self) -> str:
        return self._cached().get("portal_url") or ""

    # -- metrics --------------------------------------------------------------------------

    def _ensure_flusher(
        self, *, heartbeat: bool = False, create: dict[str, Any] | None = None
    ) -> Flusher:
        if self._flusher is None:
            key = (self._client.url, self._id)
            with shutdown.lock:
                flusher = shutdown.flushers.get(key)
                if flusher is None:
                    flusher = Flusher(
                        Client(self._client.url, self._client.token, retries=0),
                        self._id,
                        create=create,
                        workspace=self._experiment.workspace.name,
                        experiment=self._experiment.name,
                    )
                    shutdown.flushers[key] = flusher
                shutdown.open_runs.add(self)
            self._flusher = flusher
            self._buffer = flusher.buffer
            self._wake = flusher.wake
            self._kinds = flusher.kinds
            shutdown.install()
        if heartbeat:
            self._flusher.heartbeat = True
        if not self._finished:
            self._flusher.start()
        return self._flusher

    def _register(self, name: str, kind: str) -> None:
        self._ensure_flusher()
        register_kind(self._kinds, name, kind)

    def log(self, name: str, value: Any, description: str = "", step: int | None = None) -> None:
        """Log a number (a scalar point) or a string. Costs microseconds: no network."""
        t = type(value)
        if t is float or t is int:
            kind = "scalar"
        elif t is str:
            kind = "string"
        else:
            value, kind = coerce_value(value)
        if self._kinds.get(name) != kind:
            self._register(name, kind)
        if step is not None and type(step) is not int:
            step = int(step)
        buffer = self._buffer
        buffer.append((name, kind, value, step, _time()))
        if len(buffer) >= FLUSH_POINTS:
            wake = self._wake
            # Event.set() takes a lock; while the flusher is busy the flag is already up.
            if not wake.is_set():  # type: ignore[union-attr]
                wake.set()  # type: ignore[union-attr]

    def _append(self, name: str, kind: str, value: Any, step: int | None = None) -> None:
        if self._kinds.get(name) != kind:
            self._register(name, kind)
        self._buffer.append((name, kind, value, step, _time()))

    def log_list(self, name: str, value: Iterable[Any], description: str = "") -> None:
        """Log a list of values; ``get_metrics()`` concatenates the lists of a name."""
        self._append(name, "list", plain(list(value)))

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        """Log one table row: ``run.log_row("table", x=1, y=2)``."""
        self._append(name, "row", {k: plain(v) for k, v in kwargs.items()})

    def log_table(
        self, name: str, value: Mapping[str, Iterable[Any]], description: str = ""
    ) -> None:
        """Log a table given as ``{column: [values]}``; stored as one row per index."""
        columns = {k: list(v) for k, v in value.items()}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError(
                f"log_table({name!r}): columns have different lengths {lengths}; give every "
                "column the same number of values"
            )
        keys = list(columns)
        for row in zip(*columns.values(), strict=True):
            self._append(name, "row", {k: plain(v) for k, v in zip(keys, row, strict=True)})

    def log_image(
        self,
        name: str,
        path: str | os.PathLike[str] | None = None,
        plot: Any = None,
        description: str = "",
    ) -> None:
        """Upload an image file (or a matplotlib figure, saved as PNG) to
        ``outputs/images/<name>/<n>_<file>`` and log that path as an image metric."""
        if (path is None) == (plot is None):
            raise ValueError("log_image() takes exactly one of path= or plot=")
        validate_metric_name(name)
        n = self._image_counts.get(name, 0)
        self._image_counts[name] = n + 1
        folder = f"outputs/images/{safe_path_part(name)}"
        if path is not None:
            target = f"{folder}/{n}_{Path(path).name}"
            self.upload_file(target, path)
        else:
            data = io.BytesIO()
            plot.savefig(data, format="png")
            data.seek(0)
            target = f"{folder}/{n}_plot.png"
            self.upload_file(target, data)
        self._append(name, "image", target)

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything logged so far; False if ``timeout`` passed first (the points
        stay queued and keep being retried)."""
        if self._flusher is None:
            return True
        return self._flusher.flush(close_timeout() if timeout is None else timeout)

    def _close_metrics(self) -> None:
        if self._flusher is not None:
            self._flusher.close()

    def get_metrics(
        self, name: str | Iterable[str] | None = None, recursive: bool = False
    ) -> dict[str, Any]:
        """Metrics by name, in logged order (flushes first). ``recursive=True`` returns
        ``{run_id: metrics}`` for this run and all its descendants."""
        if recursive:
            result = {self._id: self.get_metrics(name)}
            for child in self.get_children(recursive=True):
                result[child.id] = child.get_metrics(name)
            return result
        self.flush()
        params: list[tuple[str, str]] = []
        if isinstance(name, str):
            params.append(("name", name))
        elif name is not None:
            params += [("name", n) for n in name]
        metrics: dict[str, Any] = self._client.get(f"{self._path}/metrics/values", params=params)[
            "metrics"
        ]
        suspects = [k for k, v in metrics.items() if has_non_finite_marker(v)]
        if suspects:
            # "NaN"/"Infinity" are ambiguous in a string series; only decode scalar ones.
            kinds = {
                m["name"]: m.get("kind")
                for m in self._client.get(f"{self._path}/metrics")["metrics"]
            }
            for k in suspects:
                if kinds.get(k) == "scalar":
                    v = metrics[k]
                    metrics[k] = (
                        [decode_number(x) for x in v] if isinstance(v, list) else (decode_number(v))
                    )
        return metrics

    # -- tags and properties --------------------------------------------------------------

    def tag(self, key: str, value: Any = None) -> None:
        """Set a tag; without a value it is a bare tag (its value is None)."""
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any] | Iterable[str] | str) -> None:
        if isinstance(tags, str):
            tags = {tags: None}
        elif not isinstance(tags, Mapping):
            tags = dict.fromkeys(tags)
        body = {"set": {str(k): None if v is None else str(v) for k, v in tags.items()}}
        self._send_or_queue({"op": "tags", "body": body})

    def remove_tag(self, key: str) -> None:
        self._send_or_queue({"op": "tags", "body": {"remove": [key]}})

    def _send_or_queue(self, op: dict[str, Any], source: Any = None) -> Any:
        """Send a tag, property or file change now; while the server is unreachable (or the
        run does not exist there yet), queue it behind the metrics instead of raising: the
        flusher sends it when the server answers, else it goes to the spool at exit.
        Only runs that log through a flusher queue; a run merely looked up raises."""
        flusher = self._flusher
        if flusher is not None and flusher.must_queue():
            flusher.queue_op(op, source)
            return None
        position = source.tell() if hasattr(source, "seekable") and source.seekable() else None
        try:
            if op["op"] == "file":
                return _plain_upload(self, op["path"], source)
            return spool.send_op(self._client, self._id, op)
        except RunstudioError as e:
            if flusher is None or not is_transient(e):
                raise
            spool.report_down(self._client.url, e)
            if position is not None:
                source.seek(position)  # the failed attempt read some of it
            flusher.queue_op(op, source)
            return None

    def get_tags(self) -> dict[str, str | None]:
        return self._client.get(f"{self._path}/tags")["tags"]

    def add_properties(self, properties: Mapping[str, Any]) -> None:
        """Add immutable properties; setting a key again with another value raises
        ``Conflict`` whose message names the key, the stored and the refused value."""
        body = {"properties": {str(k): str(v) for k, v in properties.items()}}
        self._send_or_queue({"op": "properties", "body": body})

    def add_property(self, key: str, value: Any) -> None:
        self.add_properties({key: value})

    def get_properties(self) -> dict[str, str]:
        return self._client.get(f"{self._path}/properties")["properties"]

    # -- files ----------------------------------------------------------------------------

    def upload_file(self, name: str, path_or_stream: str | os.PathLike[str] | IO[bytes]) -> dict:
        """Store a file (a local path or a binary stream) at ``name`` in the run's tree.

        A stream is sent from its current position to its end, always with a Content-Length
        (one that cannot seek, or an iterable of bytes, is copied to a temporary file first),
        so the server stores all of it or, if the upload breaks, nothing."""
        headers = {"Content-Type": "application/octet-stream"}
        url = f"{self._path}/files/{quote_path(name)}"
        with sized_body(path_or_stream) as body:
            return self._client.call("PUT", url, data=body, headers=headers)

    def upload_files(self, names: list[str], paths: list[str | os.PathLike[str]]) -> list[dict]:
        return [self.upload_file(n, p) for n, p in zip(names, paths, strict=True)]

    def upload_folder(self, name: str, path: str | os.PathLike[str]) -> list[dict]:
        """Upload every file under ``path`` to ``name/<relative path>``."""
        root = Path(path)
        results = []
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            target = f"{name.rstrip('/')}/{file.relative_to(root).as_posix()}"
            results.append(self.upload_file(target, file))
        return results

    def _files(self, prefix: str | None = None) -> list[dict[str, Any]]:
        params = {"prefix": prefix} if prefix else None
        return self._client.get(f"{self._path}/files", params=params)["files"]

    def get_file_names(self) -> list[str]:
        return [f["path"] for f in self._files()]

    def download_file(
        self, name: str, output_file_path: str | os.PathLike[str] | None = None
    ) -> str:
        """Download run file ``name``; returns the local path written."""
        target = Path(output_file_path) if output_file_path else Path(Path(name).name)
        if target.is_dir():
            target = target / Path(name).name
        target.parent.mkdir(parents=True, exist_ok=True)
        response = self._client.request(
            "GET", f"{self._path}/files/{quote_path(name)}", headers={"Accept": "*/*"}, stream=True
        )
        with response, open(target, "wb") as f:
            for chunk in response.iter_content(chunk_size=1 << 20):
                f.write(chunk)
        return str(target)

    def download_files(
        self,
        prefix: str | None = None,
        output_directory: str | os.PathLike[str] | None = None,
        append_prefix: bool = True,
    ) -> list[str]:
        """Download the files under ``prefix`` (all by default) into ``output_directory``
        (default: the current folder), keeping their tree; with ``append_prefix=False``
        the prefix is stripped from the local paths."""
        out = Path(output_directory or ".")
        written = []
        for f in self._files(prefix):
            rel = f["path"]
            if prefix and not append_prefix and rel.startswith(prefix):
                rel = rel[len(prefix) :].lstrip("/") or Path(rel).name
            written.append(self.download_file(f["path"], out / rel))
        return written

    # -- status ---------------------------------------------------------------------------

    def _finish(
        self, status: str, error: dict[str, str] | None = None, *, endpoint: str = "status"
    ) -> None:
        # The real end: a run sent later from the spool still ends now, not when it is sent.
        ended_at = time.time()
        self._finished = True
        body: dict[str, Any] = {"status": status, "ended_at": ended_at}
        if error is not None:
            body["error"] = error
        final = {"op": "status", "endpoint": endpoint, "body": body if endpoint == "status" else {}}
        flusher = self._flusher
        if flusher is None and self._owned:
            flusher = self._ensure_flusher()
        try:
            if flusher is None:  # a run looked up, not logged to: nothing to spool
                self._details = _retrying(
                    lambda: spool.send_op(self._client, self._id, final), spool.exit_timeout()
                )
            else:
                # Metrics, queued changes, then the status; all of it spooled if the server
                # stays silent for RUNSTUDIO_EXIT_TIMEOUT seconds.
                answer = flusher.close(final=final)
                if answer is not None:
                    self._details = answer
                elif self._details is not None:
                    self._details = {**self._details, "status": status}
                # The thread is gone; points logged after this are sent by flush() or at exit.
                flusher.heartbeat = False
                flusher.client.close()
        except Conflict as e:
            try:
                current = self._refresh().get("status")
            except RunstudioError:
                current = "in a final state"
            warn(f"run {self._id} is {current} and stays so; {status} refused: {e.message}")
        finally:
            with shutdown.lock:
                shutdown.open_runs.discard(self)

    def start(self) -> None:
        """Mark a NotStarted run (e.g. from ``create_children``) as Running. From then on this
        process heartbeats it and finishes it at exit, as it does a ``start_logging()`` run,
        so the reaper notices if the process dies."""
        self._details = self._client.post(f"{self._path}/status", {"status": "Running"})
        self._owned = True
        self._finished = False
        flusher = self._ensure_flusher(heartbeat=True)
        try:
            flusher.client.post(f"{self._path}/heartbeat", {})
        except RunstudioError:
            pass

    def complete(self) -> None:
        """Flush, then mark the run Completed. On a run already terminal (e.g. canceled)
        this warns on stderr and changes nothing."""
        self._finish("Completed")

    def fail(self, error_details: Any = None, error_code: str | None = None) -> None:
        """Flush, then mark the run Failed with ``error_details`` (text or an exception)."""
        self._finish(
            "Failed", {"code": error_code or "UserError", "message": error_text(error_details)}
        )

    def cancel(self) -> None:
        """Cancel the run. The server decides (POST /cancel): a submitted script that a worker
        is executing goes to CancelRequested (the worker stops it); any other run to Canceled."""
        self._finish("Canceled", endpoint="cancel")

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.complete()
        else:
            self.fail(error_details=exc, error_code="UserError")

    # -- children -------------------------------------------------------------------------

    def _create_children(self, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._client.post(f"{self._path}/children", {"runs": runs})["results"]

    def child_run(self, name: str | None = None, run_id: str | None = None) -> Run:
        """Start a child run (status Running); ``with run.child_run() as child:`` completes it."""
        spec: dict[str, Any] = {"run_type": "child", "status": "Running"}
        if name is not None:
            spec["display_name"] = name
        if run_id is not None:
            spec["run_id"] = run_id
        details = self._create_children([spec])[0]
        child = Run._started(self._experiment_for(details), details)
        child._parent, child._parent_loaded = self, True
        return child

    def create_children(
        self,
        count: int | None = None,
        tag_key: str | None = None,
        tag_values: Iterable[str] | None = None,
    ) -> list[Run]:
        """Create many children (status NotStarted) in one call: ``count`` of them, or one
        per value in ``tag_values``, tagged ``tag_key=value``."""
        if tag_key is not None and tag_values is not None:
            specs = [{"run_type": "child", "tags": {tag_key: str(v)}} for v in tag_values]
            if count is not None and count != len(specs):
                raise ValueError("create_children(): count must match len(tag_values)")
            results = self._create_children(specs)
        elif count is not None:
            results = self._client.post(f"{self._path}/children", {"count": int(count)})["results"]
        else:
            raise ValueError("create_children() needs count= or tag_key= and tag_values=")
        children = []
        for details in results:
            child = Run(self._experiment_for(details), details["run_id"], _details=details)
            child._parent, child._parent_loaded = self, True
            children.append(child)
        return children

    def get_children(
        self,
        recursive: bool = False,
        tags: Mapping[str, str | None] | str | None = None,
        properties: Mapping[str, str] | None = None,
        type: str | None = None,
        status: str | None = None,
    ) -> Iterator[Run]:
        """Child runs (all descendants, breadth first, with ``recursive=True``)."""
        params = {"recursive": 1} if recursive else None
        results = self._client.get(f"{self._path}/children", params=params)["results"]
        if isinstance(tags, str):
            tags = {tags: None}
        for details in results:
            if status is not None and details.get("status") != status:
                continue
            if type is not None and details.get("run_type") != type:
                continue
            run_tags = details.get("tags") or {}
            if tags and any(
                k not in run_tags or (v is not None and run_tags[k] != v) for k, v in tags.items()
            ):
                continue
            run_props = details.get("properties") or {}
            if properties and any(run_props.get(k) != v for k, v in properties.items()):
                continue
            yield Run(self._experiment_for(details), details["run_id"], _details=details)

    def _experiment_for(self, details: Mapping[str, Any]) -> Experiment:
        name = details.get("experiment")
        if not name or name == self._experiment.name:
            return self._experiment
        from runs.sdk.experiment import Experiment

        return Experiment(self._experiment.workspace, name)

    # -- submitted scripts: children, waiting, streaming the driver log ---------------------

    def submit_child(self, config: Any, tags: Mapping[str, str | None] | None = None) -> Run:
        """Submit a ``ScriptRunConfig`` as a child of this run, on its own compute target
        and with its own arguments; returns at once (the child is Queued). Statuses stay
        independent: this run may complete while a child fails."""
        from runs.sdk.submit import submit

        details = submit(
            self._client,
            workspace=self._experiment.workspace.name,
            experiment=self._experiment.name,
            config=config,
            tags=tags,
            parent_run_id=self._id,
        )
        child = Run(self._experiment_for(details), details["run_id"], _details=details)
        child._parent, child._parent_loaded = self, True
        return child

    def _read_log(self, path: str, offset: int) -> tuple[bytes, int]:
        """Bytes of run file ``path`` from ``offset`` (nothing while it does not exist yet)."""
        from runs.sdk.client import NotFound

        try:
            response = self._client.request(
                "GET",
                f"{self._path}/files/{quote_path(path)}",
                params={"offset": offset, "length": LOG_READ_BYTES},
                headers={"Accept": "*/*"},
            )
        except NotFound:
            return b"", offset
        return response.content, int(response.headers.get("X-Next-Offset", offset))

    def wait_for_completion(
        self,
        show_output: bool = False,
        wait_post_processing: bool = False,
        raise_on_error: bool = True,
        *,
        poll_interval: float | None = None,
        out: IO[str] | None = None,
    ) -> dict[str, Any]:
        """Wait until the run is Completed, Failed or Canceled and return ``get_details()``.

        ``show_output=True`` prints the driver log (``logs/70_driver_log.txt``: the script's
        stdout and stderr) as it grows, between a header and an "Execution Summary".
        A Failed run raises ``ActivityFailedException`` unless ``raise_on_error=False``.
        ``wait_post_processing`` is accepted for Azure compatibility: the worker uploads
        ``./outputs`` before the final status, so there is nothing left to wait for."""
        import codecs
        import sys

        out = out or sys.stdout
        interval = poll_interval if poll_interval is not None else WAIT_POLL_SECONDS
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        offset = 0
        if show_output:
            url = self.get_portal_url()
            print(f"RunId: {self._id}\nWeb View: {url}\n", file=out)
            print(f"Streaming {DRIVER_LOG}\n{'=' * (10 + len(DRIVER_LOG))}\n", file=out, flush=True)
        while True:
            # Status first, then the log: the worker writes the last output before the final
            # status, so a terminal status read first means the log read after it is whole.
            status = self.get_status()
            if show_output:
                while True:
                    data, offset_next = self._read_log(DRIVER_LOG, offset)
                    if data:
                        out.write(decoder.decode(data))
                        out.flush()
                    offset = offset_next
                    if len(data) < LOG_READ_BYTES:
                        break
            if status in TERMINAL_STATUSES:
                break
            time.sleep(interval)
        details = self.get_details()
        if show_output:
            out.write(decoder.decode(b"", final=True))
            print(
                f"\n\nExecution Summary\n=================\nRunId: {self._id}\n"
                f"Web View: {details.get('portalUrl')}\nStatus: {details.get('status')}",
                file=out,
            )
            if details.get("error"):
                print(f"Error: {details['error'].get('message')}", file=out)
            print(file=out, flush=True)
        if details.get("status") == "Failed" and raise_on_error:
            error = details.get("error") or {}
            raise ActivityFailedException(
                f"run {self._id} failed: {error.get('message') or 'no reason given'}",
                code=error.get("code"),
                details=details,
            )
        return details


DRIVER_LOG = "logs/70_driver_log.txt"
LOG_READ_BYTES = 1 << 20
WAIT_POLL_SECONDS = 0.5


class ActivityFailedException(RunstudioError):
    """``wait_for_completion()`` on a run that ended Failed (Azure ML's name).
    ``details`` holds the run's ``get_details()``; ``code`` the run's error code."""

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any]):
        super().__init__(message, code=code)
        self.details = details


# Uploads take the same road as tags and properties while the server is unreachable: queued
# behind the metrics, else spooled at exit. Wrapped here rather than inside upload_file so the
# upload body (runs/sdk/upload.py) and the outage policy stay separate.
_plain_upload = Run.upload_file


def _upload_file(
    self: Run, name: str, path_or_stream: str | os.PathLike[str] | IO[bytes]
) -> dict | None:
    return self._send_or_queue({"op": "file", "path": name}, path_or_stream)


_upload_file.__doc__ = (_plain_upload.__doc__ or "") + (
    "\n\n        While the server is unreachable the file is copied aside and sent later (or "
    "spooled at exit); None is returned then."
)
Run.upload_file = _upload_file  # type: ignore[method-assign]
