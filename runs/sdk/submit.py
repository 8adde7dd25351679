"""Script submission: ``ScriptRunConfig`` and the snapshot of its source directory.

    src = ScriptRunConfig(source_directory=".", script="train.py",
                          arguments=["--lr", 0.01], compute_target="cpu-cluster")
    run = exp.submit(src)
    run.wait_for_completion(show_output=True)

The source directory is zipped (leaving out what ``.runstudioignore`` or ``.amlignore`` lists,
gitignore-style, and always ``.git``, ``__pycache__``, ``.venv``, ``.runstudio``, and any
studio data directory or credentials folder inside it: see ``private_folder``), refused
before any upload when it is over ``SNAPSHOT_MAX_BYTES``, and sent with the run's
configuration in one request; the server stores it as the run's ``snapshot/`` tree and queues
the run on its compute target. Imports no Django.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from runs.sdk.client import Client, RunstudioError, quote_segment

# Like Azure ML's snapshot limit; the server checks the same number (runs/limits.py).
SNAPSHOT_MAX_BYTES = 300 * 1024 * 1024
IGNORE_FILES = (".runstudioignore", ".amlignore")
ALWAYS_IGNORED = (".git", "__pycache__", ".venv", ".runstudio", ".ipynb_checkpoints")
# What marks a studio's data directory (studio/settings.py writes `secret_key` into it).
DATA_DIR_MARKERS = ("db.sqlite3", "files", "static")


class SnapshotTooLarge(RunstudioError):
    """The source directory is over the snapshot limit; nothing was uploaded."""


def snapshot_limit() -> int:
    """``SNAPSHOT_MAX_BYTES``, or ``RUNSTUDIO_SNAPSHOT_MAX_BYTES`` when set (never above the
    server's own limit, which refuses bigger snapshots anyway)."""
    raw = os.environ.get("RUNSTUDIO_SNAPSHOT_MAX_BYTES")
    return int(raw) if raw else SNAPSHOT_MAX_BYTES


def target_name(compute_target: Any) -> str:
    """A compute target given as a name or as an object with ``.name`` (Azure passes
    ``ws.compute_targets["gpu-cluster"]``); None means ``local``."""
    if compute_target is None:
        return "local"
    if isinstance(compute_target, str):
        return compute_target
    name = getattr(compute_target, "name", None)
    if not isinstance(name, str):
        raise TypeError("compute_target must be a name or an object with a .name")
    return name


@dataclass
class ScriptRunConfig:
    """What to run and where: Azure ML v1's ``ScriptRunConfig`` shape. ``environment`` and
    ``run_config`` are accepted for compatibility; the worker's Python runs the script."""

    source_directory: str | os.PathLike[str] = "."
    script: str | None = None
    arguments: list[Any] | None = None
    compute_target: Any = None
    environment: Any = None
    run_config: Any = None
    display_name: str | None = None
    description: str | None = None
    tags: Mapping[str, str | None] | None = None
    properties: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.script:
            raise ValueError("ScriptRunConfig needs script= (a path inside source_directory)")

    @property
    def target(self) -> str:
        return target_name(self.compute_target)

    def submission(self) -> dict[str, Any]:
        """The ``config`` part of the submit request."""
        script = Path(self.script or "").as_posix()
        if script.startswith("./"):
            script = script[2:]
        config: dict[str, Any] = {
            "script": script,
            "arguments": [a if isinstance(a, str) else str(a) for a in (self.arguments or [])],
            "compute_target": self.target,
        }
        for key in ("display_name", "description"):
            if getattr(self, key) is not None:
                config[key] = getattr(self, key)
        if self.tags:
            config["tags"] = dict(self.tags)
        if self.properties:
            config["properties"] = dict(self.properties)
        return config


# --- ignore files (gitignore-style) ---------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


def _compile(pattern: str) -> _Rule | None:
    """One gitignore line → a rule: ``#`` comments, ``!`` negation, a trailing ``/`` for
    folders only, a leading or inner ``/`` anchors to the root, ``**`` spans folders."""
    line = pattern.rstrip("\n").rstrip()
    if not line or line.startswith("#"):
        return None
    negate = line.startswith("!")
    if negate:
        line = line[1:]
    if line.startswith("\\"):
        line = line[1:]
    dir_only = line.endswith("/")
    line = line.strip("/") if dir_only else line
    anchored = "/" in line
    line = line.lstrip("/")
    parts = []
    i = 0
    while i < len(line):
        if line.startswith("**/", i):
            parts.append("(?:.*/)?")
            i += 3
        elif line.startswith("/**", i) and i + 3 == len(line):
            parts.append("/.*")
            i += 3
        elif line.startswith("**", i):
            parts.append(".*")
            i += 2
        elif line[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif line[i] == "?":
            parts.append("[^/]")
            i += 1
        elif line[i] == "[":
            end = line.find("]", i + 1)
            if end < 0:
                parts.append(re.escape(line[i]))
                i += 1
            else:
                parts.append(fnmatch.translate(line[i : end + 1])[4:-3])
                i = end + 1
        else:
            parts.append(re.escape(line[i]))
            i += 1
    body = "".join(parts)
    prefix = "" if anchored else "(?:.*/)?"
    return _Rule(re.compile(f"^{prefix}{body}$"), negate, dir_only)


class IgnoreRules:
    """The ignore file of a source directory; later lines win, as in git."""

    def __init__(self, lines: Iterable[str] = ()) -> None:
        self.rules = [r for r in (_compile(line) for line in lines) if r is not None]

    @classmethod
    def for_directory(cls, root: Path) -> IgnoreRules:
        for name in IGNORE_FILES:
            path = root / name
            if path.is_file():
                return cls(path.read_text(encoding="utf-8", errors="replace").splitlines())
        return cls()

    def ignored(self, relative: str, *, is_dir: bool) -> bool:
        if any(part in ALWAYS_IGNORED for part in relative.split("/")):
            return True
        verdict = False
        for rule in self.rules:
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.match(relative):
                verdict = not rule.negate
        return verdict


def private_folder(folder: Path) -> bool:
    """A studio's data directory (its database, secret key and every workspace's run files)
    or a credentials folder, which a snapshot must never carry: a run's snapshot is readable
    by every reader of its workspace. The README's quick start serves from the folder a user
    then submits (`./runstudio-data`), and a RUNSTUDIO_HOME may sit inside a project."""
    if (folder / "secret_key").is_file() and any((folder / m).exists() for m in DATA_DIR_MARKERS):
        return True
    resolved = folder.resolve()
    return any(
        os.environ.get(name) and Path(os.environ[name]).expanduser().resolve() == resolved
        for name in ("RUNSTUDIO_DATA_DIR", "RUNSTUDIO_HOME")
    )


def snapshot_files(source_directory: str | os.PathLike[str]) -> Iterator[tuple[Path, str]]:
    """(path, relative posix name) of every file the snapshot holds, in a stable order. An
    ignored folder is not entered (its files cannot be re-included, as in git)."""
    root = Path(source_directory).resolve()
    if not root.is_dir():
        raise RunstudioError(
            f"source_directory {str(source_directory)!r} is not a folder; pass the folder that "
            "holds the script (default: the current one)"
        )
    rules = IgnoreRules.for_directory(root)
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        rel_here = here.relative_to(root).as_posix()
        rel_here = "" if rel_here == "." else rel_here + "/"
        dirs[:] = sorted(
            d
            for d in dirs
            if not rules.ignored(rel_here + d, is_dir=True) and not private_folder(here / d)
        )
        for name in sorted(files):
            relative = rel_here + name
            path = here / name
            if path.is_file() and not rules.ignored(relative, is_dir=False):
                yield path, relative


def pack_snapshot(
    source_directory: str | os.PathLike[str], *, limit: int | None = None
) -> IO[bytes]:
    """The source directory as a zip in a temporary file (rewound), or ``SnapshotTooLarge``
    before anything is compressed when the files add up to more than the limit."""
    limit = snapshot_limit() if limit is None else limit
    files = list(snapshot_files(source_directory))
    total = sum(path.stat().st_size for path, _ in files)
    if total > limit:
        biggest = sorted(files, key=lambda f: f[0].stat().st_size, reverse=True)[:3]
        names = ", ".join(f"{rel} ({p.stat().st_size / 1e6:.1f} MB)" for p, rel in biggest)
        raise SnapshotTooLarge(
            f"the snapshot of {str(source_directory)!r} is {total / 1e6:.1f} MB in "
            f"{len(files)} files, over the {limit / 1e6:.1f} MB limit; nothing was uploaded. "
            f"The biggest: {names}. List data and outputs in a .runstudioignore file "
            "(gitignore syntax) in the source directory, or keep them outside it."
        )
    out = tempfile.TemporaryFile()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, relative in files:
            archive.write(path, relative)
    out.seek(0)
    return out


def submit(
    client: Client,
    *,
    workspace: str,
    experiment: str,
    config: ScriptRunConfig,
    tags: Mapping[str, str | None] | None = None,
    parent_run_id: str | None = None,
) -> dict[str, Any]:
    """Packs and uploads; returns the new run's details (status Queued)."""
    body = config.submission()
    if tags:
        body["tags"] = {**body.get("tags", {}), **dict(tags)}
    if parent_run_id:
        body["parent_run_id"] = parent_run_id
    with pack_snapshot(config.source_directory) as archive:
        details = client.call(
            "POST",
            f"/workspaces/{quote_segment(workspace)}/experiments/{quote_segment(experiment)}"
            "/submit",
            data={"config": json.dumps(body)},  # type: ignore[arg-type]
            files={"snapshot": ("snapshot.zip", archive, "application/zip")},
        )
    _say_if_unserved(client, workspace=workspace, target=config.target)
    return details


def _say_if_unserved(client: Client, *, workspace: str, target: str) -> None:
    """One line on stderr when no worker serves the target now: the run would wait Queued
    with nothing said (a team's app hosts run `serve --local-workers 0`, so `local`, the
    default target, has no worker there). Best effort: any error here says nothing."""
    from runs.sdk.spool import say

    try:
        found = client.get(
            f"/workspaces/{quote_segment(workspace)}/compute/{quote_segment(target)}"
        )
    except RunstudioError:
        return
    if any(worker.get("alive") for worker in found.get("workers") or ()):
        return
    how = (
        "`runstudio serve` starts them, unless run with --local-workers 0"
        if target == "local"
        else f"start one: runstudio worker -w {workspace} -c {target} --key … --server-url …"
    )
    say(
        f"no worker serves compute target {target!r} now; the run waits Queued until one "
        f"starts ({how})."
    )


@dataclass(frozen=True)
class ComputeTarget:
    """A workspace's compute target as ``ws.compute_targets[name]`` returns it; pass it (or its
    name) as ``ScriptRunConfig(compute_target=...)``."""

    name: str
    capacity: int = 1
    description: str = ""
    workers: tuple[dict[str, Any], ...] = ()
    active_runs: int = 0
    queued_runs: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ComputeTarget:
        return cls(
            name=data["name"],
            capacity=int(data.get("capacity") or 1),
            description=data.get("description") or "",
            workers=tuple(data.get("workers") or ()),
            active_runs=int(data.get("active_runs") or 0),
            queued_runs=int(data.get("queued_runs") or 0),
        )
