"""HTTP client for the Runstudio REST API (``/api/v1``).

One ``requests.Session`` per client: keep-alive connections, the token header, JSON in and
out. Server errors (``{"error": {"code", "message", "field"}}``) become ``RunstudioError``
subclasses; non-finite floats travel as the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` (the server's convention, borrowed from MLflow).

Imports no Django: the SDK runs inside training scripts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import IO, Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

API_PREFIX = "/api/v1"
# (connect, read) seconds. Reads are generous: a 100,000-point batch takes the server a
# moment to validate and insert.
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 120.0)

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class RunstudioError(Exception):
    """An error answered by the server (or a failure to reach it).

    ``str(error)`` is the server's message, so ``print(e)`` shows what went wrong.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field

    def __str__(self) -> str:
        return self.message


class BadRequest(RunstudioError):
    """400/422: the request was refused as invalid; ``field`` names the input."""


class AuthError(RunstudioError):
    """401: missing, wrong or revoked token."""


class PermissionDenied(RunstudioError):
    """403: the token's user may read but not change this workspace."""


class NotFound(RunstudioError):
    """404: no such object, or not in a workspace the user belongs to."""


class Conflict(RunstudioError):
    """409: e.g. a property set again with another value, or a terminal run changed."""


class ServerError(RunstudioError):
    """5xx or 429: the server could not answer now; worth retrying."""


class ConnectionFailed(RunstudioError):
    """The server could not be reached (refused, reset, timed out)."""

    original: BaseException | None = None


def connection_reason(error: BaseException) -> str:
    """A few words for why a connection failed ("connection refused", "timed out"...),
    from the innermost cause of a requests/urllib3 error."""
    text = str(error)
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host name"),
        ("nodename nor servname", "unknown host name"),
        ("Temporary failure in name resolution", "host name lookup failed"),
        ("timed out", "timed out"),
        ("Read timed out", "timed out"),
        ("Connection reset", "connection reset"),
        ("RemoteDisconnected", "the server closed the connection"),
        ("Connection aborted", "connection aborted"),
        ("No route to host", "no route to host"),
        ("Network is unreachable", "network unreachable"),
    ):
        if needle in text:
            return reason
    return type(error).__name__


_ERRORS_BY_STATUS: dict[int, type[RunstudioError]] = {
    400: BadRequest,
    401: AuthError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: BadRequest,
    422: BadRequest,
    429: ServerError,
}


def is_transient(error: BaseException) -> bool:
    """True for failures that a retry may cure: no connection, timeouts, 5xx and 429."""
    return isinstance(error, (ServerError, ConnectionFailed))


# --- JSON with non-finite floats -------------------------------------------------------


def encode_non_finite(obj: Any) -> Any:
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        if math.isnan(obj):
            return "NaN"
        return "Infinity" if obj > 0 else "-Infinity"
    if isinstance(obj, Mapping):
        return {k: encode_non_finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode_non_finite(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    """JSON-encode ``obj``; NaN and ±inf become "NaN", "Infinity", "-Infinity".

    The common case (all finite) pays for one C-speed ``json.dumps``; only a payload that
    holds a non-finite float is walked in Python.
    """
    try:
        return json.dumps(obj, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return json.dumps(encode_non_finite(obj), allow_nan=False, separators=(",", ":"))


def decode_number(value: Any) -> Any:
    """Turn "NaN"/"Infinity"/"-Infinity" back into floats; anything else unchanged."""
    if type(value) is str:
        return _NON_FINITE.get(value, value)
    return value


def has_non_finite_marker(values: Any) -> bool:
    if isinstance(values, list):
        return any(type(v) is str and v in _NON_FINITE for v in values)
    return type(values) is str and values in _NON_FINITE


def quote_path(path: str) -> str:
    """Quote a run-file path or name for use in a URL, keeping the slashes."""
    return quote(path, safe="/")


def quote_segment(segment: str) -> str:
    return quote(segment, safe="")


# --- the client ------------------------------------------------------------------------


class Client:
    """A thin, typed wrapper around the REST API.

    ``retries`` applies urllib3's ``Retry`` to idempotent methods (GET, PUT, DELETE...) and
    to connection failures before a request was sent; non-idempotent POSTs are never
    replayed here. The metric flusher does its own retrying (with idempotency keys) and
    uses ``retries=0``.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retries: int = 3,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        self.session.headers["User-Agent"] = "runstudio-sdk/0.1"
        if token:
            self.session.headers["Authorization"] = f"Token {token}"
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=0.2,
            status_forcelist=(429, 502, 503, 504),
            raise_on_status=False,
            respect_retry_after_header=True,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=4)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def close(self) -> None:
        self.session.close()

    def api_url(self, path: str) -> str:
        return f"{self.url}{API_PREFIX}{path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json_body: Any = None,
        data: bytes | IO[bytes] | Mapping[str, str] | None = None,
        files: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        timeout: tuple[float, float] | None = None,
    ) -> requests.Response:
        """Send a request and return the response; raise ``RunstudioError`` on failure."""
        all_headers = dict(headers or {})
        body: Any = data
        if json_body is not None:
            body = dumps(json_body).encode()
            all_headers["Content-Type"] = "application/json"
        try:
            response = self.session.request(
                method,
                self.api_url(path),
                params=params,
                data=body,
                files=files,
                headers=all_headers,
                stream=stream,
                timeout=timeout or self.timeout,
            )
        except requests.RequestException as e:
            # `from None`: urllib3's chain of retries would print ~100 lines under a script's
            # traceback; the reason fits in one. The original stays on `.original`.
            error = ConnectionFailed(
                f"cannot reach the Runstudio server at {self.url} ({connection_reason(e)}). "
                "Is it running? Start it with `runstudio serve`, or point RUNSTUDIO_URL "
                "(or `runstudio login --url`) at the right one."
            )
            error.original = e
            raise error from None
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """``request`` and decode the JSON answer (None for an empty body)."""
        response = self.request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as e:
            raise RunstudioError(
                f"the server at {self.url} answered {method} {path} with something that is "
                f"not JSON (status {response.status_code}); is the URL right?",
                status=response.status_code,
            ) from e

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.call("POST", path, json_body=body if body is not None else {}, **kwargs)

    def patch(self, path: str, body: Any, **kwargs: Any) -> Any:
        return self.call("PATCH", path, json_body=body, **kwargs)

    def paginate(
        self, path: str, params: list[tuple[str, Any]] | None = None, *, limit: int = 1000
    ) -> Iterator[dict[str, Any]]:
        """Yield every result of a paginated list, following ``next_cursor``."""
        base = [p for p in (params or []) if p[0] not in ("cursor", "limit")]
        cursor: str | None = None
        while True:
            page_params = [*base, ("limit", limit)]
            if cursor:
                page_params.append(("cursor", cursor))
            page = self.get(path, params=page_params)
            if isinstance(page, list):  # an unpaginated list
                yield from page
                return
            yield from page.get("results", [])
            cursor = page.get("next_cursor")
            if not cursor:
                return


def error_from_response(response: requests.Response) -> RunstudioError:
    status = response.status_code
    code: str | None = None
    field: str | None = None
    message = ""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            field = error.get("field")
            message = str(error.get("message") or "")
        elif "detail" in payload:  # a DRF default error that slipped past the handler
            message = str(payload["detail"])
    if not message:
        text = response.text.strip()
        message = text[:300] if text and not text.startswith("<") else response.reason or ""
        message = f"HTTP {status} from {response.request.method} {response.url}: {message}"
        if status >= 500:
            message += "; the server (or a proxy before it) failed: try again, and see its log"
    if status == 401 and "runstudio login" not in message:
        base = (response.url or "URL").split(API_PREFIX)[0]
        message = (
            f"{message.rstrip('.')}. Sign in with `runstudio login --url {base} --username NAME` "
            "(or set RUNSTUDIO_TOKEN to a token of yours)."
        )
    cls = _ERRORS_BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else RunstudioError
    return cls(message, status=status, code=code, field=field)
