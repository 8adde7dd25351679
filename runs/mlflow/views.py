"""The MLflow door: MLflow's tracking REST API (`api/2.0/mlflow/…`) and artifact proxy
(`api/2.0/mlflow-artifacts/artifacts/…`) under `/mlflow/<workspace>/` or `/mlflow/` with the
`X-MLFLOW-WORKSPACE` header, so the unchanged `mlflow` client logs into a workspace.

Every call loads through runs/access.py and writes through runs/services/ (and storage's
services for files): the same rules as every other door. Errors answer in MLflow's shape,
`{"error_code": …, "message": …}`, so the client raises MlflowException with the right code.
docs/architecture.md, "The MLflow door", has the mapping and its limits."""

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from django.contrib.auth import authenticate
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.views import redirect_to_login
from django.db.models import Prefetch, Q
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt

from runs import limits, query, selectors, services, storage
from runs.access import run_for, scope_user, workspace_for
from runs.errors import Conflict, Forbidden, InvalidInput, LengthRequired, NotFound, ServiceError
from runs.mlflow import translate as t
from runs.models import (
    Experiment,
    LoggedModel,
    Membership,
    MetricSeries,
    Role,
    Run,
    RunProperty,
    RunTag,
    Workspace,
)
from runs.services import RunSpec

WORKSPACE_HEADER = "HTTP_X_MLFLOW_WORKSPACE"
ARTIFACTS_PREFIX = "outputs"  # MLflow writes only under the run's outputs/ folder


class MlflowError(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _json(data: dict, status: int = 200) -> HttpResponse:
    """orjson: a 1,000,000-point history is ~5× faster to write than with json.dumps. NaN and
    ±inf never reach it (translate.number sends them as strings)."""
    return HttpResponse(orjson.dumps(data), content_type="application/json", status=status)


def _error(code: str, message: str, status: int) -> HttpResponse:
    return _json({"error_code": code, "message": message}, status=status)


def _service_error(exc: ServiceError) -> HttpResponse:
    if isinstance(exc, NotFound):
        return _error("RESOURCE_DOES_NOT_EXIST", exc.message, 404)
    if isinstance(exc, Forbidden):
        return _error("PERMISSION_DENIED", exc.message, 403)
    if isinstance(exc, LengthRequired):
        return _error("BAD_REQUEST", exc.message, 411)
    if isinstance(exc, Conflict) and exc.code == "already_exists":
        return _error("RESOURCE_ALREADY_EXISTS", exc.message, 400)
    if isinstance(exc, Conflict) and exc.code != "property_immutable":
        return _error("INVALID_STATE", exc.message, 400)
    return _error("INVALID_PARAMETER_VALUE", exc.message, 400)


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


def _door(request, workspace: str | None) -> Door:
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


def _with_details(runs):
    return runs.select_related(*RUN_DETAILS).prefetch_related(
        Prefetch("tags", queryset=RunTag.objects.order_by("id")),
        Prefetch("properties", queryset=RunProperty.objects.order_by("id")),
        Prefetch("metric_series", queryset=MetricSeries.objects.order_by("name")),
    )


def _run(door: Door, run_id: object, *, write: bool = False, active: bool = True) -> Run:
    """The door's workspace's run. A run elsewhere reads exactly like one that does not exist."""
    if not isinstance(run_id, str) or not run_id:
        raise InvalidInput("run_id: required.", field="run_id")
    try:
        run, _ = run_for(user=door.user, run_id=run_id)
    except NotFound:
        run = None
    if run is None or run.workspace_id != door.workspace.pk:
        raise NotFound(f"Run with id={run_id!r} not found.", field="run_id")
    if write:
        door.require(Role.CONTRIBUTOR, "logging to a run")
        if active and run.archived_at is not None:
            raise MlflowError(
                "INVALID_STATE", f"The run {run_id} is deleted; restore it to log to it."
            )
    return run


def _run_json(run: Run) -> dict:
    return t.run_json(_with_details(Run.objects.filter(pk=run.pk)).get())


def _experiment(door: Door, experiment_id: object) -> Experiment:
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


def _experiment_by_name(door: Door, name: object) -> Experiment:
    found = Experiment.objects.filter(workspace=door.workspace, name=name).first()
    if found is None and name == t.DEFAULT_EXPERIMENT_NAME:
        found = services.experiment_get_or_create(workspace=door.workspace, name=name)[0]
    if found is None:
        raise NotFound(f"Could not find experiment with name {name!r}.", field="experiment_name")
    return found


def _model(door: Door, model_id: str, *, write: bool = False) -> LoggedModel:
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


# --- experiments --------------------------------------------------------------------------------


def experiments_create(door: Door, body: dict) -> dict:
    door.require(Role.CONTRIBUTOR, "creating an experiment")
    tags = dict(t.key_values(body.get("tags"), field="tags"))
    experiment = services.experiment_create(
        workspace=door.workspace, name=body.get("name"), tags=tags
    )
    return {"experiment_id": t.experiment_id(experiment)}


def experiments_get(door: Door, body: dict) -> dict:
    return {"experiment": t.experiment_json(_experiment(door, body.get("experiment_id")))}


def experiments_get_by_name(door: Door, body: dict) -> dict:
    return {"experiment": t.experiment_json(_experiment_by_name(door, body.get("experiment_name")))}


def experiments_search(door: Door, body: dict) -> dict:
    view = body.get("view_type") or "ACTIVE_ONLY"
    experiments = Experiment.objects.filter(workspace=door.workspace)
    if view == "ACTIVE_ONLY":
        experiments = experiments.filter(archived_at__isnull=True)
    elif view == "DELETED_ONLY":
        experiments = experiments.filter(archived_at__isnull=False)
    if _str(body, "filter", ""):
        # Only name filters, the ones MLflow's own clients send (`name = 'x'`, `name LIKE …`).
        experiments = experiments.filter(_experiment_filter(body["filter"]))
    limit = max(
        1, min(t.parse_int(body.get("max_results"), field="max_results", default=1000), 1000)
    )
    offset, _ = t.page_token_decode(body.get("page_token"))
    page = list(experiments.order_by("-created_at", "-id")[offset : offset + limit + 1])
    answer = {"experiments": [t.experiment_json(e) for e in page[:limit]]}
    if len(page) > limit:
        answer["next_page_token"] = t.page_token_encode(offset=offset + limit, ceiling=0)
    return answer


def _experiment_filter(text: object) -> Q:
    match = re.fullmatch(
        r"\s*(?:attributes\.)?name\s*(=|!=|LIKE|ILIKE)\s*'((?:[^'\\]|\\.)*)'\s*", str(text), re.I
    )
    if match is None:
        raise InvalidInput(
            "filter: experiments are searched by name only (name = 'x', name LIKE 'x%').",
            field="filter",
        )
    op, value = match.group(1).upper(), match.group(2)
    if op == "=":
        return Q(name=value)
    if op == "!=":
        return ~Q(name=value)
    # Escaped first: a name may hold regex characters ('a.b', '(x)'); then MLflow's wildcards.
    pattern = re.escape(value).replace("%", ".*").replace("_", ".")
    return Q(name__iregex=f"^{pattern}$") if op == "ILIKE" else Q(name__regex=f"^{pattern}$")


def experiments_update(door: Door, body: dict) -> dict:
    door.require(Role.CONTRIBUTOR, "renaming an experiment")
    experiment = _experiment(door, body.get("experiment_id"))
    services.experiment_rename(experiment=experiment, name=body.get("new_name"))
    return {}


def experiments_delete(door: Door, body: dict) -> dict:
    door.require(Role.CONTRIBUTOR, "deleting an experiment")
    experiment = _experiment(door, body.get("experiment_id"))
    if experiment.name == t.DEFAULT_EXPERIMENT_NAME:
        raise InvalidInput("experiment_id: the Default experiment cannot be deleted.")
    services.experiment_archive(experiment=experiment)
    return {}


def experiments_restore(door: Door, body: dict) -> dict:
    door.require(Role.CONTRIBUTOR, "restoring an experiment")
    services.experiment_restore(experiment=_experiment(door, body.get("experiment_id")))
    return {}


def experiments_set_tag(door: Door, body: dict) -> dict:
    door.require(Role.CONTRIBUTOR, "tagging an experiment")
    experiment = _experiment(door, body.get("experiment_id"))
    services.experiment_set_tags(
        experiment=experiment, set_tags={_str(body, "key"): body.get("value")}
    )
    return {}


def experiments_delete_tag(door: Door, body: dict) -> dict:
    door.require(Role.CONTRIBUTOR, "tagging an experiment")
    experiment = _experiment(door, body.get("experiment_id"))
    services.experiment_set_tags(experiment=experiment, remove=[_str(body, "key")])
    return {}


# --- runs ---------------------------------------------------------------------------------------


def _split_tags(tags: list[tuple[str, object]]) -> tuple[dict, dict]:
    """(ordinary tags, reserved attributes: display_name / description / parent)."""
    ordinary, reserved = {}, {}
    for key, value in tags:
        if key in t.RESERVED_ATTRIBUTES:
            reserved[t.RESERVED_ATTRIBUTES[key]] = "" if value is None else value
        else:
            ordinary[key] = value
    return ordinary, reserved


def runs_create(door: Door, body: dict) -> dict:
    door.require(Role.CONTRIBUTOR, "creating a run")
    experiment = _experiment(door, body.get("experiment_id") or t.DEFAULT_EXPERIMENT_ID)
    if experiment.archived_at is not None:
        raise MlflowError("INVALID_STATE", f"Experiment {experiment.name!r} is deleted.")
    tags, reserved = _split_tags(t.key_values(body.get("tags"), field="tags"))
    parent = _run(door, reserved["parent"]) if reserved.get("parent") else None
    start = t.parse_int(body.get("start_time"), field="start_time")
    spec = RunSpec.from_input(
        {
            "display_name": body.get("run_name") or reserved.get("display_name"),
            "description": reserved.get("description"),
            "tags": tags,
            "started_at": start / 1000 if start is not None else None,
        },
        hex_id=True,
        heartbeats=False,
    )
    run = services.run_create(experiment=experiment, spec=spec, submitter=door.user, parent=parent)
    return {"run": _run_json(run)}


def runs_get(door: Door, body: dict) -> dict:
    return {"run": _run_json(_run(door, body.get("run_id") or body.get("run_uuid")))}


def runs_update(door: Door, body: dict) -> dict:
    run = _run(door, body.get("run_id") or body.get("run_uuid"), write=True)
    if body.get("run_name"):
        services.run_update(run=run, display_name=body["run_name"])
    status = _str(body, "status", "")
    if status:
        if status not in t.STATUS_IN:
            raise InvalidInput(
                f"status: {status!r} is not one of {', '.join(t.STATUS_IN)}.", field="status"
            )
        end = t.parse_int(body.get("end_time"), field="end_time")
        if not run.is_terminal:  # the studio's terminal states are final: a late one is dropped
            services.run_set_status(
                run=run,
                status=t.STATUS_IN[status],
                by=door.user,
                ended_at=services.check_client_time(end / 1000, field="end_time") if end else None,
            )
    run_info = _run_json(run)["info"]
    return {"run_info": run_info}


def runs_delete(door: Door, body: dict) -> dict:
    services.run_archive(run=_run(door, body.get("run_id"), write=True, active=False))
    return {}


def runs_restore(door: Door, body: dict) -> dict:
    services.run_restore(run=_run(door, body.get("run_id"), write=True, active=False))
    return {}


def _metric_batches(metrics: list[dict]) -> list[dict]:
    """MLflow's metric list (any order, keys repeating) → one series entry per key, in order.

    The hot path of log-batch (1,000 points a request): plain numbers and protobuf's int64
    strings are taken directly; anything else goes through the checks that name the field."""
    series: dict[str, dict] = {}
    for index, metric in enumerate(metrics):
        if type(metric) is not dict or type(key := metric.get("key")) is not str:
            field = f"metrics[{index}]"
            raise InvalidInput(f"{field}: must be an object with a string 'key'.", field=field)
        entry = series.get(key)
        if entry is None:
            entry = series[key] = {"name": key, "values": [], "steps": [], "times": []}
        value, step, stamp = metric.get("value"), metric.get("step", 0), metric.get("timestamp")
        if type(value) is not float and type(value) is not int:
            value = t.parse_number(value, field=f"metrics[{index}].value")
        # int() reads every isdecimal() string; others (signs, junk) go to the checks below.
        step = int(step) if type(step) is str and step.isdecimal() else step
        stamp = int(stamp) if type(stamp) is str and stamp.isdecimal() else stamp
        if type(step) is not int or not 0 <= step < 2**63:
            step = t.parse_int(step, field=f"metrics[{index}].step", default=0)
        if stamp is not None and (type(stamp) is not int or not 0 <= stamp < 2**63):
            stamp = t.parse_int(stamp, field=f"metrics[{index}].timestamp")
        entry["values"].append(value)
        entry["steps"].append(step)
        entry["times"].append(None if stamp is None else stamp / 1000)
    return list(series.values())


def _log_metrics(run: Run, metrics: list[dict]) -> None:
    if not metrics:
        return
    batches = _metric_batches(metrics)
    # MLflow's store keeps one copy of an identical (key, value, timestamp, step) point, so a
    # retried request (same body) stores its points once: the body's hash is the batch's key.
    key = "mlflow:" + hashlib.sha256(orjson.dumps(batches)).hexdigest()
    services.run_log_batch(run=run, metrics=batches, idempotency_key=key)


def _set_tags(run: Run, tags: list[tuple[str, object]]) -> None:
    ordinary, reserved = _split_tags(tags)
    if "parent" in reserved and reserved["parent"] != (run.parent.run_id if run.parent else ""):
        raise InvalidInput(
            "tags.mlflow.parentRunId: a run's parent is set when the run is created.",
            field="tags",
        )
    if "display_name" in reserved or "description" in reserved:
        services.run_update(
            run=run,
            display_name=reserved.get("display_name"),
            description=reserved.get("description"),
        )
    if ordinary:
        services.run_set_tags(
            run=run, set_tags={k: "" if v is None else v for k, v in ordinary.items()}
        )


def runs_log_metric(door: Door, body: dict) -> dict:
    run = _run(door, body.get("run_id") or body.get("run_uuid"), write=True)
    _log_metrics(run, [body])
    return {}


def runs_log_parameter(door: Door, body: dict) -> dict:
    run = _run(door, body.get("run_id") or body.get("run_uuid"), write=True)
    services.run_add_properties(run=run, properties={_str(body, "key"): body.get("value")})
    return {}


def runs_set_tag(door: Door, body: dict) -> dict:
    run = _run(door, body.get("run_id") or body.get("run_uuid"), write=True)
    _set_tags(run, [(_str(body, "key"), body.get("value"))])
    return {}


def runs_delete_tag(door: Door, body: dict) -> dict:
    run = _run(door, body.get("run_id"), write=True)
    key = _str(body, "key")
    if key == t.RUN_NAME_TAG:
        services.run_update(run=run, display_name="")
    elif key == t.NOTE_TAG:
        services.run_update(run=run, description="")
    elif not RunTag.objects.filter(run=run, key=key).exists():
        raise NotFound(f"No tag with name: {key} in run with id {run.run_id}.", field="key")
    else:
        services.run_set_tags(run=run, remove=[key])
    return {}


def runs_log_batch(door: Door, body: dict) -> dict:
    run = _run(door, body.get("run_id"), write=True)
    metrics = body.get("metrics") or []
    params = t.key_values(body.get("params"), field="params")
    tags = t.key_values(body.get("tags"), field="tags")
    for name, items, most in (
        ("metrics", metrics, t.MAX_METRICS_PER_BATCH),
        ("params", params, t.MAX_PARAMS_TAGS_PER_BATCH),
        ("tags", tags, t.MAX_PARAMS_TAGS_PER_BATCH),
    ):
        if not isinstance(items, list) or len(items) > most:
            raise InvalidInput(
                f"{name}: a batch holds at most {most} {name} (MLflow's limit); "
                f"got {len(items) if isinstance(items, list) else 'no list'}.",
                field=name,
            )
    if params:
        services.run_add_properties(run=run, properties=dict(params))
    _log_metrics(run, metrics)
    if tags:
        _set_tags(run, tags)
    return {}


def runs_accept(door: Door, body: dict) -> dict:
    """log-inputs / outputs: datasets and model links are accepted and not kept (yet)."""
    _run(door, body.get("run_id"), write=True)
    return {}


def runs_search(door: Door, body: dict) -> dict:
    ids = body.get("experiment_ids") or []
    if not isinstance(ids, list):
        raise InvalidInput("experiment_ids: must be a list.", field="experiment_ids")
    experiments = [_experiment(door, i) for i in ids]
    runs = Run.objects.filter(workspace=door.workspace, experiment__in=experiments)
    view = body.get("run_view_type") or "ACTIVE_ONLY"
    if view == "ACTIVE_ONLY":
        runs = runs.filter(archived_at__isnull=True)
    elif view == "DELETED_ONLY":
        runs = runs.filter(archived_at__isnull=False)
    runs = runs.filter(query.parse(t.filter_to_query(_str(body, "filter", ""))))
    limit = t.parse_int(body.get("max_results"), field="max_results", default=1000)
    if not 1 <= limit <= 50_000:
        raise InvalidInput("max_results: between 1 and 50000.", field="max_results")
    limit = min(limit, limits.PAGE_SIZE_MAX)  # bigger asks get this much and a page token
    offset, ceiling = t.page_token_decode(body.get("page_token"))
    if ceiling is None:
        ceiling = Run.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    runs = runs.filter(pk__lte=ceiling)
    ordered = selectors.run_sort(runs=runs, sort=t.order_to_sort(body.get("order_by") or []))
    ids = list(ordered.values_list("pk", flat=True)[offset : offset + limit + 1])
    by_pk = {r.pk: r for r in _with_details(Run.objects.filter(pk__in=ids[:limit]))}
    answer = {"runs": [t.run_json(by_pk[pk]) for pk in ids[:limit]]}
    if len(ids) > limit:
        answer["next_page_token"] = t.page_token_encode(offset=offset + limit, ceiling=ceiling)
    return answer


def metrics_get_history(door: Door, body: dict) -> dict:
    run = _run(door, body.get("run_id") or body.get("run_uuid"))
    key = _str(body, "metric_key")
    limit = t.parse_int(body.get("max_results"), field="max_results", default=25_000)
    limit = max(1, min(limit, limits.HISTORY_PAGE_MAX))
    after = -1
    if body.get("page_token"):
        after = t.parse_int(body["page_token"], field="page_token")
    series, points, next_seq = selectors.metric_history(
        run=run, name=key, after_seq=after, limit=limit
    )
    metrics = (
        [
            {"key": key, "value": t.number(v), "timestamp": int(ts * 1000), "step": s}
            for s, v, ts in zip(
                points.get("step", []), points.get("value", []), points.get("time", []), strict=True
            )
        ]
        if series is not None and series.kind == "scalar"
        else []
    )
    answer = {"metrics": metrics}
    if next_seq is not None:
        answer["next_page_token"] = str(next_seq)
    return answer


# --- logged models (MLflow 3) -------------------------------------------------------------------


def models_create(door: Door, body: dict) -> dict:
    door.require(Role.CONTRIBUTOR, "logging a model")
    experiment = _experiment(door, body.get("experiment_id") or t.DEFAULT_EXPERIMENT_ID)
    run_id = body.get("source_run_id")
    if not run_id:
        raise InvalidInput(
            "source_run_id: a logged model belongs to a run here; log it inside a run.",
            field="source_run_id",
        )
    run = _run(door, run_id, write=True)
    if run.experiment_id != experiment.pk:
        raise InvalidInput("experiment_id: the source run is in another experiment.")
    model = services.logged_model_create(
        run=run,
        name=body.get("name") or "model",
        model_type=body.get("model_type") or "",
        tags=dict(t.key_values(body.get("tags"), field="tags")),
        params=dict(t.key_values(body.get("params"), field="params")),
    )
    return {"model": t.model_json(model)}


def models_detail(door: Door, body: dict, model_id: str, method: str) -> dict:
    if method == "GET":
        return {"model": t.model_json(_model(door, model_id))}
    model = _model(door, model_id, write=True)
    if method == "DELETE":
        services.logged_model_archive(model=model)
        return {}
    status = t.MODEL_STATUS_IN.get(_str(body, "status", ""))
    if status is None:
        raise InvalidInput(f"status: one of {', '.join(t.MODEL_STATUS_IN)}.", field="status")
    model = services.logged_model_finalize(model=model, status=status)
    return {"model": t.model_json(_model(door, model_id))}


def models_tags(door: Door, body: dict, model_id: str, method: str, key: str = "") -> dict:
    model = _model(door, model_id, write=True)
    if method == "DELETE":
        services.logged_model_update(model=model, remove_tags=[key])
    else:
        services.logged_model_update(
            model=model, set_tags=dict(t.key_values(body.get("tags"), field="tags"))
        )
    return {}


def models_params(door: Door, body: dict, model_id: str, method: str) -> dict:
    model = _model(door, model_id, write=True)
    services.logged_model_update(
        model=model, params=dict(t.key_values(body.get("params"), field="params"))
    )
    return {}


def models_search(door: Door, body: dict) -> dict:
    ids = body.get("experiment_ids") or []
    if not isinstance(ids, list):
        raise InvalidInput("experiment_ids: must be a list.", field="experiment_ids")
    models = LoggedModel.objects.select_related("run", "experiment").filter(
        workspace=door.workspace,
        experiment__in=[_experiment(door, i) for i in ids],
        archived_at__isnull=True,
    )
    text = _str(body, "filter", "").strip()
    if text:
        match = re.fullmatch(
            r"(?:attributes\.)?(name|source_run_id|model_id)\s*=\s*'([^']*)'", text
        )
        if match is None:
            raise InvalidInput(
                "filter: logged models are searched by name, source_run_id or model_id "
                "(name = 'x').",
                field="filter",
            )
        field = {"name": "name", "source_run_id": "run__run_id", "model_id": "model_id"}
        models = models.filter(**{field[match.group(1)]: match.group(2)})
    limit = max(
        1, min(t.parse_int(body.get("max_results"), field="max_results", default=100), 1000)
    )
    offset, _ = t.page_token_decode(body.get("page_token"))
    page = list(models.order_by("-created_at", "-id")[offset : offset + limit + 1])
    answer = {"models": [t.model_json(m) for m in page[:limit]]}
    if len(page) > limit:
        answer["next_page_token"] = t.page_token_encode(offset=offset + limit, ceiling=0)
    return answer


def models_artifacts(door: Door, body: dict, model_id: str, method: str) -> dict:
    model = _model(door, model_id)
    folder = services.logged_model_folder(model)
    sub = body.get("artifact_directory_path") or ""
    return {"files": _list_files(model.run, f"{folder}/{sub}".rstrip("/"))}


# --- artifacts ----------------------------------------------------------------------------------


def _list_files(run: Run, folder: str) -> list[dict]:
    """The entries right below `folder` of the run's tree: files with sizes, folders once."""
    prefix = folder.rstrip("/") + "/" if folder else ""
    entries: dict[str, dict] = {}
    for record in selectors.run_files(run=run, prefix=prefix)[: limits.LIST_MAX]:
        rest = record.path[len(prefix) :]
        head, slash, _ = rest.partition("/")
        if slash:
            entries.setdefault(head, {"path": head, "is_dir": True})
        else:
            entries[head] = {"path": head, "is_dir": False, "file_size": record.size}
    return [entries[k] for k in sorted(entries)]


def _artifact_target(door: Door, path: str, *, write: bool) -> tuple[Run, str]:
    """`runs/<run id>/<path in the run's tree>` → (run, checked path)."""
    kind, _, rest = path.strip("/").partition("/")
    run_id, _, tree_path = rest.partition("/")
    if kind != "runs" or not run_id:
        raise NotFound(f"No artifact at {path!r}.", field="path")
    run = _run(door, run_id, write=write)
    if tree_path:
        tree_path = storage.check_path(tree_path)
    if write and not (tree_path + "/").startswith(ARTIFACTS_PREFIX + "/"):
        raise InvalidInput(
            f"path: MLflow artifacts are written under the run's {ARTIFACTS_PREFIX}/ folder.",
            field="path",
        )
    return run, tree_path


def artifacts(request, door: Door, path: str):
    if request.method == "GET" and not path:
        run, folder = _artifact_target(door, request.GET.get("path", ""), write=False)
        return _json({"files": _list_files(run, folder)})
    if request.method == "PUT":
        run, tree_path = _artifact_target(door, path, write=True)
        size = request.META.get("CONTENT_LENGTH") or ""
        if not (size.isascii() and size.isdecimal()):
            raise LengthRequired("body: send Content-Length.", field="body")
        services.run_file_write(run=run, path=tree_path, stream=request, size=int(size))
        return _json({})
    if request.method == "DELETE":
        run, tree_path = _artifact_target(door, path, write=True)
        services.run_files_delete(run=run, path=tree_path)
        return _json({})
    if request.method == "GET":
        run, tree_path = _artifact_target(door, path, write=False)
        storage.run_file_get(run=run, path=tree_path)
        return StreamingHttpResponse(
            storage.run_file_iter(run=run, path=tree_path), content_type="application/octet-stream"
        )
    raise MlflowError("ENDPOINT_NOT_FOUND", f"{request.method} is not served here.", 405)


# --- routing ------------------------------------------------------------------------------------

Handler = Callable[[Door, dict], dict]

ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "experiments/create"): experiments_create,
    ("GET", "experiments/get"): experiments_get,
    ("GET", "experiments/get-by-name"): experiments_get_by_name,
    ("POST", "experiments/search"): experiments_search,
    ("GET", "experiments/search"): experiments_search,
    ("POST", "experiments/update"): experiments_update,
    ("POST", "experiments/delete"): experiments_delete,
    ("POST", "experiments/restore"): experiments_restore,
    ("POST", "experiments/set-experiment-tag"): experiments_set_tag,
    ("POST", "experiments/delete-experiment-tag"): experiments_delete_tag,
    ("POST", "runs/create"): runs_create,
    ("GET", "runs/get"): runs_get,
    ("POST", "runs/update"): runs_update,
    ("POST", "runs/delete"): runs_delete,
    ("POST", "runs/restore"): runs_restore,
    ("POST", "runs/log-metric"): runs_log_metric,
    ("POST", "runs/log-parameter"): runs_log_parameter,
    ("POST", "runs/set-tag"): runs_set_tag,
    ("POST", "runs/delete-tag"): runs_delete_tag,
    ("POST", "runs/log-batch"): runs_log_batch,
    ("POST", "runs/log-inputs"): runs_accept,
    ("POST", "runs/outputs"): runs_accept,
    ("POST", "runs/search"): runs_search,
    ("GET", "metrics/get-history"): metrics_get_history,
    ("POST", "logged-models"): models_create,
    ("POST", "logged-models/search"): models_search,
}


_REQUIRED = object()


def _str(body: dict, name: str, default: object = _REQUIRED) -> str:
    """A text field of the request; a number, list or object there is a 400 naming it."""
    value = body.get(name)
    if value is None and default is not _REQUIRED:
        return default
    if not isinstance(value, str):
        raise InvalidInput(f"{name}: required, as a string.", field=name)
    return value


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
    return data


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
        door = _door(request, workspace)
        handler = ROUTES.get((request.method, path.strip("/")))
        if handler is not None:
            return _json(handler(door, _body(request)))
        if path.startswith("logged-models/") and path != "logged-models/search":
            answer = _model_route(door, request, path.strip("/"))
            if answer is not None:
                return _json(answer)
        raise MlflowError(
            "ENDPOINT_NOT_FOUND",
            f"{request.method} api/2.0/mlflow/{path} is not served by Runstudio's MLflow door.",
            404,
        )
    except MlflowError as exc:
        return _error(exc.code, exc.message, exc.status)
    except ServiceError as exc:
        return _service_error(exc)


@csrf_exempt
def artifacts_api(request, path: str | None = None, workspace: str | None = None):
    """Every `api/2.0/mlflow-artifacts/artifacts[/<path>]` call."""
    try:
        return artifacts(request, _door(request, workspace), path or "")
    except MlflowError as exc:
        return _error(exc.code, exc.message, exc.status)
    except ServiceError as exc:
        return _service_error(exc)


def server_info(request, workspace: str | None = None) -> HttpResponse:
    """What the client asks before using MLFLOW_WORKSPACE (and before multipart transfers).
    Says nothing about any workspace, so it needs no credentials."""
    return _json(
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
