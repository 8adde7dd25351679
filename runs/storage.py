"""Run files on Django storage: a tree per run under `runs/<run_id>/`.

The `RunFile` table indexes the tree so listings never walk the storage (which may be a
bucket). On the filesystem backend writes and appends stream to disk; other backends get a
read-modify-write append, which is correct but slow for large logs.
"""

import io
import os
import posixpath
import re
from collections.abc import Iterable, Iterator
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
