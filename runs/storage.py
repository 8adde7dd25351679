"""Run files on Django storage: a tree per run under `runs/<run_id>/`.

The `RunFile` table indexes the tree so listings never walk the storage (which may be a
bucket). On the filesystem backend writes and appends stream to disk; other backends get a
read-modify-write append, which is correct but slow for large logs.
"""

import io
import os
import posixpath
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from runs import limits
from runs.errors import InvalidInput, NotFound
from runs.models import Run, RunFile

_SEGMENT_BAD = re.compile(r"[\x00-\x1f\x7f\\]")
CHUNK = 1024 * 1024


def check_path(path: str, *, field: str = "path") -> str:
    """A relative path inside the run's tree: no '..', no absolute path, no NUL."""
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
    return path


def storage_name(run: Run, path: str) -> str:
    return posixpath.join("runs", run.run_id, path)


def _local_path(name: str) -> str | None:
    try:
        return default_storage.path(name)
    except NotImplementedError:
        return None


def _copy(stream: BinaryIO | Iterable[bytes], out: BinaryIO, *, limit: int) -> int:
    written = 0
    chunks = iter(lambda: stream.read(CHUNK), b"") if hasattr(stream, "read") else stream
    for chunk in chunks:
        written += len(chunk)
        if written > limit:
            raise InvalidInput(f"the upload is larger than {limit} bytes.", field="body")
        out.write(chunk)
    return written


@transaction.atomic
def run_file_write(*, run: Run, path: str, stream: BinaryIO, append: bool = False) -> RunFile:
    check_path(path)
    name = storage_name(run, path)
    record = RunFile.objects.select_for_update().filter(run=run, path=path).first()
    local = _local_path(name)
    if local is not None:
        os.makedirs(os.path.dirname(local), exist_ok=True)
        mode = "ab" if append and record is not None else "wb"
        with open(local, mode) as out:
            _copy(stream, out, limit=limits.MAX_FILE_UPLOAD_BYTES)
        size = os.path.getsize(local)
    else:  # pragma: no cover - object storage
        buffer = io.BytesIO()
        if append and record is not None and default_storage.exists(name):
            with default_storage.open(name, "rb") as existing:
                _copy(existing, buffer, limit=limits.MAX_FILE_UPLOAD_BYTES)
        _copy(stream, buffer, limit=limits.MAX_FILE_UPLOAD_BYTES)
        if default_storage.exists(name):
            default_storage.delete(name)
        buffer.seek(0)
        default_storage.save(name, File(buffer))
        size = buffer.getbuffer().nbytes
    if record is None:
        record = RunFile.objects.create(run=run, path=path, size=size)
    else:
        record.size = size
        record.updated_at = timezone.now()
        record.save(update_fields=["size", "updated_at"])
    return record


def run_file_get(*, run: Run, path: str) -> RunFile:
    check_path(path)
    record = RunFile.objects.filter(run=run, path=path).first()
    if record is None:
        raise NotFound(f"Run {run.run_id} has no file {path!r}.", field="path")
    return record


def run_file_read(
    *, run: Run, path: str, offset: int = 0, length: int | None = None
) -> tuple[bytes, int]:
    """Reads `length` bytes from `offset` without loading the rest; returns (data, file size)."""
    record = run_file_get(run=run, path=path)
    if offset < 0:
        raise InvalidInput("offset: must be 0 or more.", field="offset")
    length = limits.MAX_FILE_READ_BYTES if length is None else length
    if not 0 <= length <= limits.MAX_FILE_READ_BYTES:
        raise InvalidInput(
            f"length: must be between 0 and {limits.MAX_FILE_READ_BYTES}.", field="length"
        )
    with default_storage.open(storage_name(run, path), "rb") as f:
        f.seek(offset)
        data = f.read(length)
    return data, max(record.size, offset + len(data))


def run_file_iter(*, run: Run, path: str) -> Iterator[bytes]:
    """The whole file in chunks, for streaming downloads."""
    run_file_get(run=run, path=path)
    with default_storage.open(storage_name(run, path), "rb") as f:
        while chunk := f.read(CHUNK):
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
    with default_storage.open(storage_name(run, path), "rb") as f:
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
                source = default_storage.open(storage_name(run, record.path), "rb")
            except FileNotFoundError:  # indexed but gone from storage: leave it out
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
