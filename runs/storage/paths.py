"""Run file paths: what a path inside a run's tree may be, and where it is stored."""

import posixpath
import re
import unicodedata

from runs import limits
from runs.errors import InvalidInput
from runs.models import Run

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
