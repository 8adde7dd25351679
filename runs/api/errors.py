import logging
import sys

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from runs.errors import ServiceError

logger = logging.getLogger(__name__)


def _first_field(detail, prefix: str = "") -> tuple[str | None, str]:
    if isinstance(detail, dict):
        for key, value in detail.items():
            field, message = _first_field(value, f"{prefix}{key}.")
            return field or f"{prefix}{key}", message
    if isinstance(detail, list) and detail:
        return _first_field(detail[0], prefix)
    return None, str(detail)


def exception_handler(exc, context):
    """Every error as `{"error": {"code", "message", "field"?}}`."""
    if isinstance(exc, ServiceError):
        return Response({"error": exc.as_dict()}, status=exc.status)
    if isinstance(exc, RequestDataTooBig | TooManyFieldsSent):
        return Response({"error": _too_big()}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if _storage_error(exc):
        # The bucket refused or did not answer (not made, keys without write, down): a 503
        # the client may retry, not a crash; the host's start-up warning names the fix.
        logger.error("run-file storage failed", exc_info=exc)
        error = {
            "code": "storage_unavailable",
            "message": "The run-file storage did not take the request; the error is logged.",
        }
        return Response({"error": error}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        field, message = _first_field(exc.detail)
        error = {"code": "invalid", "message": f"{field}: {message}" if field else message}
        if field:
            error["field"] = field
    else:
        code = getattr(exc, "default_code", "error")
        error = {"code": code, "message": str(getattr(exc, "detail", exc))}
    if response.status_code == status.HTTP_403_FORBIDDEN and isinstance(
        exc, exceptions.NotAuthenticated
    ):
        response.status_code = status.HTTP_401_UNAUTHORIZED
    response.data = {"error": error}
    return response


def _storage_error(exc: BaseException) -> bool:
    """An error of boto3 (the S3 run-file storage). Not imported when run files are in a
    folder: then nothing can have raised one."""
    botocore = sys.modules.get("botocore.exceptions")
    return botocore is not None and isinstance(exc, botocore.BotoCoreError | botocore.ClientError)


def _too_big() -> dict:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return {
        "code": "too_large",
        "message": f"body: the request body is over {limit} bytes (REQUEST_BODY_MAX_BYTES); "
        "split it into smaller requests.",
        "field": "body",
    }


# Errors Django answers before or outside a DRF view (an unknown URL, a body Django refused
# while reading it, a crash): /api/ clients get the API's JSON shape, pages Django's own.
# studio/urls.py installs these as handler400/404/500.


def _api_json(status_code: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status_code)


def bad_request(request, exception=None):
    from django.views import defaults

    if not request.path.startswith("/api/"):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig | TooManyFieldsSent):
        return JsonResponse({"error": _too_big()}, status=413)
    return _api_json(400, "bad_request", "The request could not be read.")


def page_not_found(request, exception=None):
    from django.views import defaults

    if not request.path.startswith("/api/"):
        return defaults.page_not_found(request, exception)
    return _api_json(404, "not_found", f"No API endpoint at {request.path}.")


def server_error(request):
    from django.views import defaults

    if not request.path.startswith("/api/"):
        return defaults.server_error(request)
    return _api_json(500, "server_error", "The server failed; the error is logged.")
