"""File upload bodies: always sized, always rewindable.

A body of unknown length goes out chunked, which a server may read as empty (Django behind
runserver, any WSGI server that does not decode chunking) and which cannot be sent again on a
retry. So every upload gets a Content-Length: a local file or a seekable stream is sent as
it is, from its current position; anything else (a pipe, a socket, a generator of bytes) is
first copied to a temporary file. The body object also rewinds, so urllib3 can retry it.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

CHUNK = 1024 * 1024


class SizedBody(io.RawIOBase):
    """`length` bytes of `source` from `start`: requests sends Content-Length (from
    `__len__`), http.client reads it in blocks, urllib3 seeks back to `tell()` to retry."""

    def __init__(self, source: IO[bytes], start: int, length: int) -> None:
        super().__init__()
        self._source = source
        self._start = start
        self._length = length
        self._pos = 0
        source.seek(start)

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, min(self._length, base + offset))
        self._source.seek(self._start + self._pos)
        return self._pos

    def read(self, size: int = -1) -> bytes:
        left = self._length - self._pos
        size = left if size is None or size < 0 else min(size, left)
        data = self._source.read(size) if size else b""
        self._pos += len(data)
        return data

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _seekable_span(stream: IO[bytes]) -> tuple[int, int] | None:
    """(position, bytes left) of a stream that can seek, else None."""
    try:
        if not stream.seekable():
            return None
        start = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(start)
    except (AttributeError, OSError, ValueError):
        return None
    return start, max(0, end - start)


@contextlib.contextmanager
def sized_body(
    source: str | os.PathLike[str] | IO[bytes] | bytes | Iterable[bytes],
) -> Iterator[bytes | SizedBody]:
    """The body to send for `source`: a path, a binary stream, bytes, or an iterable of bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield bytes(source)
        return
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            with sized_body(f) as body:
                yield body
        return
    if hasattr(source, "read"):
        span = _seekable_span(source)  # type: ignore[arg-type]
        if span is not None:
            start, length = span
            # Empty: plain bytes, since requests sends an empty stream chunked.
            yield SizedBody(source, start, length) if length else b""  # type: ignore[arg-type]
            return
        chunks: Iterable[bytes] = iter(lambda: source.read(CHUNK), b"")  # type: ignore[union-attr]
    else:
        chunks = source
    with tempfile.TemporaryFile() as spool:
        for chunk in chunks:
            spool.write(chunk)
        length = spool.tell()
        yield SizedBody(spool, 0, length) if length else b""
