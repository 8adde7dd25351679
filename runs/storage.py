"""Run files on Django storage: a tree per run under `runs/<run_id>/`.

The `RunFile` table indexes the tree so listings never walk the storage (which may be a
bucket). A file is written complete or not at all: the body goes to a temporary file first,
outside any database transaction, is checked against its announced size and the limit, and
only then is moved into place (an atomic rename on the filesystem backend, one whole-object
save on others) and indexed in one short transaction. On the filesystem backend every path is
opened component by component without following symlinks, and only regular files are read:
a symlink or a special file planted in the tree is never followed, served, listed or zipped.
"""

import contextlib
import errno
import fcntl
import io
import os
import posixpath
import re
import shutil
import stat
import tempfile
import time
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from runs import limits
from runs.errors import Conflict, InvalidInput, NotFound, TooLarge
from runs.models import Run, RunFile

# Control characters, NUL, backslash, and lone surrogates (they cannot be stored as UTF-8).
_SEGMENT_BAD = re.compile(r"[\x00-\x1f\x7f\\\ud800-\udfff]")
CHUNK = 1024 * 1024
# Bodies are written here first, inside the storage's own folder so the final rename stays on
# one filesystem (and is atomic). Run trees live under `runs/`, so no run path can reach it.
INCOMING = ".incoming"


def check_path(path: str, *, field: str = "path") -> str:
    """A relative path inside the run's tree, NFC-normalised (so a name typed on macOS and on
    Linux is one file): no '..', no absolute path, no NUL, no segment over 255 bytes."""
    if not isinstance(path, str) or not path:
        raise InvalidInput(f"{field}: a file path is required.", field=field)
    if len(path) > limits.FILE_PATH_MAX_LENGTH:
        raise InvalidInput(
            f"{field}: the path is longer than {limits.FILE_PATH_MAX_LENGTH} characters.",
            field=field,
        )
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise InvalidInput(
            f"{field}: {path!r} is absolute; give a path inside the run.", field=field
        )
    segments = path.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise InvalidInput(
                f"{field}: {path!r} has an empty, '.' or '..' segment; paths stay inside the run.",
                field=field,
            )
        if _SEGMENT_BAD.search(segment):
            raise InvalidInput(
                f"{field}: {path!r} contains a control character, NUL or backslash.", field=field
            )
    path = unicodedata.normalize("NFC", path)
    for segment in path.split("/"):
        size = len(segment.encode())
        if size > limits.FILE_PATH_SEGMENT_MAX_BYTES:
            raise InvalidInput(
                f"{field}: {path!r} has a folder or file name of {size} bytes; each name is at "
                f"most {limits.FILE_PATH_SEGMENT_MAX_BYTES} bytes (UTF-8).",
                field=field,
            )
    return path


def storage_name(run: Run, path: str) -> str:
    return posixpath.join("runs", run.run_id, path)


# --- The filesystem backend, without following symlinks ------------------------------------


class NotARegularFile(FileNotFoundError):
    """A symlink, folder or special file stands where a run file should be: never followed
    or read (a FileNotFoundError, so every reader treats it as missing)."""


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _root() -> str | None:
    """The storage's folder, or None for a backend without local paths (object storage)."""
    try:
        return default_storage.path("")
    except NotImplementedError:
        return None


def _open_dir(root: str, parts: list[str], *, create: bool = False) -> int:
    """A descriptor of root/parts…, each part opened with O_NOFOLLOW under the previous one,
    so no symlink anywhere below the root is followed (the root itself is the admin's).
    Raises NotADirectoryError/OSError(ELOOP) when a part is a file or a symlink."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            child = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_regular(root: str, name: str) -> BinaryIO:
    *parts, last = name.split("/")
    try:
        dir_fd = _open_dir(root, parts)
    except (NotADirectoryError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise NotARegularFile(errno.ENOENT, "a symlink or file stands in the path", name) from exc
    try:
        # lstat first: opening a fifo or a device could block or act; O_NOFOLLOW and the
        # fstat below close the window between the two.
        if not stat.S_ISREG(os.stat(last, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            raise NotARegularFile(errno.ENOENT, "not a regular file", name)
        try:
            fd = os.open(
                last, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
            )
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise NotARegularFile(errno.ENOENT, "not a regular file", name) from exc
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotARegularFile(errno.ENOENT, "not a regular file", name)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def local_open_regular(*, root: str, path: str) -> BinaryIO:
    """`root/path` on the local disk for reading, through no symlink below `root` and only if
    it is a regular file (FileNotFoundError otherwise): for the worker reading what a script
    left in its working folder, which may hold links to the server's own files."""
    return _open_regular(root, path)


def _open_stored(name: str) -> BinaryIO:
    """A stored file for reading; FileNotFoundError when it is missing, a symlink, a folder
    or a special file."""
    root = _root()
    if root is None:  # object storage has no symlinks
        return default_storage.open(name, "rb")
    return _open_regular(root, name)


def _open_indexed(run: Run, path: str) -> BinaryIO:
    try:
        return _open_stored(storage_name(run, path))
    except FileNotFoundError:
        raise NotFound(
            f"Run {run.run_id}'s file {path!r} is missing from storage or is not a regular "
            "file (symlinks and special files are never served).",
            field="path",
        ) from None


def _is_regular(root: str, name: str, folders: dict[str, bool]) -> bool:
    """Whether `name` is a regular file reached through real folders; `folders` caches the
    verdict per folder across one listing."""
    folder, last = posixpath.split(name)
    if folder not in folders:
        try:
            fd = _open_dir(root, folder.split("/"))
        except OSError:
            folders[folder] = False
        else:
            os.close(fd)
            folders[folder] = True
    if not folders[folder]:
        return False
    try:
        return stat.S_ISREG(os.lstat(os.path.join(root, folder, last)).st_mode)
    except OSError:
        return False


def run_files_servable(*, run: Run, files: Iterable[RunFile]) -> list[RunFile]:
    """The indexed files that are regular files in storage: a symlink or special file planted
    in the tree is left out of listings (one lstat per file on the filesystem backend)."""
    files = list(files)
    root = _root()
    if root is None:
        return files
    folders: dict[str, bool] = {}
    return [f for f in files if _is_regular(root, storage_name(run, f.path), folders)]


# --- Writing: aside first, checked, then moved into place and indexed ----------------------


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
    root = _root()
    temp_path = None
    if root is not None:
        incoming = os.path.join(root, INCOMING)
        os.makedirs(incoming, exist_ok=True)
        _sweep_incoming(incoming)
        fd, temp_path = tempfile.mkstemp(dir=incoming, prefix="upload-")
        out = os.fdopen(fd, "w+b")
    else:
        out = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    try:
        written = _read_body(stream, out, size=size)
        out.flush()
        if temp_path is not None and durable:
            os.fsync(out.fileno())  # after a crash the renamed file is whole, not empty
        out.seek(0)
        yield _Spooled(file=out, path=temp_path, size=written)
    finally:
        out.close()
        if temp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_path)


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
        dir_fd = _open_dir(root, parts, create=True)
    except OSError as exc:
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


def _place_object(name: str, run: Run, path: str, spooled: _Spooled, *, append: bool) -> int:
    """Object storage: one whole-object save (atomic on S3). An append is read-modify-write."""
    source = spooled.file
    combined = None
    if append and RunFile.objects.filter(run=run, path=path).exists():
        combined = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
        with contextlib.suppress(FileNotFoundError), default_storage.open(name, "rb") as old:
            shutil.copyfileobj(old, combined, CHUNK)
        shutil.copyfileobj(source, combined, CHUNK)
        combined.seek(0)
        source = combined
    try:
        size = source.seek(0, os.SEEK_END)
        source.seek(0)
        saved = default_storage.save(name, File(source, name=posixpath.basename(name)))
        if saved != name:  # a backend that keeps both copies: the new one takes the name
            default_storage.delete(name)
            source.seek(0)
            default_storage.save(name, File(source, name=posixpath.basename(name)))
            default_storage.delete(saved)
        return size
    finally:
        if combined is not None:
            combined.close()


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
        root = _root()
        if root is not None:
            return _place_local(
                root, name, path, spooled, append=append, indexed=indexed, index=index
            )
        return index(_place_object(name, run, path, spooled, append=append))


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
    root = _root()
    if root is not None:
        incoming = os.path.join(root, INCOMING)
        os.makedirs(incoming, exist_ok=True)
        folder = tempfile.mkdtemp(dir=incoming, prefix="tree-")
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
    root = _root()
    if staged.in_storage and root is not None:
        parts = storage_name(run, folder).split("/")
        parent = _open_dir(root, parts[:-1], create=True)
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
    root = _root()
    tree = storage_name(run, "").rstrip("/")
    if root is not None:
        try:
            runs_fd = _open_dir(root, ["runs"])
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
        for record in RunFile.objects.filter(run=run).only("path"):
            default_storage.delete(storage_name(run, record.path))
    RunFile.objects.filter(run=run).delete()
    return count


def run_file_get(*, run: Run, path: str) -> RunFile:
    path = check_path(path)
    record = RunFile.objects.filter(run=run, path=path).first()
    if record is None:
        raise NotFound(f"Run {run.run_id} has no file {path!r}.", field="path")
    return record


def run_file_read(
    *, run: Run, path: str, offset: int = 0, length: int | None = None
) -> tuple[bytes, int]:
    """Reads `length` bytes from `offset` without loading the rest; returns (data, file size).
    An offset at or past the end reads nothing (a tail that is up to date)."""
    record = run_file_get(run=run, path=path)
    if offset < 0:
        raise InvalidInput("offset: must be 0 or more.", field="offset")
    length = limits.MAX_FILE_READ_BYTES if length is None else length
    if not 0 <= length <= limits.MAX_FILE_READ_BYTES:
        raise InvalidInput(
            f"length: must be between 0 and {limits.MAX_FILE_READ_BYTES}.", field="length"
        )
    with _open_indexed(run, record.path) as f:
        size = f.seek(0, os.SEEK_END)
        if offset >= size:
            return b"", size
        f.seek(offset)
        return f.read(length), size


def run_file_open(*, run: Run, path: str) -> BinaryIO:
    """The indexed file, open for reading; NotFound when it is not a regular file in storage."""
    record = run_file_get(run=run, path=path)
    return _open_indexed(run, record.path)


def run_file_iter(*, run: Run, path: str) -> Iterator[bytes]:
    """The whole file in chunks, for streaming downloads. The file is opened now, so a
    missing file or a symlink is a NotFound before any response starts."""
    record = run_file_get(run=run, path=path)
    return _iter_chunks(_open_indexed(run, record.path))


def _iter_chunks(source: BinaryIO) -> Iterator[bytes]:
    with source:
        while chunk := source.read(CHUNK):
            yield chunk


# --- Reading text by pages and streaming the whole tree (the studio's Outputs + logs) -------

TEXT_PAGE_BYTES = 64 * 1024
LINE_COUNT_MAX_BYTES = 64 * 1024 * 1024  # count lines before a page only up to here
ZIP64_FROM_BYTES = 1024 * 1024 * 1024  # entries that may pass 2 GiB while zipping


@dataclass(frozen=True)
class TextPage:
    """Whole lines of a file from byte `start` to byte `end` (the next page's offset)."""

    path: str
    start: int
    end: int
    size: int
    lines: list[str]

    @property
    def at_start(self) -> bool:
        return self.start == 0

    @property
    def at_end(self) -> bool:
        return self.end >= self.size


def run_file_page(
    *,
    run: Run,
    path: str,
    offset: int = 0,
    until: int | None = None,
    complete_lines: bool = False,
    page_bytes: int = TEXT_PAGE_BYTES,
) -> TextPage:
    """One page of a text file read by offset, never the whole file. A page starts after a
    newline (an offset inside a line moves to the next line) and ends after one, unless a
    single line is longer than the page. `until` caps the end (for the previous page);
    `complete_lines` holds back an unfinished last line (a live log tail)."""
    record = run_file_get(run=run, path=path)
    offset = max(0, min(offset, record.size))
    limit = page_bytes if until is None else max(0, min(page_bytes, until - offset))
    lead = 1 if offset > 0 else 0  # the byte before tells whether offset starts a line
    data, size = run_file_read(run=run, path=path, offset=offset - lead, length=limit + lead)
    start = offset
    if lead:
        cut = 0 if data[:1] == b"\n" else data.find(b"\n", 1)
        if cut > 0:
            start = offset + cut
        data = data[cut + 1 :] if cut >= 0 else data[1:]
    if start + len(data) < size or complete_lines:
        newline = data.rfind(b"\n")
        if newline >= 0:
            data = data[: newline + 1]
        elif complete_lines:
            data = b""
    text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return TextPage(path=path, start=start, end=start + len(data), size=size, lines=lines)


def run_file_line_count(*, run: Run, path: str, until: int) -> int | None:
    """Newlines before byte `until`, read in chunks; None past LINE_COUNT_MAX_BYTES."""
    if until > LINE_COUNT_MAX_BYTES:
        return None
    count = 0
    with _open_indexed(run, check_path(path)) as f:
        while until > 0 and (chunk := f.read(min(CHUNK, until))):
            count += chunk.count(b"\n")
            until -= len(chunk)
    return count


class _ZipSink(io.RawIOBase):
    """An unseekable file that keeps what zipfile writes until the generator takes it."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def run_files_zip(*, run: Run, files: Iterable[RunFile]) -> Iterator[bytes]:
    """The run's files as a zip, produced chunk by chunk: each file is read CHUNK bytes at a
    time and the archive never sits in memory. zipfile writes data descriptors on an
    unseekable sink, so sizes need not be known up front. Entries are the run's paths."""
    sink = _ZipSink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for record in files:
            try:
                source = _open_stored(storage_name(run, record.path))
            except FileNotFoundError:  # gone from storage, or a symlink: leave it out
                continue
            stamp = timezone.localtime(record.updated_at).timetuple()[:6]
            info = zipfile.ZipInfo(record.path, date_time=max(stamp, (1980, 1, 1, 0, 0, 0)))
            info.compress_type = zipfile.ZIP_DEFLATED
            zip64 = record.size >= ZIP64_FROM_BYTES
            with source, archive.open(info, "w", force_zip64=zip64) as out:
                while chunk := source.read(CHUNK):
                    out.write(chunk)
                    if data := sink.take():
                        yield data
            yield sink.take()
    yield sink.take()
