from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from runs.errors import ServiceError


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
