"""Writing run files: aside first, checked, then moved into place and indexed. The low-level
helpers (paths, the no-symlink local opens) and the reads stay in runs/storage/.

A file is written complete or not at all: the body goes to a temporary file, outside any
database transaction, is checked against its announced size and the limit, and only then is
moved into place (an atomic rename on the filesystem backend, one whole-object save on
others) and indexed in one short transaction.
"""

import contextlib
import errno
import fcntl
import hashlib
import os
import posixpath
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import BinaryIO

from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.tasks import task
from django.utils import timezone

from runs import limits
from runs.errors import Conflict, InvalidInput, NotFound, TooLarge
from runs.models import Run, RunFile, RunFilePart
from runs.storage import objects
from runs.storage.local import NotARegularFile, open_dir, storage_root
from runs.storage.paths import CHUNK, INCOMING, check_path, storage_name


@dataclass
class _Spooled:
    file: BinaryIO
    path: str | None  # on the filesystem backend, the temporary file's name under INCOMING
    size: int


def _chunks(stream: BinaryIO | Iterable[bytes], size: int | None) -> Iterator[bytes]:
    if not hasattr(stream, "read"):
        yield from stream
        return
    left = size
    while left is None or left > 0:
        chunk = stream.read(CHUNK if left is None else min(CHUNK, left))
        if not chunk:
            return
        if left is not None:
            left -= len(chunk)
        yield chunk


def _read_body(stream: BinaryIO | Iterable[bytes], out: BinaryIO, *, size: int | None) -> int:
    """Copies the body; with `size` (Content-Length) reads exactly that many bytes, else to
    the end. Over the limit or short of `size` raises before anything is placed."""
    limit = limits.MAX_FILE_UPLOAD_BYTES
    written = 0
    chunks = _chunks(stream, size)
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            break
        except Exception as exc:  # the server's reader gave up: a broken or cut-off body
            raise InvalidInput(
                f"body: the upload broke off after {written} bytes "
                f"({type(exc).__name__}); nothing was stored.",
                field="body",
            ) from exc
        written += len(chunk)
        if written > limit:
            raise TooLarge(
                f"body: the upload is over the {limit}-byte limit (MAX_FILE_UPLOAD_BYTES); "
                "nothing was stored. Split the file or store it elsewhere.",
                field="body",
            )
        out.write(chunk)
    if size is not None and written != size:
        raise InvalidInput(
            f"body: the upload ended after {written} of the {size} bytes announced in "
            "Content-Length; nothing was stored.",
            field="body",
        )
    return written


INCOMING_STALE_SECONDS = 24 * 3600


def _sweep_incoming(incoming: str) -> None:
    """Removes temporary files a killed process left behind (a live upload keeps touching its
    own); the folder holds about one file per upload in flight, so the scan is cheap."""
    stale = time.time() - INCOMING_STALE_SECONDS
    with contextlib.suppress(OSError), os.scandir(incoming) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_mtime < stale:
                    os.unlink(entry.path)


def _file_mode() -> int:
    """The mode Django's FileSystemStorage gives a saved file (FILE_UPLOAD_PERMISSIONS)."""
    return getattr(default_storage, "file_permissions_mode", None) or 0o644


@contextlib.contextmanager
def _spooled(
    stream: BinaryIO | Iterable[bytes], *, size: int | None, durable: bool = True
) -> Iterator[_Spooled]:
    """The whole body in a temporary file, removed on the way out (unless moved into place)."""
    if size is not None and size > limits.MAX_FILE_UPLOAD_BYTES:
        raise TooLarge(
            f"body: the upload is {size} bytes; the limit is {limits.MAX_FILE_UPLOAD_BYTES} "
            "(MAX_FILE_UPLOAD_BYTES). Nothing was stored.",
            field="body",
        )
    root = storage_root()
    temp_path = None
    if root is not None:
        incoming = os.path.join(root, INCOMING)
        os.makedirs(incoming, exist_ok=True)
        _sweep_incoming(incoming)
        fd, temp_path = tempfile.mkstemp(dir=incoming, prefix="upload-")
        os.fchmod(fd, _file_mode())  # mkstemp makes 0600; the file keeps this mode in place
        out = os.fdopen(fd, "w+b")
    else:
        out = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    spooled = _Spooled(file=out, path=temp_path, size=0)
    try:
        spooled.size = _read_body(stream, out, size=size)
        out.flush()
        if temp_path is not None and durable:
            os.fsync(out.fileno())  # after a crash the renamed file is whole, not empty
        out.seek(0)
        yield spooled
    finally:
        out.close()
        if spooled.path is not None:  # not moved into place
            with contextlib.suppress(FileNotFoundError):
                os.unlink(spooled.path)


def _clash(run: Run, path: str) -> str | None:
    """Why `path` cannot be a file given the run's indexed tree, or None."""
    parts = path.split("/")
    parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
    blocker = RunFile.objects.filter(run=run, path__in=parents).values_list("path", flat=True)
    if parents and (found := blocker.first()):
        return f"{found!r} is a file, so it cannot be a folder"
    if RunFile.objects.filter(run=run, path__startswith=path + "/").exists():
        return f"{path!r} is a folder"
    return None


def _conflict(path: str, why: str) -> Conflict:
    return Conflict(f"path: cannot write {path!r}: {why}.", field="path")


def _place_local(
    root: str,
    name: str,
    path: str,
    spooled: _Spooled,
    *,
    append: bool,
    indexed: Callable[[], bool],
    index: Callable[[int], RunFile],
) -> RunFile:
    """Moves the spooled body into place (or appends it) and indexes it, holding an exclusive
    lock on the folder so the size indexed is the size of what was placed."""
    *parts, last = name.split("/")
    try:
        dir_fd = open_dir(root, parts, create=True)
    except OSError as exc:
        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        raise _conflict(path, "a file or a symlink stands where a folder is needed") from exc
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)
        try:
            current = os.stat(last, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        if current is not None and stat.S_ISDIR(current.st_mode):
            try:  # an empty folder left by an earlier failed write does not count
                os.rmdir(last, dir_fd=dir_fd)
            except OSError:
                raise _conflict(path, f"{path!r} is a folder") from None
            current = None
        # Append only onto a file the index knows (a stray unindexed file is replaced), asked
        # under the lock so two first appends to a new log do not both create it.
        if append and current is not None and stat.S_ISREG(current.st_mode) and indexed():
            size = _append_local(dir_fd, last, spooled)
        else:
            # Replaces a planted symlink or special file itself, never what it points to.
            os.replace(spooled.path, last, src_dir_fd=None, dst_dir_fd=dir_fd)
            spooled.path = None
            size = spooled.size
        return index(size)
    finally:
        os.close(dir_fd)


def _append_local(dir_fd: int, last: str, spooled: _Spooled) -> int:
    fd = os.open(last, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotARegularFile(errno.ENOENT, "not a regular file", last)
        before = os.fstat(fd).st_size
        try:
            while chunk := spooled.file.read(CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
        except BaseException:
            os.ftruncate(fd, before)  # an append that fails leaves the log as it was
            raise
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


@contextlib.contextmanager
def _replace_lock(run: Run, path: str) -> Iterator[None]:
    """Orders replaces of one file on object storage from the PUT to the commit, as the flock
    does on the filesystem: two racing PUTs could otherwise leave one's object and the other's
    size. PostgreSQL (a team's many hosts): a session advisory lock, which holds no transaction
    open while the body uploads. SQLite (one host): an flock on a lock file under the data
    directory (a lock, not run data)."""
    digest = hashlib.blake2b(f"{run.pk}\0{path}".encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [key])
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        return
    folder = os.path.join(settings.DATA_DIR, "locks")
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, f"file-{key % 1024}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _place_object(name: str, run: Run, path: str, spooled: _Spooled, *, append: bool) -> RunFile:
    """Object storage. A replace is one whole-object PUT (atomic on S3) under the tree's own
    name, then the index. An append is one new part object and one RunFilePart row: the bytes
    before it are never read or rewritten (docs/architecture.md, "Run files on S3"). The part
    takes its place at the file's end inside the transaction that locks the file's index row,
    so concurrent appends from any number of processes each get their own range, in commit
    order; a part whose transaction fails is deleted again."""
    if not append:
        with _replace_lock(run, path):
            objects.object_put(name, spooled.file)
            with transaction.atomic():
                if why := _clash(run, path):
                    raise _conflict(path, why)
                record, _ = RunFile.objects.update_or_create(
                    run=run,
                    path=path,
                    defaults={"size": spooled.size, "updated_at": timezone.now()},
                )
                stale = list(record.parts.values_list("key", flat=True))
                record.parts.all().delete()
        objects.object_delete(stale)
        return record
    key = objects.part_name(run.run_id) if spooled.size else None
    if key is not None:
        objects.object_put(key, spooled.file)
    try:
        with transaction.atomic():
            if why := _clash(run, path):
                raise _conflict(path, why)
            record, _ = RunFile.objects.get_or_create(run=run, path=path)
            record = RunFile.objects.select_for_update().get(pk=record.pk)
            start = record.size
            if key is not None:
                RunFilePart.objects.create(file=record, start=start, size=spooled.size, key=key)
                # A read GETs each part it covers, so a log printed a line a second would cost
                # every page view hundreds of GETs by the hour: join them as they gather, not
                # only when the run ends.
                if record.parts.count() % limits.APPEND_PARTS_BEFORE_JOIN == 0:
                    transaction.on_commit(partial(_queue_tail_join, run.pk), robust=True)
            record.size = start + spooled.size
            record.updated_at = timezone.now()
            record.save(update_fields=["size", "updated_at"])
        return record
    except BaseException:
        if key is not None:
            objects.object_delete([key])
        raise


def run_file_write(
    *,
    run: Run,
    path: str,
    stream: BinaryIO | Iterable[bytes],
    append: bool = False,
    size: int | None = None,
    durable: bool = True,
) -> RunFile:
    """Stores `stream` at `path` (or appends it), complete or not at all.

    `size` is the announced length (Content-Length): a body that ends short of it, breaks off,
    or passes MAX_FILE_UPLOAD_BYTES changes nothing. No database transaction is open while the
    body streams; the index is written in one short transaction after the file is in place.
    `durable=False` skips the fsync (~4 ms a file here) for bulk writes whose loss on a power
    cut is caught elsewhere (a snapshot's files: the run fails visibly at execution)."""
    path = check_path(path)
    if why := _clash(run, path):
        raise _conflict(path, why)
    name = storage_name(run, path)

    def index(size: int) -> RunFile:
        with transaction.atomic():
            if why := _clash(run, path):
                raise _conflict(path, why)
            record, _ = RunFile.objects.update_or_create(
                run=run, path=path, defaults={"size": size, "updated_at": timezone.now()}
            )
        return record

    def indexed() -> bool:
        return RunFile.objects.filter(run=run, path=path).exists()

    # An append's temporary file is copied, not renamed: no fsync needed for it.
    with _spooled(stream, size=size, durable=durable and not append) as spooled:
        root = storage_root()
        if root is not None:
            return _place_local(
                root, name, path, spooled, append=append, indexed=indexed, index=index
            )
        return _place_object(name, run, path, spooled, append=append)


@dataclass
class StagedTree:
    """Files written aside and checked, waiting to become a folder of some run's tree."""

    folder: str  # a local folder holding them, by their paths
    files: list[tuple[str, int]]  # (path inside the folder, size)
    in_storage: bool  # under the storage's INCOMING, so one rename places it all


@contextlib.contextmanager
def tree_staged(members: Iterable[tuple[str, BinaryIO, int]]) -> Iterator[StagedTree]:
    """Writes (path, stream, declared size) members into a fresh temporary folder, each read
    whole and checked against its size, outside any transaction; removes what is left of it
    on the way out. Paths must already be checked (check_path) and free of clashes."""
    root = storage_root()
    if root is not None:
        incoming = os.path.join(root, INCOMING)
        os.makedirs(incoming, exist_ok=True)
        folder = tempfile.mkdtemp(dir=incoming, prefix="tree-")
        os.chmod(folder, getattr(default_storage, "directory_permissions_mode", None) or 0o755)
    else:
        folder = tempfile.mkdtemp(prefix="runstudio-tree-")
    try:
        staged = StagedTree(folder=folder, files=[], in_storage=root is not None)
        for path, stream, size in members:
            target = os.path.join(folder, *path.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "xb") as out:
                try:
                    written = _read_body(stream, out, size=size)
                except InvalidInput as exc:
                    raise InvalidInput(
                        f"{path!r}: {exc.message.removeprefix('body: ')}", field=exc.field
                    ) from exc
            staged.files.append((path, written))
        yield staged
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_files_place_tree(*, run: Run, folder: str, staged: StagedTree) -> list[RunFile]:
    """Makes a staged tree the run's `folder/` (which must not exist yet) and indexes it with
    one bulk insert. On the filesystem backend that is one rename however many files; call
    it inside the transaction that creates the run, which then holds the database's write
    lock only for the rename and the insert."""
    folder = check_path(folder, field="folder")
    root = storage_root()
    if staged.in_storage and root is not None:
        parts = storage_name(run, folder).split("/")
        parent = open_dir(root, parts[:-1], create=True)
        try:
            os.rename(staged.folder, parts[-1], dst_dir_fd=parent)
        finally:
            os.close(parent)
    else:
        for path, _ in staged.files:
            with open(os.path.join(staged.folder, *path.split("/")), "rb") as f:
                name = storage_name(run, f"{folder}/{path}")
                default_storage.save(name, File(f, name=posixpath.basename(name)))
    now = timezone.now()
    return RunFile.objects.bulk_create(
        RunFile(run=run, path=f"{folder}/{path}", size=size, created_at=now, updated_at=now)
        for path, size in staged.files
    )


def run_files_delete_all(*, run: Run) -> int:
    """Removes every file of the run from storage and the index; returns how many were
    indexed. Symlinks in the tree are removed, never followed. Call it after the run's
    deletion is committed (or before it), not inside a transaction that may roll back."""
    count = RunFile.objects.filter(run=run).count()
    root = storage_root()
    tree = storage_name(run, "").rstrip("/")
    if root is not None:
        try:
            runs_fd = open_dir(root, ["runs"])
        except FileNotFoundError:
            runs_fd = None
        if runs_fd is not None:
            try:
                mode = os.stat(run.run_id, dir_fd=runs_fd, follow_symlinks=False).st_mode
            except FileNotFoundError:
                mode = None
            finally:
                os.close(runs_fd)
            if mode is not None and stat.S_ISDIR(mode):
                # rmtree works through descriptors here: it removes symlinks, never follows.
                shutil.rmtree(os.path.join(root, tree))
            elif mode is not None:
                os.unlink(os.path.join(root, tree))
    else:
        # By prefix, a listing page at a time: also takes objects the index never knew (a
        # part whose append failed half-way, a head left by compaction).
        objects.object_delete_prefix(tree + "/")
        objects.object_delete_prefix(posixpath.join(objects.APPENDS, run.run_id) + "/")
    RunFile.objects.filter(run=run).delete()
    return count


def run_files_delete(*, run: Run, path: str) -> int:
    """Removes the file at `path`, or every file under the folder `path/`, from storage and
    the index (MLflow's delete_artifacts); returns how many went. NotFound when nothing is
    indexed there. Each file is unlinked through its folder's descriptor, opened without
    following symlinks, so a link planted in the tree is removed, never followed."""
    path = check_path(path)
    records = list(
        RunFile.objects.filter(run=run, path=path)
        | RunFile.objects.filter(run=run, path__startswith=path.rstrip("/") + "/")
    )
    if not records:
        raise NotFound(f"path: the run has no file or folder {path!r}.", field="path")
    root = storage_root()
    if root is None:
        parts = RunFilePart.objects.filter(file__in=records).values_list("key", flat=True)
        objects.object_delete([storage_name(run, r.path) for r in records] + list(parts))
    for record in records:
        name = storage_name(run, record.path)
        if root is None:
            continue
        *folders, last = name.split("/")
        try:
            folder_fd = open_dir(root, folders)
        except OSError:  # already gone, or a symlink in the way: nothing of ours to remove
            continue
        try:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.unlink(last, dir_fd=folder_fd)
        finally:
            os.close(folder_fd)
    RunFile.objects.filter(pk__in=[r.pk for r in records]).delete()
    return len(records)


# A run that ends with appended files on object storage has them joined this long after: a
# worker compacts its own run's log as it releases the run (runs/execution.py), so by then the
# task usually finds nothing left to join; a log a client appended through the API, or a run
# whose worker died, is joined by the task.
COMPACT_AFTER = timedelta(seconds=60)


def on_run_ended(*, run: Run) -> None:
    """Called as a run reaches a final status (in its transaction): on object storage, if a
    file of the run has appended parts past its start, a task on the app hosts' own queue
    (RUNSTUDIO_ALERTS_QUEUE, which every `runstudio serve` works) joins them once the change
    commits. robust: a queue that cannot take the task leaves the parts, which read correctly."""
    if not objects.is_object_storage():
        return
    if not RunFilePart.objects.filter(file__run=run, start__gt=0).exists():
        return
    transaction.on_commit(partial(_queue_compaction, run.pk), robust=True)


def _queue_compaction(run_pk: int) -> None:
    run_files_compact_task.using(
        queue_name=settings.RUNSTUDIO_ALERTS_QUEUE, run_after=timezone.now() + COMPACT_AFTER
    ).enqueue(run_pk)


def _queue_tail_join(run_pk: int) -> None:
    run_files_join_tails_task.using(queue_name=settings.RUNSTUDIO_ALERTS_QUEUE).enqueue(run_pk)


@task
def run_files_join_tails_task(run_pk: int) -> int:
    """run_files_join_tails for a run whose parts gathered; 0 if it was deleted meanwhile."""
    run = Run.objects.filter(pk=run_pk).first()
    return 0 if run is None else run_files_join_tails(run=run)


def run_files_join_tails(*, run: Run) -> int:
    """While a run goes on: joins each file's trailing parts smaller than
    limits.APPEND_JOINED_PART_BYTES into one part, leaving the file's head and its bigger
    parts as they are, so a join costs about what was appended since the last one (joining
    the whole file each time would copy a 1 GiB log every 256 appends). A file ends as parts of
    at least that size and a small tail; the run's end joins it all (run_files_compact).
    Returns how many files were joined."""
    if not objects.is_object_storage():
        return 0
    joined = 0
    for record in RunFile.objects.filter(run=run, parts__isnull=False).distinct():
        parts = list(record.parts.order_by("start"))
        tail: list[RunFilePart] = []
        for part in reversed(parts):
            if part.size >= limits.APPEND_JOINED_PART_BYTES:
                break
            tail.insert(0, part)
        if len(tail) < 2:
            continue
        base = tail[0].start
        # Re-based to 0: the joined object holds these bytes from its own start.
        segments = [objects.Segment(p.key, p.start - base, p.size) for p in tail]
        size = sum(p.size for p in tail)
        key = objects.part_name(run.run_id)
        objects.segments_join(segments, key)
        joined += _swap_parts(record, tail, key=key, start=base, size=size)
    return joined


def _swap_parts(
    record: RunFile, parts: list[RunFilePart], *, key: str, start: int, size: int
) -> bool:
    """Puts the joined object `key` (the file's bytes [start, start + size)) in place of
    `parts`, in one short transaction that first checks they are all still there, then deletes
    the objects that went. A replace or a join of the file meanwhile wins: `key` is dropped.
    Returns whether the parts were swapped."""
    with transaction.atomic():
        locked = RunFile.objects.select_for_update().filter(pk=record.pk).first()
        ids = [p.pk for p in parts]
        swapped = locked is not None and (
            RunFilePart.objects.filter(pk__in=ids).count() == len(ids)
        )
        if swapped:
            RunFilePart.objects.filter(pk__in=ids).delete()
            RunFilePart.objects.create(file=locked, start=start, size=size, key=key)
    objects.object_delete([p.key for p in parts] if swapped else [key])
    return swapped


@task
def run_files_compact_task(run_pk: int) -> int:
    """run_files_compact for a run that ended; 0 if it was deleted meanwhile."""
    run = Run.objects.filter(pk=run_pk).first()
    return 0 if run is None else run_files_compact(run=run)


def run_files_compact(*, run: Run) -> int:
    """On object storage, joins each appended file of the run (its head object and parts) into
    one object, so a finished log is read, zipped and downloaded from one object. Appends may
    go on meanwhile: only the parts seen at the start are replaced, in one short transaction
    that first checks they are all still there (a replace of the file meanwhile wins and the
    joined object is dropped). Returns how many files were compacted; a no-op on the
    filesystem backend, where an append is already in place."""
    if not objects.is_object_storage():
        return 0
    compacted = 0
    for record in RunFile.objects.filter(run=run, parts__isnull=False).distinct():
        parts = list(record.parts.order_by("start"))
        if len(parts) < 2 and (not parts or parts[0].start == 0):
            continue  # already one object
        end = parts[-1].start + parts[-1].size
        name = storage_name(run, record.path)
        segments = objects.file_segments(
            name=name, size=end, parts=[(p.key, p.start, p.size) for p in parts]
        )
        key = objects.part_name(run.run_id)
        objects.segments_join(segments, key)
        # A head object (the file's start, written whole before the appends) stays until the
        # file is replaced or the run deleted: deleting it here could race a replace's PUT.
        compacted += _swap_parts(record, parts, key=key, start=0, size=end)
    return compacted
