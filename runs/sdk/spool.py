"""The spool: what a script could not send before it ended, kept on disk until it is sent.

When the server cannot be reached as a script ends, the SDK waits ``RUNSTUDIO_EXIT_TIMEOUT``
seconds (default 15), then writes every unsent metric batch, tag, property, file and the
run's final status (with the time the script really ended) to a spool entry, prints one line
saying where and how to send it, and lets the process exit with the script's own status.
``runstudio sync`` sends the entries; so does the next SDK start that reaches the server
(in a background thread). See docs/architecture.md, "Outages and the spool".

Where: ``.runstudio/spool/`` next to the configuration the SDK uses: the folder config's
``.runstudio/`` when one is found from the current folder, else ``$RUNSTUDIO_HOME`` (default
``~/.runstudio``); ``RUNSTUDIO_SPOOL_DIR`` overrides both. One entry per run and spooling
process, a folder named ``<UTC time>_<pid>_<run id>`` so that sorting names sorts entries in
the order they were written::

    run.json      {"version", "url", "run_id", "workspace", "experiment", "spooled_at",
                   "reason", "points", "ops"}
    ops.jsonl     one operation a line, in the order they are to be sent:
                  {"op": "create", "path", "body"}         an offline-first run's creation
                  {"op": "metrics", "file", "points"}      a metric batch (its body in file)
                  {"op": "tags", "body"}  {"op": "properties", "body"}
                  {"op": "file", "path", "file"}           a run file (its bytes in file)
                  {"op": "status", "endpoint", "body"}     the final status, "ended_at" included
    batches/, files/   the bodies named above
    progress      how many operations were sent (written by sync after each one)

An entry is written in a ``.tmp-…`` folder and renamed into place, so sync never sees half
of one. Sending is exactly once: each metric batch keeps the idempotency key it was first sent
with (the server stores a key's batch once), tags and files are replaced whole, a property
set again to the same value and a status set again are no-ops; ``progress`` only saves the
repeat. Entries are sent oldest first and removed when every operation got an answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from runs.sdk import config
from runs.sdk.client import (
    AuthError,
    Client,
    Conflict,
    NotFound,
    PermissionDenied,
    RunstudioError,
    is_transient,
    quote_path,
    quote_segment,
)
from runs.sdk.upload import sized_body

SPOOL_FORMAT = 1
DEFAULT_EXIT_TIMEOUT = 15.0


def exit_timeout() -> float:
    """Seconds a closing run keeps trying an unreachable server before spooling."""
    try:
        return max(0.0, float(os.environ.get("RUNSTUDIO_EXIT_TIMEOUT") or DEFAULT_EXIT_TIMEOUT))
    except ValueError:
        return DEFAULT_EXIT_TIMEOUT


def spool_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The spool folder the SDK and ``runstudio sync`` use from ``start`` (default: cwd)."""
    explicit = os.environ.get("RUNSTUDIO_SPOOL_DIR")
    if explicit:
        return Path(explicit)
    found = config.find_folder_config(start)
    base = found.parent if found is not None else config.runstudio_home()
    return base / "spool"


def shown(path: Path) -> str:
    """``path`` relative to the current folder when it is below it (shorter to read)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def say(message: str) -> None:
    print(f"runstudio: {message}", file=sys.stderr, flush=True)


# --- outage: one line when the server stops answering, one when it is back ------------------

_outage_lock = threading.Lock()
_down_since: dict[str, float] = {}
_waiting_said: set[str] = set()


def report_down(url: str, error: BaseException, *, offline_run: str | None = None) -> None:
    """Say once per outage that ``url`` cannot be reached and that the SDK keeps retrying."""
    with _outage_lock:
        if url in _down_since:
            return
        _down_since[url] = time.monotonic()
    reason = getattr(error, "message", None) or str(error)
    where = shown(spool_root())
    if offline_run is not None:
        say(
            f"{reason.split('. Is it running?')[0]}; run {offline_run} starts offline: what it "
            f"logs is sent when the server answers, else saved to {where} at exit for "
            "`runstudio sync`."
        )
    else:
        say(
            f"{reason.split('. Is it running?')[0]}; retrying in the background. Logging goes "
            f"on; what is still unsent at exit is saved to {where} for `runstudio sync`."
        )


def report_up(url: str) -> None:
    with _outage_lock:
        since = _down_since.pop(url, None)
        _waiting_said.discard(url)
    if since is not None:
        say(f"reached {url} again after {time.monotonic() - since:.0f} s; sending what waited.")


def is_down(url: str) -> bool:
    return url in _down_since


def report_waiting(url: str, timeout: float) -> None:
    """At exit, once per server: say why the script has not ended yet."""
    with _outage_lock:
        if url in _waiting_said:
            return
        _waiting_said.add(url)
    say(
        f"waiting up to {timeout:g} s for {url} to answer (RUNSTUDIO_EXIT_TIMEOUT) before "
        "saving what is unsent to the spool."
    )


# --- writing an entry ---------------------------------------------------------------------------


@dataclass
class SpoolEntry:
    """Builds one spool entry; ``commit()`` moves it into place."""

    url: str
    run_id: str
    workspace: str | None = None
    experiment: str | None = None
    reason: str = ""
    root: Path = field(default_factory=spool_root)
    ops: list[dict[str, Any]] = field(default_factory=list)
    points: int = 0

    def __post_init__(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds run data
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")
        self.name = f"{stamp}_{os.getpid()}_{self.run_id}"
        self.tmp = self.root / f".tmp-{self.name}"
        (self.tmp / "batches").mkdir(parents=True)
        (self.tmp / "files").mkdir()

    def add(self, op: dict[str, Any]) -> None:
        self.ops.append(op)

    def add_batch(self, body: bytes, points: int) -> None:
        name = f"batches/{len(self.ops):06d}.json"
        (self.tmp / name).write_bytes(body)
        self.ops.append({"op": "metrics", "file": name, "points": points})
        self.points += points

    def add_file(self, path: str, source: Path) -> None:
        name = f"files/{len(self.ops):06d}"
        try:
            os.link(source, self.tmp / name)  # staged copies are ours: no need to copy again
        except OSError:
            shutil.copyfile(source, self.tmp / name)
        self.ops.append({"op": "file", "path": path, "file": name})

    def commit(self) -> Path:
        with open(self.tmp / "ops.jsonl", "w") as f:
            for op in self.ops:
                f.write(json.dumps(op, separators=(",", ":")) + "\n")
        meta = {
            "version": SPOOL_FORMAT,
            "url": self.url,
            "run_id": self.run_id,
            "workspace": self.workspace,
            "experiment": self.experiment,
            "spooled_at": time.time(),
            "reason": self.reason,
            "points": self.points,
            "ops": len(self.ops),
        }
        (self.tmp / "run.json").write_text(json.dumps(meta, indent=2))
        final = self.root / self.name
        os.replace(self.tmp, final)
        return final


def stage_file(staging: Path, index: int, source: str | os.PathLike[str] | IO[bytes]) -> Path:
    """Copy a file (or the rest of a stream) aside now: the script may change or delete it
    before the server comes back."""
    staging.mkdir(parents=True, exist_ok=True)
    target = staging / f"{index:06d}"
    if isinstance(source, (str, os.PathLike)):
        shutil.copyfile(source, target)
    else:
        with open(target, "wb") as out:
            shutil.copyfileobj(source, out)
    return target


# --- sending an operation (the flusher and sync share this) ------------------------------------


def send_op(client: Client, run_id: str, op: dict[str, Any], base: Path | None = None) -> Any:
    """Send one spooled or queued operation; the server's answer, or raise RunstudioError.

    Answers that mean "already done" count as done: a creation whose run id exists (an
    earlier attempt got through), a status the run already has."""
    path = f"/runs/{quote_segment(run_id)}"
    kind = op["op"]
    if kind == "create":
        try:
            return client.post(op["path"], op["body"])
        except Conflict as e:
            if e.field == "run_id":
                return client.get(path)
            raise
    if kind == "metrics":
        body = op["body"] if "body" in op else (base / op["file"]).read_bytes()  # type: ignore[operator]
        return client.call(
            "POST", f"{path}/metrics/batch", data=body, headers={"Content-Type": "application/json"}
        )
    if kind == "tags":
        return client.patch(f"{path}/tags", op["body"])
    if kind == "properties":
        return client.post(f"{path}/properties", op["body"])
    if kind == "file":
        source = Path(op["staged"]) if "staged" in op else base / op["file"]  # type: ignore[operator]
        # Sized, never chunked: an empty file would otherwise go chunked (runs/sdk/upload.py).
        with sized_body(source) as body:
            return client.call(
                "PUT",
                f"{path}/files/{quote_path(op['path'])}",
                data=body,
                headers={"Content-Type": "application/octet-stream"},
            )
    if kind == "status":
        endpoint = op.get("endpoint", "status")
        body = op.get("body") or {}
        try:
            return client.post(f"{path}/{endpoint}", body)
        except Conflict:
            current = client.get(path)
            wanted = body.get("status") if endpoint == "status" else "Canceled"
            if current.get("status") == wanted:
                return current
            raise
    raise ValueError(f"unknown spool operation {kind!r}")


# --- sync -----------------------------------------------------------------------------------


@dataclass
class SyncResult:
    entry: str
    run_id: str
    url: str
    sent_ops: int = 0
    points: int = 0
    done: bool = False
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "url": self.url,
            "entry": self.entry,
            "sent": self.done,
            "operations_sent": self.sent_ops,
            "points_sent": self.points,
            "error": self.error,
            "warnings": self.warnings,
        }


def entries(root: Path | None = None) -> list[Path]:
    """Complete entries under ``root``, oldest first."""
    root = root or spool_root()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "run.json").is_file())


@contextlib.contextmanager
def _locked(entry: Path) -> Iterator[bool]:
    """An exclusive lock on the entry (so an auto-sync and `runstudio sync` never both send
    it); yields False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; idempotency still keeps data single
        yield True
        return
    with open(entry / "lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _client_for(url: str, clients: dict[str, Client]) -> Client:
    if url not in clients:
        settings = config.resolve(url=url)
        if not settings.token:
            raise config.ConfigError(
                f"no token for {url}: run `runstudio login --url {url} --username NAME` "
                "(or set RUNSTUDIO_TOKEN), then `runstudio sync` again"
            )
        clients[url] = Client(url, settings.token, retries=0)
    return clients[url]


def sync_entry(entry: Path, clients: dict[str, Client] | None = None) -> SyncResult:
    """Send one entry from where the last attempt stopped; remove it when all is sent."""
    clients = {} if clients is None else clients
    meta = json.loads((entry / "run.json").read_text())
    result = SyncResult(entry=str(entry), run_id=meta["run_id"], url=meta["url"])
    with _locked(entry) as mine:
        if not mine:
            result.error = "another process is sending this entry"
            return result
        if not (entry / "run.json").is_file():  # sent and removed while we waited
            result.done = True
            return result
        client = _client_for(meta["url"], clients)
        ops = [json.loads(line) for line in (entry / "ops.jsonl").read_text().splitlines()]
        progress_file = entry / "progress"
        done = int(progress_file.read_text() or 0) if progress_file.is_file() else 0
        for index in range(done, len(ops)):
            op = ops[index]
            try:
                _send_patiently(client, meta["run_id"], op, entry)
            except RunstudioError as e:
                if is_transient(e):
                    result.error = f"{e.message} — kept; run `runstudio sync` again later"
                    return result
                if isinstance(e, (AuthError, PermissionDenied, NotFound)):
                    result.error = (
                        f"{e.message} — kept; sign in as a member of the run's workspace "
                        "(`runstudio login`) and run `runstudio sync` again"
                    )
                    return result
                # The server refused this operation for good (e.g. a property that already
                # has another value): say so and go on with the rest.
                result.warnings.append(f"{op['op']} refused (HTTP {e.status}): {e.message}")
            else:
                result.sent_ops += 1
                if op["op"] == "metrics":
                    result.points += int(op.get("points") or 0)
            tmp = entry / "progress.tmp"
            tmp.write_text(str(index + 1))
            os.replace(tmp, progress_file)
        shutil.rmtree(entry, ignore_errors=True)
        result.done = True
    return result


SYNC_RETRIES = (0.5, 1.0, 2.0, 4.0)  # seconds between attempts of one operation


def _send_patiently(client: Client, run_id: str, op: dict[str, Any], base: Path) -> Any:
    """send_op, riding out a blip (a restart, a 503) before giving up on this sync."""
    for delay in (*SYNC_RETRIES, None):
        try:
            return send_op(client, run_id, op, base)
        except RunstudioError as e:
            if not is_transient(e) or delay is None:
                raise
            time.sleep(delay)
    raise AssertionError("unreachable")


def sync(
    root: Path | None = None, *, url: str | None = None, run_id: str | None = None
) -> list[SyncResult]:
    """Send every entry (of server ``url`` / run ``run_id`` when given), oldest first."""
    clients: dict[str, Client] = {}
    results = []
    for entry in entries(root):
        try:
            meta = json.loads((entry / "run.json").read_text())
        except (OSError, ValueError):
            continue
        if url is not None and meta.get("url") != url:
            continue
        if run_id is not None and meta.get("run_id") != run_id:
            continue
        results.append(sync_entry(entry, clients))
    for client in clients.values():
        client.close()
    return results


_auto_sync: threading.Thread | None = None


def sync_in_background(url: str) -> None:
    """At an SDK start that reached ``url``: send that server's spooled entries in a daemon
    thread, one line before and one after. An entry cut off by the script's end is resumed by
    the next sync (``progress`` and idempotency keys make that safe)."""
    global _auto_sync
    if _auto_sync is not None:
        return
    try:
        pending = [e for e in entries() if json.loads((e / "run.json").read_text())["url"] == url]
    except (OSError, ValueError, KeyError):
        return
    if not pending:
        return

    def work() -> None:
        say(f"sending {len(pending)} spooled run(s) from {shown(spool_root())} to {url}.")
        try:
            results = sync(url=url)
        except (RunstudioError, config.ConfigError) as e:
            say(f"could not send the spool: {e}")
            return
        sent = [r for r in results if r.done]
        left = [r for r in results if not r.done]
        say(
            f"sent {len(sent)} spooled run(s)"
            + (f"; {len(left)} left for `runstudio sync`: {left[0].error}" if left else ".")
        )

    _auto_sync = threading.Thread(target=work, name="runstudio-spool-sync", daemon=True)
    _auto_sync.start()


def wait_for_background_sync(timeout: float) -> None:
    if _auto_sync is not None:
        _auto_sync.join(timeout)
