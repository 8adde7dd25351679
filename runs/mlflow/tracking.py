"""The tracking API's calls (`api/2.0/mlflow/<path>`): each takes the Door and the request's
fields and returns MLflow's response body. Reads through selectors, writes through services."""

import hashlib
import re
from collections.abc import Callable

import orjson
from django.db.models import Q

from runs import limits, query, selectors, services
from runs.errors import InvalidInput, NotFound
from runs.mlflow import translate as t
from runs.mlflow.artifacts import list_files
from runs.mlflow.door import (
    Door,
    MlflowError,
    load_experiment,
    load_experiment_by_name,
    load_model,
    load_run,
    run_json,
    text_field,
    with_details,
)
from runs.models import (
    Experiment,
    LoggedModel,
    MetricKind,
    Role,
    Run,
    RunAction,
    RunTag,
)
from runs.services import RunSpec, run_management
from runs.validation import check_name

# --- experiments --------------------------------------------------------------------------------


def experiments_create(door: Door, body: dict) -> dict:
    door.require(Role.CONTRIBUTOR, "creating an experiment")
    tags = dict(t.key_values(body.get("tags"), field="tags"))
    experiment = services.experiment_create(
        workspace=door.workspace, name=body.get("name"), tags=tags
    )
    return {"experiment_id": t.experiment_id(experiment)}


def experiments_get(door: Door, body: dict) -> dict:
    return {"experiment": t.experiment_json(load_experiment(door, body.get("experiment_id")))}


def experiments_get_by_name(door: Door, body: dict) -> dict:
    return {
        "experiment": t.experiment_json(load_experiment_by_name(door, body.get("experiment_name")))
    }


def experiments_search(door: Door, body: dict) -> dict:
    view = body.get("view_type") or "ACTIVE_ONLY"
    experiments = Experiment.objects.filter(workspace=door.workspace)
    if view == "ACTIVE_ONLY":
        experiments = experiments.filter(archived_at__isnull=True)
    elif view == "DELETED_ONLY":
        experiments = experiments.filter(archived_at__isnull=False)
    if text_field(body, "filter", ""):
        # Only name filters, the ones MLflow's own clients send (`name = 'x'`, `name LIKE …`).
        experiments = experiments.filter(_experiment_filter(body["filter"]))
    return t.newest_first_page(
        experiments, body, key="experiments", render=t.experiment_json, default_size=1000
    )


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
    experiment = load_experiment(door, body.get("experiment_id"))
    services.experiment_rename(experiment=experiment, name=body.get("new_name"))
    return {}


def experiments_delete(door: Door, body: dict) -> dict:
    door.require(Role.CONTRIBUTOR, "deleting an experiment")
    experiment = load_experiment(door, body.get("experiment_id"))
    if experiment.name == t.DEFAULT_EXPERIMENT_NAME:
        raise InvalidInput("experiment_id: the Default experiment cannot be deleted.")
    services.experiment_archive(experiment=experiment, by=door.user)
    return {}


def experiments_restore(door: Door, body: dict) -> dict:
    door.require(Role.CONTRIBUTOR, "restoring an experiment")
    experiment = load_experiment(door, body.get("experiment_id"))
    services.experiment_restore(experiment=experiment, by=door.user)
    return {}


def experiments_set_tag(door: Door, body: dict) -> dict:
    door.require(Role.CONTRIBUTOR, "tagging an experiment")
    experiment = load_experiment(door, body.get("experiment_id"))
    services.experiment_set_tags(
        experiment=experiment, set_tags={text_field(body, "key"): body.get("value")}
    )
    return {}


def experiments_delete_tag(door: Door, body: dict) -> dict:
    door.require(Role.CONTRIBUTOR, "tagging an experiment")
    experiment = load_experiment(door, body.get("experiment_id"))
    services.experiment_set_tags(experiment=experiment, remove=[text_field(body, "key")])
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
    experiment = load_experiment(door, body.get("experiment_id") or t.DEFAULT_EXPERIMENT_ID)
    if experiment.archived_at is not None:
        raise MlflowError("INVALID_STATE", f"Experiment {experiment.name!r} is deleted.")
    tags, reserved = _split_tags(t.key_values(body.get("tags"), field="tags"))
    parent = load_run(door, reserved["parent"]) if reserved.get("parent") else None
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
    return {"run": run_json(run)}


def runs_get(door: Door, body: dict) -> dict:
    return {"run": run_json(load_run(door, body.get("run_id") or body.get("run_uuid")))}


def runs_update(door: Door, body: dict) -> dict:
    run = load_run(door, body.get("run_id") or body.get("run_uuid"), write=True)
    if body.get("run_name"):
        services.run_update(run=run, display_name=body["run_name"])
    status = text_field(body, "status", "")
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
    run_info = run_json(run)["info"]
    return {"run_info": run_info}


def runs_delete(door: Door, body: dict) -> dict:
    """MLflow's soft delete is the studio's archive, through the one path every door takes:
    the run's descendants go with it and the archive is recorded (RunActivity)."""
    run = load_run(door, body.get("run_id"), write=True, active=False)
    run_management.run_bulk_apply(
        membership=door.membership, action=RunAction.ARCHIVE, run_ids=[run.run_id]
    )
    return {}


def runs_restore(door: Door, body: dict) -> dict:
    """Brings back the run and what was archived with it (the studio's restore)."""
    run = load_run(door, body.get("run_id"), write=True, active=False)
    run_management.run_bulk_apply(
        membership=door.membership, action=RunAction.RESTORE, run_ids=[run.run_id]
    )
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
    run = load_run(door, body.get("run_id") or body.get("run_uuid"), write=True)
    _log_metrics(run, [body])
    return {}


def runs_log_parameter(door: Door, body: dict) -> dict:
    run = load_run(door, body.get("run_id") or body.get("run_uuid"), write=True)
    services.run_add_properties(run=run, properties={text_field(body, "key"): body.get("value")})
    return {}


def runs_set_tag(door: Door, body: dict) -> dict:
    run = load_run(door, body.get("run_id") or body.get("run_uuid"), write=True)
    _set_tags(run, [(text_field(body, "key"), body.get("value"))])
    return {}


def runs_delete_tag(door: Door, body: dict) -> dict:
    run = load_run(door, body.get("run_id"), write=True)
    key = text_field(body, "key")
    # Checked before the lookup: a key the rules refuse (a NUL, say) is a 400, and PostgreSQL
    # would refuse to even compare it.
    check_name(key, field="key", what="key")
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
    run = load_run(door, body.get("run_id"), write=True)
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


def runs_log_inputs(door: Door, body: dict) -> dict:
    """Datasets (with their input tags: `mlflow.data.context`…) and logged models a run used."""
    run = load_run(door, body.get("run_id"), write=True)
    datasets = body.get("datasets") or []
    models = body.get("models") or []
    if not isinstance(datasets, list) or not isinstance(models, list):
        raise InvalidInput("datasets, models: must be lists.", field="datasets")
    services.run_log_inputs(
        run=run,
        datasets=[t.dataset_in(item, field=f"datasets[{i}]") for i, item in enumerate(datasets)],
        model_ids=[t.model_ref_in(item, field=f"models[{i}]")[0] for i, item in enumerate(models)],
    )
    return {}


def runs_log_outputs(door: Door, body: dict) -> dict:
    """MLflow 3's log-outputs: the logged models a run produced (log_model sends one)."""
    run = load_run(door, body.get("run_id"), write=True)
    models = body.get("models") or []
    if not isinstance(models, list):
        raise InvalidInput("models: must be a list.", field="models")
    pairs = [t.model_ref_in(item, field=f"models[{i}]") for i, item in enumerate(models)]
    services.run_log_outputs(run=run, models=pairs)
    return {}


def runs_search(door: Door, body: dict) -> dict:
    ids = body.get("experiment_ids") or []
    if not isinstance(ids, list):
        raise InvalidInput("experiment_ids: must be a list.", field="experiment_ids")
    experiments = [load_experiment(door, i) for i in ids]
    runs = Run.objects.filter(workspace=door.workspace, experiment__in=experiments)
    view = body.get("run_view_type") or "ACTIVE_ONLY"
    if view == "ACTIVE_ONLY":
        runs = runs.filter(archived_at__isnull=True)
    elif view == "DELETED_ONLY":
        runs = runs.filter(archived_at__isnull=False)
    runs = runs.filter(query.parse(t.filter_to_query(text_field(body, "filter", ""))))
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
    by_pk = {r.pk: r for r in with_details(Run.objects.filter(pk__in=ids[:limit]))}
    answer = {"runs": [t.run_json(by_pk[pk]) for pk in ids[:limit]]}
    if len(ids) > limit:
        answer["next_page_token"] = t.page_token_encode(offset=offset + limit, ceiling=ceiling)
    return answer


def metrics_get_history(door: Door, body: dict) -> dict:
    run = load_run(door, body.get("run_id") or body.get("run_uuid"))
    key = text_field(body, "metric_key")
    limit = t.parse_int(body.get("max_results"), field="max_results", default=25_000)
    limit = max(1, min(limit, limits.HISTORY_PAGE_MAX))
    after = -1
    if body.get("page_token"):
        after = t.parse_int(body["page_token"], field="page_token")
    series = run.metric_series.filter(name=key).first()
    if series is None or series.kind != MetricKind.SCALAR:
        return {"metrics": []}
    rows = selectors.metric_point_rows(series=series, after_seq=after, limit=limit + 1)
    number = t.number
    # The hot loop of a 1,000,000-point history: one dict per row straight from the database
    # row; `v - v == 0` holds for every finite float, so only NaN (NULL) and ±inf take the call.
    # round(), not int(): a time stored as seconds (ms / 1000) can read back as x.9999… ms.
    metrics = [
        {
            "key": key,
            "value": v if v is not None and v - v == 0 else number(v),
            "timestamp": round(ts * 1000),
            "step": s,
        }
        for _, s, v, ts in rows[:limit]
    ]
    answer = {"metrics": metrics}
    if len(rows) > limit:
        answer["next_page_token"] = str(rows[limit - 1][0])
    return answer


# --- logged models (MLflow 3) -------------------------------------------------------------------


def models_create(door: Door, body: dict) -> dict:
    door.require(Role.CONTRIBUTOR, "logging a model")
    experiment = load_experiment(door, body.get("experiment_id") or t.DEFAULT_EXPERIMENT_ID)
    run_id = body.get("source_run_id")
    if not run_id:
        raise InvalidInput(
            "source_run_id: a logged model belongs to a run here; log it inside a run.",
            field="source_run_id",
        )
    run = load_run(door, run_id, write=True)
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
        return {"model": t.model_json(load_model(door, model_id))}
    model = load_model(door, model_id, write=True)
    if method == "DELETE":
        services.logged_model_archive(model=model)
        return {}
    status = t.MODEL_STATUS_IN.get(text_field(body, "status", ""))
    if status is None:
        raise InvalidInput(f"status: one of {', '.join(t.MODEL_STATUS_IN)}.", field="status")
    model = services.logged_model_finalize(model=model, status=status)
    return {"model": t.model_json(load_model(door, model_id))}


def models_tags(door: Door, body: dict, model_id: str, method: str, key: str = "") -> dict:
    model = load_model(door, model_id, write=True)
    if method == "DELETE":
        services.logged_model_update(model=model, remove_tags=[key])
    else:
        services.logged_model_update(
            model=model, set_tags=dict(t.key_values(body.get("tags"), field="tags"))
        )
    return {}


def models_params(door: Door, body: dict, model_id: str, method: str) -> dict:
    model = load_model(door, model_id, write=True)
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
        experiment__in=[load_experiment(door, i) for i in ids],
        archived_at__isnull=True,
    )
    text = text_field(body, "filter", "").strip()
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
    return t.newest_first_page(models, body, key="models", render=t.model_json, default_size=100)


def models_artifacts(door: Door, body: dict, model_id: str, method: str) -> dict:
    model = load_model(door, model_id)
    folder = services.logged_model_folder(model)
    sub = body.get("artifact_directory_path") or ""
    return {"files": list_files(model.run, f"{folder}/{sub}".rstrip("/"))}


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
    ("POST", "runs/log-inputs"): runs_log_inputs,
    ("POST", "runs/outputs"): runs_log_outputs,
    ("POST", "runs/search"): runs_search,
    ("GET", "metrics/get-history"): metrics_get_history,
    ("POST", "logged-models"): models_create,
    ("POST", "logged-models/search"): models_search,
}
