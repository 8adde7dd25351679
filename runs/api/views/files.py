"""Run files: list, download, upload, append."""

import unicodedata

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import api_view, parser_classes
from rest_framework.parsers import BaseParser
from rest_framework.response import Response

from runs import limits, selectors, services, storage
from runs.access import run_for
from runs.api import schemas as s
from runs.api.serializers import RunFileListSerializer, RunFileWrittenSerializer
from runs.api.views.common import _int_param
from runs.errors import InvalidInput, LengthRequired
from runs.models import Role


def _body(request) -> tuple[object, int | None]:
    """The body stream and its announced length. Django reads only Content-Length bytes, so a
    chunked body (no Content-Length) would look empty: it is read from the server's own
    decoded input when the server says it ends it (gunicorn sets `wsgi.input_terminated`),
    and refused with a 411 otherwise, never stored as an empty file."""
    raw = request.META.get("CONTENT_LENGTH")
    if raw not in (None, ""):
        try:
            size = int(raw)
        except ValueError:
            size = -1
        if size < 0:
            raise InvalidInput(f"Content-Length: {raw!r} is not a byte count.", field="body")
        return request, size
    chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
    if chunked and request.META.get("wsgi.input_terminated"):
        return request.META["wsgi.input"], None
    raise LengthRequired(
        "body: send Content-Length (or Transfer-Encoding: chunked to a server that decodes "
        "it, such as `runstudio serve`); a body of unknown length is never stored.",
        field="body",
    )


class RawParser(BaseParser):
    """Leaves the body unread so the file view can stream it to storage."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return None


@extend_schema(
    operation_id="file_list",
    summary="List a run's files",
    tags=["files"],
    parameters=[OpenApiParameter("prefix", str, description="Only paths starting with this.")],
    responses={200: RunFileListSerializer},
)
@api_view(["GET"])
def file_list(request, run_id: str):
    run, _ = run_for(user=request.user, run_id=run_id)
    prefix = unicodedata.normalize("NFC", request.query_params.get("prefix", ""))  # as paths are
    files = storage.run_files_servable(run=run, files=selectors.run_files(run=run, prefix=prefix))
    return Response(RunFileListSerializer.render({"files": files}))


def _write_errors(*, e413: str) -> dict:
    """The errors an upload or an append can answer with."""
    return s.errors(
        411,
        e409="A file stands where the path needs a folder, or a folder where it needs a file.",
        e413=e413,
    )


@extend_schema(
    methods=["GET"],
    operation_id="file_download",
    summary="Download a run file",
    description="The whole file, streamed; or with `offset`/`length`, that range.",
    tags=["files"],
    parameters=[
        s.FILE_PATH_PARAMETER,
        s.int_parameter("offset", minimum=0, description="The first byte to read (default 0)."),
        s.int_parameter(
            "length",
            minimum=0,
            maximum=limits.MAX_FILE_READ_BYTES,
            description=f"Bytes to read, at most {limits.MAX_FILE_READ_BYTES} (the default).",
        ),
        OpenApiParameter(
            "X-File-Size",
            int,
            OpenApiParameter.HEADER,
            response=[200],
            description="The file's size.",
        ),
        OpenApiParameter(
            "X-Next-Offset",
            int,
            OpenApiParameter.HEADER,
            response=[200],
            description="With `offset`/`length`: where the next read starts.",
        ),
    ],
    responses={
        (200, "application/octet-stream"): OpenApiResponse(
            OpenApiTypes.BINARY, description="The file's bytes, or the requested range of them."
        ),
    },
)
@extend_schema(
    methods=["PUT"],
    operation_id="file_replace",
    summary="Upload a run file (replaces it)",
    description="Whole or not at all: the body is stored aside, checked against its "
    "Content-Length and the size limit, then moved into place. Send a Content-Length; a chunked "
    "body is read whole where the server decodes it (`runstudio serve`), else refused (411).",
    tags=["files"],
    parameters=[s.FILE_PATH_PARAMETER],
    request=s.BINARY,
    responses={
        201: RunFileWrittenSerializer,
        **_write_errors(e413=f"The file is over {limits.MAX_FILE_UPLOAD_BYTES} bytes."),
    },
)
@extend_schema(
    methods=["POST"],
    operation_id="file_append",
    summary="Append to a run file",
    description="Creates the file if it is missing. Whole or not at all, like the upload: a "
    "body cut off or over the limit leaves the file as it was.",
    tags=["files"],
    parameters=[
        s.FILE_PATH_PARAMETER,
        OpenApiParameter(
            "append", str, required=True, enum=["1", "true"], description="Required for POST."
        ),
    ],
    request=s.BINARY,
    responses={
        200: RunFileWrittenSerializer,
        **_write_errors(e413=f"The body is over {limits.MAX_FILE_UPLOAD_BYTES} bytes."),
    },
)
@api_view(["GET", "PUT", "POST"])
@parser_classes([RawParser])
def file_detail(request, run_id: str, path: str):
    if request.method in ("PUT", "POST"):
        run, _ = run_for(
            user=request.user, run_id=run_id, role=Role.CONTRIBUTOR, what="uploading files"
        )
        append = request.method == "POST" and request.query_params.get("append") in ("1", "true")
        if request.method == "POST" and not append:
            raise InvalidInput(
                "append: POST appends and needs ?append=1; use PUT to replace.", field="append"
            )
        stream, size = _body(request._request)
        record = services.run_file_write(
            run=run, path=path, stream=stream, append=append, size=size
        )
        return Response(
            RunFileWrittenSerializer.render(record),
            status=status.HTTP_200_OK if append else status.HTTP_201_CREATED,
        )
    run, _ = run_for(user=request.user, run_id=run_id)
    if "offset" not in request.query_params and "length" not in request.query_params:
        record = storage.run_file_get(run=run, path=path)
        response = StreamingHttpResponse(
            storage.run_file_iter(run=run, path=path), content_type="application/octet-stream"
        )
        response["X-File-Size"] = str(record.size)
        return response
    offset = _int_param(request, "offset", 0)
    length = _int_param(
        request, "length", limits.MAX_FILE_READ_BYTES, maximum=limits.MAX_FILE_READ_BYTES
    )
    data, size = storage.run_file_read(run=run, path=path, offset=offset, length=length)
    response = HttpResponse(data, content_type="application/octet-stream")
    response["X-File-Size"] = str(size)
    response["X-Next-Offset"] = str(offset + len(data))
    return response
