"""Finding text in a run's file by streaming it in chunks from an offset, never reading the
whole file at once and never more than LOG_SEARCH_SCAN_BYTES a call (the log viewer's Find)."""

from dataclasses import dataclass

from runs import limits
from runs.errors import InvalidInput
from runs.models import Run
from runs.storage.paths import CHUNK
from runs.storage.reads import run_file_open


@dataclass(frozen=True)
class FindResult:
    line_start: int | None  # the offset of the first matching line at or after `start`
    scanned_to: int  # where the scan stopped: the file's end, or the scan limit
    size: int

    @property
    def exhausted(self) -> bool:
        """The scan reached the file's end (a None line_start means: no more matches)."""
        return self.scanned_to >= self.size


def run_file_find(
    *, run: Run, path: str, text: str, start: int = 0, max_bytes: int | None = None
) -> FindResult:
    """The first line at or after byte `start` (an offset inside a line moves to the next line,
    as pages do) containing `text`, ignoring ASCII case."""
    if not isinstance(text, str) or not text or len(text) > limits.LOG_SEARCH_TEXT_MAX:
        raise InvalidInput(
            f"find: search for 1 to {limits.LOG_SEARCH_TEXT_MAX} characters (LOG_SEARCH_TEXT_MAX).",
            field="find",
        )
    needle = text.encode("utf-8").lower()
    budget = limits.LOG_SEARCH_SCAN_BYTES if max_bytes is None else max_bytes
    with run_file_open(run=run, path=path) as f:
        size = f.seek(0, 2)
        start = max(0, min(start, size))
        f.seek(start - 1 if start else 0)
        if start and f.read(1) != b"\n":
            # Mid-line: the search begins at the next line.
            while True:
                chunk = f.read(CHUNK)
                if not chunk:
                    return FindResult(None, size, size)
                newline = chunk.find(b"\n")
                if newline >= 0:
                    start += newline + 1
                    f.seek(start)
                    break
                start += len(chunk)
        pos, window, line_start = start, b"", start
        while pos + len(window) < min(size, start + budget):
            chunk = f.read(min(CHUNK, start + budget - pos - len(window)))
            if not chunk:
                break
            window += chunk
            found = window.lower().find(needle)
            if found >= 0:
                newline = window.rfind(b"\n", 0, found)
                return FindResult(pos + newline + 1 if newline >= 0 else line_start, pos, size)
            newline = window.rfind(b"\n")
            if newline >= 0:
                line_start = pos + newline + 1
            keep = len(needle) - 1  # a match may straddle two chunks
            drop = max(0, len(window) - keep)
            pos, window = pos + drop, window[drop:]
        return FindResult(None, pos + len(window), size)
