"""Reading run files: whole, by range, by text page, the listing and the zip."""

import io
import os
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from django.utils import timezone

from runs import limits
from runs.errors import InvalidInput, NotFound
from runs.models import Run, RunFile, RunFilePart
from runs.storage.local import is_regular, open_stored, storage_root
from runs.storage.objects import JoinedReader, Segment, file_segments, is_object_storage
from runs.storage.paths import CHUNK, check_path, storage_name


def _parts_of(files: list[RunFile]) -> dict[int, list[tuple[str, int, int]]]:
    """Appended parts (name, start, size) by file id, in order, in one query."""
    parts: dict[int, list[tuple[str, int, int]]] = {}
    rows = RunFilePart.objects.filter(file__in=[f.pk for f in files]).order_by("file", "start")
    for file_id, key, start, size in rows.values_list("file_id", "key", "start", "size"):
        parts.setdefault(file_id, []).append((key, start, size))
    return parts


def _open_record(run: Run, record: RunFile, parts: list | None = None) -> BinaryIO:
    """The indexed file for reading. On object storage, its head object and appended parts
    joined, read by ranged GETs (never the whole object first)."""
    name = storage_name(run, record.path)
    if not is_object_storage():
        return open_stored(name)
    if parts is None:
        parts = _parts_of([record]).get(record.pk, [])
    segments = file_segments(name=name, size=record.size, parts=parts)
    return io.BufferedReader(JoinedReader(segments), buffer_size=CHUNK)


def _open_window(run: Run, record: RunFile, start: int, end: int) -> JoinedReader:
    """On object storage, bytes `start`..`end` of the file, loading only the part rows that
    overlap them (index range scans on (file, start)): a live tail of a log with tens of
    thousands of parts reads two or three rows and one or two objects, not every part."""
    name = storage_name(run, record.path)
    parts = RunFilePart.objects.filter(file=record)
    first = parts.order_by("start").values_list("start", flat=True).first()
    head = record.size if first is None else first
    segments = [Segment(name, 0, head)] if start < head else []
    if first is not None and end > head:
        columns = ("key", "start", "size")
        lead = parts.filter(start__lte=start).order_by("-start").values_list(*columns).first()
        rest = parts.filter(start__gt=start, start__lt=end).order_by("start")
        chosen = ([lead] if lead else []) + list(rest.values_list(*columns))
        segments += [Segment(*p) for p in chosen if p[2] > 0]
    return JoinedReader(segments, size=record.size, end=end)


def _open_indexed(run: Run, path: str, record: RunFile | None = None) -> BinaryIO:
    try:
        if record is None and not is_object_storage():
            return open_stored(storage_name(run, path))  # no query: the folder is the truth
        if record is None:
            record = RunFile.objects.filter(run=run, path=path).first()
        if record is None:
            raise FileNotFoundError(path)
        return _open_record(run, record)
    except FileNotFoundError:
        raise NotFound(
            f"Run {run.run_id}'s file {path!r} is missing from storage or is not a regular "
            "file (symlinks and special files are never served).",
            field="path",
        ) from None


def run_files_servable(*, run: Run, files: Iterable[RunFile]) -> list[RunFile]:
    """The indexed files that are regular files in storage: a symlink or special file planted
    in the tree is left out of listings (one lstat per file on the filesystem backend)."""
    files = list(files)
    root = storage_root()
    if root is None:
        return files
    folders: dict[str, bool] = {}
    return [f for f in files if is_regular(root, storage_name(run, f.path), folders)]


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
    if is_object_storage():
        size = record.size
        if offset >= size:
            return b"", size
        try:
            with _open_window(run, record, offset, offset + length) as f:
                f.seek(offset)
                return f.read(length), size
        except FileNotFoundError:  # an object of it went missing from the bucket
            raise NotFound(
                f"Run {run.run_id}'s file {path!r} is missing from storage.", field="path"
            ) from None
    with _open_indexed(run, record.path, record) as f:
        size = f.seek(0, os.SEEK_END)
        if offset >= size:
            return b"", size
        f.seek(offset)
        try:
            return f.read(length), size
        except FileNotFoundError:  # an object of it went missing from the bucket
            raise NotFound(
                f"Run {run.run_id}'s file {path!r} is missing from storage.", field="path"
            ) from None


def run_file_open(*, run: Run, path: str) -> BinaryIO:
    """The indexed file, open for reading; NotFound when it is not a regular file in storage."""
    record = run_file_get(run=run, path=path)
    return _open_indexed(run, record.path, record)


def run_file_iter(*, run: Run, path: str) -> Iterator[bytes]:
    """The whole file in chunks, for streaming downloads. The file is opened now, so a
    missing file or a symlink is a NotFound before any response starts."""
    record = run_file_get(run=run, path=path)
    return _iter_chunks(_open_indexed(run, record.path, record))


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


ZIP_SAMPLE_BYTES = 64 * 1024
ZIP_STORE_ABOVE_RATIO = 0.9


def _zip_method(sample: bytes) -> int:
    """DEFLATE unless the file's first bytes do not shrink (weights, images, archives): those
    are stored as they are. Deflating random-looking bytes runs at ~15-20 MB/s a core here and
    saves nothing, so a Download all of model weights would be bound by the CPU, not the
    disk or the bucket (bench/storage.py)."""
    if len(sample) < 1024:
        return zipfile.ZIP_DEFLATED
    packed = zlib.compressobj(1, zlib.DEFLATED, -15)
    size = len(packed.compress(sample)) + len(packed.flush())
    stored = size > ZIP_STORE_ABOVE_RATIO * len(sample)
    return zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED


def run_files_zip(*, run: Run, files: Iterable[RunFile]) -> Iterator[bytes]:
    """The run's files as a zip, produced chunk by chunk: each file is read CHUNK bytes at a
    time and the archive never sits in memory. zipfile writes data descriptors on an
    unseekable sink, so sizes need not be known up front. Entries are the run's paths."""
    sink = _ZipSink()
    files = list(files)
    parts = _parts_of(files) if is_object_storage() else {}
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for record in files:
            try:
                source = _open_record(run, record, parts.get(record.pk, []))
                head = source.peek(ZIP_SAMPLE_BYTES)  # a missing object is found here, early
            except FileNotFoundError:  # gone from storage, or a symlink: leave it out
                # On a bucket, maybe replaced since the rows above were read: once more from
                # its row as it is now.
                if not is_object_storage():
                    continue
                record = RunFile.objects.filter(pk=record.pk).first()
                try:
                    if record is None:
                        continue
                    source = _open_record(run, record)
                    head = source.peek(ZIP_SAMPLE_BYTES)
                except FileNotFoundError:
                    continue
            stamp = timezone.localtime(record.updated_at).timetuple()[:6]
            info = zipfile.ZipInfo(record.path, date_time=max(stamp, (1980, 1, 1, 0, 0, 0)))
            info.compress_type = _zip_method(head[:ZIP_SAMPLE_BYTES])
            zip64 = record.size >= ZIP64_FROM_BYTES
            with source, archive.open(info, "w", force_zip64=zip64) as out:
                while chunk := source.read(CHUNK):
                    out.write(chunk)
                    if data := sink.take():
                        yield data
            yield sink.take()
    yield sink.take()
