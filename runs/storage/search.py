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
    as pages do) containing `text`, ignoring case the Unicode way (`str.casefold`, see
    `fold_spans`)."""
    if not isinstance(text, str) or not text or len(text) > limits.LOG_SEARCH_TEXT_MAX:
        raise InvalidInput(
            f"find: search for 1 to {limits.LOG_SEARCH_TEXT_MAX} characters (LOG_SEARCH_TEXT_MAX).",
            field="find",
        )
    needle = text.casefold()
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
            found = _folded_line_of_match(window, needle)
            if found is not None:
                return FindResult(pos + found if found >= 0 else line_start, pos, size)
            newline = window.rfind(b"\n")
            if newline >= 0:
                line_start = pos + newline + 1
            # A match may straddle two chunks: keep the bytes it could span (each folded
            # character comes from at least one character of at most 4 bytes), cut between
            # two characters, never inside one.
            keep = 4 * len(needle) - 1
            drop = max(0, len(window) - keep)
            while 0 < drop < len(window) and window[drop] & 0xC0 == 0x80:
                drop -= 1
            pos, window = pos + drop, window[drop:]
        return FindResult(None, pos + len(window), size)


def _folded_line_of_match(window: bytes, needle: str) -> int | None:
    """Where the line holding the first match of (case-folded) `needle` starts in `window`, as
    a byte index; -1 when that line began before the window; None without a match. The window
    is decoded (bad bytes become U+FFFD) and folded: folding changes lengths ("ß" → "ss") but
    never adds or removes a newline, and a newline byte is never part of another UTF-8
    character, so the match's line number in the folded text is its line in the bytes."""
    folded = window.decode("utf-8", errors="replace").casefold()
    hit = folded.find(needle)
    if hit < 0:
        return None
    lines_before = folded.count("\n", 0, hit)
    if not lines_before:
        return -1
    at = -1
    for _ in range(lines_before):
        at = window.index(b"\n", at + 1)
    return at + 1


def fold_spans(line: str, text: str) -> list[tuple[int, int]]:
    """The (start, end) character spans of `line` that match `text` ignoring case as Find
    does (casefold: "ÉPOCH" finds "époch", "STRASSE" finds "straße"), for marking them. A
    match that begins or ends inside a character's folding ("ss" in "ß") marks that whole
    character."""
    needle = text.casefold()
    if not needle:
        return []
    folded, origin = [], []  # origin[i]: the character of `line` folded character i came from
    for index, char in enumerate(line):
        piece = char.casefold()
        folded.append(piece)
        origin += [index] * len(piece)
    haystack = "".join(folded)
    spans, at = [], 0
    while (hit := haystack.find(needle, at)) >= 0:
        spans.append((origin[hit], origin[hit + len(needle) - 1] + 1))
        at = hit + len(needle)
    return spans
