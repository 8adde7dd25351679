"""The MLflow door: MLflow's tracking REST API (`api/2.0/mlflow/…`) and artifact proxy
(`api/2.0/mlflow-artifacts/artifacts/…`) under `/mlflow/<workspace>/` or `/mlflow/` with the
`X-MLFLOW-WORKSPACE` header, so the unchanged `mlflow` client logs into a workspace.

Every call loads through runs/access.py and writes through runs/services/ (and storage's
services for files): the same rules as every other door. Errors answer in MLflow's shape,
`{"error_code": …, "message": …}`, so the client raises MlflowException with the right code.
docs/architecture.md, "The MLflow door", has the mapping and its limits. The calls live in
tracking.py and artifacts.py, the common ground in door.py; this module routes and answers."""

import orjson
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt

from runs.access import run_for
from runs.errors import InvalidInput, NotFound, ServiceError
from runs.mlflow.artifacts import artifacts
from runs.mlflow.door import (
    Door,
    MlflowError,
    door_for,
    error_response,
    json_response,
    service_error_response,
)
from runs.mlflow.tracking import ROUTES, models_artifacts, models_detail, models_params, models_tags


def _body(request) -> dict:
    if request.method == "GET":
        data: dict = {}
        for key in request.GET:
            values = request.GET.getlist(key)
            data[key] = values if len(values) > 1 or key.endswith("_ids") else values[0]
        return data
    if not request.body:
        return {}
    try:
        data = orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body: not JSON ({exc}).", field="body") from None
    if not isinstance(data, dict):
        raise InvalidInput("body: must be a JSON object.", field="body")
    # JSON can carry a NUL only as the escape \u0000 (a raw one is not JSON), so a body
    # without that text holds none and skips the walk: ~4 ms of a 1,000-metric log-batch.
    if b"\\u0000" in request.body and _holds_nul(data):
        # No name, value or text of the model may hold one, and PostgreSQL cannot even compare
        # it: refused here once for every route (a NUL in the URL is the middleware's).
        raise InvalidInput("body: a string holds a NUL character (\\u0000).", field="body")
    return data


def _holds_nul(data: object) -> bool:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _model_route(door: Door, request, path: str):
    """logged-models/<id>[/tags[/<key>]|/params|/artifacts/directories]."""
    parts = path.split("/")
    model_id, rest = parts[1], parts[2:]
    body = _body(request)
    method = request.method
    if not rest and method in ("GET", "PATCH", "DELETE"):
        return models_detail(door, body, model_id, method)
    if rest == ["tags"] and method == "PATCH":
        return models_tags(door, body, model_id, method)
    if len(rest) >= 2 and rest[0] == "tags" and method == "DELETE":
        return models_tags(door, body, model_id, method, key="/".join(rest[1:]))
    if rest == ["params"] and method == "POST":
        return models_params(door, body, model_id, method)
    if rest == ["artifacts", "directories"] and method == "GET":
        return models_artifacts(door, body, model_id, method)
    return None


@csrf_exempt
def tracking_api(request, path: str, workspace: str | None = None):
    """Every `api/2.0/mlflow/<path>` call."""
    try:
        door = door_for(request, workspace)
        handler = ROUTES.get((request.method, path.strip("/")))
        if handler is not None:
            return json_response(handler(door, _body(request)))
        if path.startswith("logged-models/") and path != "logged-models/search":
            answer = _model_route(door, request, path.strip("/"))
            if answer is not None:
                return json_response(answer)
        raise MlflowError(
            "ENDPOINT_NOT_FOUND",
            f"{request.method} api/2.0/mlflow/{path} is not served by Runstudio's MLflow door.",
            404,
        )
    except MlflowError as exc:
        return error_response(exc.code, exc.message, exc.status)
    except ServiceError as exc:
        return service_error_response(exc)


@csrf_exempt
def artifacts_api(request, path: str | None = None, workspace: str | None = None):
    """Every `api/2.0/mlflow-artifacts/artifacts[/<path>]` call."""
    try:
        return artifacts(request, door_for(request, workspace), path or "")
    except MlflowError as exc:
        return error_response(exc.code, exc.message, exc.status)
    except ServiceError as exc:
        return service_error_response(exc)


def server_info(request, workspace: str | None = None) -> HttpResponse:
    """What the client asks before using MLFLOW_WORKSPACE (and before multipart transfers).
    Says nothing about any workspace, so it needs no credentials."""
    return json_response(
        {
            "store_type": "SqlStore",
            "workspaces_enabled": True,
            "multipart_uploads_enabled": False,
            "multipart_downloads_enabled": False,
            "features_enabled": [],
        }
    )


# --- the "View run … at: <tracking uri>/#/experiments/<id>/runs/<run id>" link ---------------


def run_link(request, workspace: str | None = None) -> HttpResponse:
    """The client prints MLflow UI links, whose run lives in the URL's fragment (never sent to
    a server): the page's script (static/js/mlflow_link.js) reads it and comes back with
    `?run=`, which opens the run's studio page (signing in first if needed)."""
    run_id = request.GET.get("run")
    workspace = workspace or request.GET.get("workspace", "")
    if not run_id or not workspace:
        return render(request, "runs/mlflow_link.html", {"mlflow_workspace": workspace})
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    try:
        run, _ = run_for(user=request.user, run_id=run_id)
    except NotFound:
        run = None
    if run is None or run.workspace.name != workspace:
        raise Http404("No such run.")
    return redirect("runs:run-page", workspace=workspace, run_id=run.run_id)
