"""The object-storage backend (S3 through django-storages' S3Storage and boto3).

django-storages saves and deletes whole objects; what it lacks, this module adds on the same
client: ranged reads that stream (its S3File copies the whole object into a temporary file on
the first read — a 1 GiB log would be read whole, to local disk, to show its last page), a
file that is several objects joined (an appended log: docs/architecture.md, "Run files on
S3"), joining them into one object server-side where S3 allows, and deleting by prefix.
"""

import io
import posixpath
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.core.files.storage import default_storage

# Parts of appended files live outside `runs/`, so no run path can name one.
APPENDS = ".appends"
S3_MIN_PART = 5 * 1024 * 1024  # S3's floor for every multipart part but the last
JOIN_PART = 8 * 1024 * 1024  # bytes per uploaded part when parts are joined through us
S3_MAX_COPY = 5 * 1024 * 1024 * 1024  # S3's ceiling for one copied part
DELETE_BATCH = 1000  # keys per DeleteObjects request (S3's maximum)


def is_object_storage() -> bool:
    """Whether run files are in a bucket (the storage has no local paths)."""
    try:
        default_storage.path("")
    except NotImplementedError:
        return True
    return False


def _client():
    return default_storage.connection.meta.client


def _bucket() -> str:
    return default_storage.bucket_name


def object_key(name: str) -> str:
    """The bucket key of a storage name: the storage's prefix (RUNSTUDIO_FILES_URL's path)
    joined to it. Names are checked paths (runs/storage/paths.py), never user text as is."""
    location = (getattr(default_storage, "location", "") or "").strip("/")
    return f"{location}/{name}" if location else name


def part_name(run_id: str) -> str:
    """A fresh storage name for one appended part of a file of run `run_id`."""
    return posixpath.join(APPENDS, run_id, uuid.uuid4().hex)


def _transfer_config():
    from boto3.s3.transfer import TransferConfig

    # boto3 reads a file object's multipart parts into memory (up to ten 8 MiB chunks queued):
    # an upload's peak stays bounded (+93 MB for 64 MiB, +126 MB for 512 MiB here), never the
    # file's size; 4 threads instead of 10 on a 2-core host.
    return TransferConfig(multipart_chunksize=JOIN_PART, max_concurrency=4)


def object_put(name: str, source: io.BufferedIOBase) -> None:
    """Stores `source` (from its current position) under `name`: one PUT, or a multipart
    upload for a large body — either way the object appears whole or not at all."""
    _client().upload_fileobj(source, _bucket(), object_key(name), Config=_transfer_config())


def object_delete(names: Iterable[str]) -> None:
    """Deletes objects by storage name, up to DELETE_BATCH per request; missing ones are fine."""
    batch: list[dict] = []
    for name in names:
        batch.append({"Key": object_key(name)})
        if len(batch) == DELETE_BATCH:
            _delete_keys(batch)
            batch = []
    if batch:
        _delete_keys(batch)


def _delete_keys(batch: list[dict]) -> None:
    _client().delete_objects(Bucket=_bucket(), Delete={"Objects": batch, "Quiet": True})


def object_delete_prefix(prefix: str) -> int:
    """Deletes every object whose storage name starts with `prefix` (a folder: end it with
    '/'), a page of the listing at a time, so a tree of millions of objects never sits in
    memory; returns how many were deleted."""
    paginator = _client().get_paginator("list_objects_v2")
    deleted = 0
    for page in paginator.paginate(Bucket=_bucket(), Prefix=object_key(prefix)):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            _delete_keys(keys)
            deleted += len(keys)
    return deleted


@dataclass(frozen=True)
class Segment:
    """Bytes `start`..`start + size` of a file, held from the start of object `name`."""

    name: str
    start: int
    size: int


def file_segments(*, name: str, size: int, parts: Iterable[tuple[str, int, int]]) -> list[Segment]:
    """The objects that make up a file of `size` bytes stored under `name`, given its appended
    parts as (name, start, size) in order: the head object holds the bytes before the first
    part (the whole file when there are none)."""
    parts = [Segment(*p) for p in parts if p[2] > 0]
    head = parts[0].start if parts else size
    return ([Segment(name, 0, head)] if head > 0 else []) + parts


class JoinedReader(io.RawIOBase):
    """A seekable, read-only file over segments, read by ranged GETs. A sequential read keeps
    one GET open per segment (a zip of a 1 GiB file is a handful of requests); a seek elsewhere
    starts a new ranged GET from there. Nothing is buffered beyond what read() returns."""

    def __init__(
        self, segments: list[Segment], *, size: int | None = None, end: int | None = None
    ) -> None:
        """`size` is the file's (default: where the last segment ends); given only the segments
        of a window, `end` is where it ends: reads stop there, as at the end of the file."""
        super().__init__()
        self._segments = segments
        if size is None:
            size = segments[-1].start + segments[-1].size if segments else 0
        self._size = size
        self._end = size if end is None else min(end, size)
        self._pos = 0
        self._body = None  # the open GET's streaming body
        self._body_pos = -1  # the file offset its next byte is
        self._body_end = -1

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _segment_at(self, pos: int) -> Segment:
        lo, hi = 0, len(self._segments) - 1
        while lo < hi:  # the last segment starting at or before pos
            mid = (lo + hi + 1) // 2
            if self._segments[mid].start <= pos:
                lo = mid
            else:
                hi = mid - 1
        return self._segments[lo]

    def _open_at(self, pos: int) -> None:
        self._close_body()
        segment = self._segment_at(pos)
        first, last = pos - segment.start, segment.size - 1
        client = _client()
        try:
            response = client.get_object(
                Bucket=_bucket(), Key=object_key(segment.name), Range=f"bytes={first}-{last}"
            )
        except client.exceptions.NoSuchKey:
            raise FileNotFoundError(segment.name) from None
        except client.exceptions.ClientError as exc:
            # 416: the object is now shorter than this offset (replaced since the index was
            # read) — as missing, never a 5xx.
            if exc.response.get("Error", {}).get("Code") != "InvalidRange":
                raise
            raise FileNotFoundError(segment.name) from None
        # Each segment is a whole object of exactly its size (parts are never rewritten; the
        # head is rewritten by a replace). Another size means the head was replaced after the
        # index was read: its bytes are not this file's, so reading on would hand out the new
        # body cut at the old size under the old file's name.
        total = (response.get("ContentRange") or "").rpartition("/")[2]
        if total.isdigit() and int(total) != segment.size:
            response["Body"].close()
            raise FileNotFoundError(f"{segment.name} was replaced meanwhile")
        self._body = response["Body"]
        self._body_pos = pos
        self._body_end = segment.start + segment.size

    def _close_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def read(self, size: int = -1) -> bytes:
        if self._pos >= self._end:
            return b""
        if size is None or size < 0:
            size = self._end - self._pos
        out = bytearray()
        while size > 0 and self._pos < self._end:
            if self._body is None or self._body_pos != self._pos:
                self._open_at(self._pos)
            chunk = self._body.read(min(size, self._body_end - self._pos, self._end - self._pos))
            if not chunk:  # the object is shorter than the index says (replaced meanwhile)
                raise FileNotFoundError("a stored object ended early")
            out += chunk
            self._pos += len(chunk)
            self._body_pos = self._pos
            size -= len(chunk)
            if self._pos >= self._body_end:
                self._close_body()
        return bytes(out)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._close_body()
        super().close()


def segments_join(segments: list[Segment], name: str) -> None:
    """Writes the file the segments make up as one object `name` with a multipart upload:
    stretches of S3_MIN_PART bytes or more are copied inside the store (UploadPartCopy, no
    bytes through this process); shorter ones are read and sent in JOIN_PART pieces. Memory
    holds at most one piece. The object appears when the upload completes, whole."""
    client, bucket, key = _client(), _bucket(), object_key(name)
    total = sum(s.size for s in segments)
    if total < S3_MIN_PART:  # one small PUT
        with JoinedReader(segments) as reader:
            client.put_object(Bucket=bucket, Key=key, Body=reader.read())
        return
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    done: list[dict] = []

    def send(data: bytes) -> None:
        number = len(done) + 1
        etag = client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=data
        )["ETag"]
        done.append({"PartNumber": number, "ETag": etag})

    try:
        buffer = bytearray()
        for segment in segments:
            pos = 0
            while pos < segment.size:
                remaining = segment.size - pos
                if not buffer and remaining >= S3_MIN_PART:
                    length = min(remaining, S3_MAX_COPY)
                    number = len(done) + 1
                    result = client.upload_part_copy(
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload,
                        PartNumber=number,
                        CopySource={"Bucket": bucket, "Key": object_key(segment.name)},
                        CopySourceRange=f"bytes={pos}-{pos + length - 1}",
                    )
                    done.append({"PartNumber": number, "ETag": result["CopyPartResult"]["ETag"]})
                    pos += length
                    continue
                take = min(remaining, JOIN_PART - len(buffer))
                with JoinedReader([Segment(segment.name, 0, segment.size)]) as reader:
                    reader.seek(pos)
                    buffer += reader.read(take)
                pos += take
                if len(buffer) >= JOIN_PART:
                    send(bytes(buffer))
                    buffer.clear()
        if buffer:
            send(bytes(buffer))
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": done}
        )
    except BaseException:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
        raise


def iter_chunks(reader: io.RawIOBase, chunk: int) -> Iterator[bytes]:
    with reader:
        while data := reader.read(chunk):
            yield data
