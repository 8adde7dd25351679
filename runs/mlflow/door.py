"""The MLflow door's common ground: who is calling and in which workspace, MLflow's error
shape, and loading runs, experiments and logged models through runs/access.py so that one in
another workspace reads exactly like one that does not exist."""

import base64
import binascii
from dataclasses import dataclass

import orjson
from django.contrib.auth import authenticate
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Prefetch
from django.http import HttpResponse

from runs import services
from runs.access import run_in_workspace, scope_user, workspace_for
from runs.errors import Conflict, Forbidden, InvalidInput, LengthRequired, NotFound, ServiceError
from runs.mlflow import translate as t
from runs.models import (
    Experiment,
    LoggedModel,
    Membership,
    MetricSeries,
    Role,
    Run,
    RunInput,
    RunProperty,
    RunTag,
    Workspace,
)

WORKSPACE_HEADER = "HTTP_X_MLFLOW_WORKSPACE"
ARTIFACTS_PREFIX = "outputs"  # MLflow writes only under the run's outputs/ folder


class MlflowError(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def json_response(data: dict, status: int = 200) -> HttpResponse:
    """orjson: a 1,000,000-point history is ~5× faster to write than with json.dumps. NaN and
    ±inf never reach it (translate.number sends them as strings)."""
    return HttpResponse(orjson.dumps(data), content_type="application/json", status=status)


def error_response(code: str, message: str, status: int) -> HttpResponse:
    return json_response({"error_code": code, "message": message}, status=status)


def service_error_response(exc: ServiceError) -> HttpResponse:
    if isinstance(exc, NotFound):
        return error_response("RESOURCE_DOES_NOT_EXIST", exc.message, 404)
    if isinstance(exc, Forbidden):
        return error_response("PERMISSION_DENIED", exc.message, 403)
    if isinstance(exc, LengthRequired):
        return error_response("BAD_REQUEST", exc.message, 411)
    if isinstance(exc, Conflict) and exc.code == "already_exists":
        return error_response("RESOURCE_ALREADY_EXISTS", exc.message, 400)
    if isinstance(exc, Conflict) and exc.code != "property_immutable":
        return error_response("INVALID_STATE", exc.message, 400)
    return error_response("INVALID_PARAMETER_VALUE", exc.message, 400)


# --- who is calling, and in which workspace -----------------------------------------------------


def _caller(request) -> AbstractBaseUser:
    """Bearer (or Token) = a Runstudio API token; Basic = username and password."""
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if scheme in ("bearer", "token") and credentials:
        token = services.token_authenticate(key=credentials, run_scoped=True)
        if token is not None:
            # A run-scoped token reaches no workspace-level call (runs/access.py).
            return scope_user(token.user, token.run_id) if token.run_id else token.user
    elif scheme == "basic" and credentials:
        try:
            username, _, password = base64.b64decode(credentials).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            username = password = ""
        user = authenticate(request, username=username, password=password) if username else None
        if user is not None:
            return user
    raise MlflowError(
        "UNAUTHENTICATED",
        "Send a Runstudio API token (MLFLOW_TRACKING_TOKEN) or a username and password "
        "(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD).",
        401,
    )


@dataclass
class Door:
    user: AbstractBaseUser
    workspace: Workspace
    membership: Membership

    def require(self, role: str, what: str) -> None:
        if not self.membership.allows(role):
            raise Forbidden(
                f"You are a {self.membership.role} of workspace {self.workspace.name!r}; "
                f"{what} needs the {role} role."
            )


def door_for(request, workspace: str | None) -> Door:
    user = _caller(request)
    name = workspace or request.META.get(WORKSPACE_HEADER, "")
    if not name:
        raise MlflowError(
            "INVALID_PARAMETER_VALUE",
            "No workspace: use the tracking URI <server>/mlflow/<workspace> or set "
            "MLFLOW_WORKSPACE (the X-MLFLOW-WORKSPACE header).",
        )
    ws, membership = workspace_for(user=user, name=name)
    return Door(user, ws, membership)


# --- loading ------------------------------------------------------------------------------------

RUN_DETAILS = ("experiment", "parent", "submitter", "workspace")


def with_details(runs):
    return runs.select_related(*RUN_DETAILS).prefetch_related(
        Prefetch("tags", queryset=RunTag.objects.order_by("id")),
        Prefetch("properties", queryset=RunProperty.objects.order_by("id")),
        Prefetch("metric_series", queryset=MetricSeries.objects.order_by("name")),
        Prefetch("inputs", queryset=RunInput.objects.order_by("id")),
    )


def load_run(door: Door, run_id: object, *, write: bool = False, active: bool = True) -> Run:
    """The door's workspace's run. A run elsewhere reads exactly like one that does not exist."""
    if not isinstance(run_id, str) or not run_id:
        raise InvalidInput("run_id: required.", field="run_id")
    run = run_in_workspace(user=door.user, membership=door.membership, run_id=run_id)
    if run is None:
        raise NotFound(f"Run with id={run_id!r} not found.", field="run_id")
    if write:
        door.require(Role.CONTRIBUTOR, "logging to a run")
        if active and run.archived_at is not None:
            raise MlflowError(
                "INVALID_STATE", f"The run {run_id} is deleted; restore it to log to it."
            )
    return run


def run_json(run: Run) -> dict:
    return t.run_json(with_details(Run.objects.filter(pk=run.pk)).get())


def load_experiment(door: Door, experiment_id: object) -> Experiment:
    if experiment_id == t.DEFAULT_EXPERIMENT_ID or experiment_id == 0:
        return services.experiment_get_or_create(
            workspace=door.workspace, name=t.DEFAULT_EXPERIMENT_NAME
        )[0]
    found = None
    if (
        isinstance(experiment_id, str | int)
        and str(experiment_id).isascii()
        and str(experiment_id).isdecimal()
    ):
        found = Experiment.objects.filter(
            workspace=door.workspace, pk=int(experiment_id) if len(str(experiment_id)) < 19 else -1
        ).first()
    if found is None:
        raise NotFound(f"Could not find experiment with ID {experiment_id}.", field="experiment_id")
    return found


def load_experiment_by_name(door: Door, name: object) -> Experiment:
    found = Experiment.objects.filter(workspace=door.workspace, name=name).first()
    if found is None and name == t.DEFAULT_EXPERIMENT_NAME:
        found = services.experiment_get_or_create(workspace=door.workspace, name=name)[0]
    if found is None:
        raise NotFound(f"Could not find experiment with name {name!r}.", field="experiment_name")
    return found


def load_model(door: Door, model_id: str, *, write: bool = False) -> LoggedModel:
    model = (
        LoggedModel.objects.select_related("run", "experiment")
        .filter(model_id=model_id, workspace=door.workspace)
        .first()
    )
    if model is None:
        raise NotFound(f"Logged model with id={model_id!r} not found.", field="model_id")
    if write:
        door.require(Role.CONTRIBUTOR, "changing a logged model")
    return model


_REQUIRED = object()


def text_field(body: dict, name: str, default: object = _REQUIRED) -> str:
    """A text field of the request; a number, list or object there is a 400 naming it."""
    value = body.get(name)
    if value is None and default is not _REQUIRED:
        return default
    if not isinstance(value, str):
        raise InvalidInput(f"{name}: required, as a string.", field=name)
    return value
