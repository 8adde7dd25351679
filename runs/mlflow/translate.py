"""MLflow's shapes ↔ Runstudio's: ids, statuses, reserved tags, JSON renderings, and
`filter_string` / `order_by` onto the one search language (runs/query.py).

Pure functions over models and plain values; the views call the services and selectors."""

import base64
import binascii
import math
import re
from collections.abc import Callable
from typing import Any

import orjson

from runs import limits, query
from runs.errors import InvalidInput
from runs.models import (
    Experiment,
    LoggedModel,
    LoggedModelStatus,
    MetricKind,
    Run,
    RunInputKind,
    RunStatus,
)

# The workspace's Default experiment is MLflow's experiment "0" (`mlflow.start_run()` with no
# experiment set logs there).
DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"

# MLflow status ↔ Runstudio status. Several studio states read as one MLflow state.
STATUS_IN = {
    "RUNNING": RunStatus.RUNNING,
    "SCHEDULED": RunStatus.QUEUED,
    "FINISHED": RunStatus.COMPLETED,
    "FAILED": RunStatus.FAILED,
    "KILLED": RunStatus.CANCELED,
}
STATUS_OUT = {
    RunStatus.NOT_STARTED: "SCHEDULED",
    RunStatus.QUEUED: "SCHEDULED",
    RunStatus.PREPARING: "SCHEDULED",
    RunStatus.RUNNING: "RUNNING",
    RunStatus.FINALIZING: "RUNNING",
    RunStatus.CANCEL_REQUESTED: "RUNNING",
    RunStatus.COMPLETED: "FINISHED",
    RunStatus.FAILED: "FAILED",
    RunStatus.CANCELED: "KILLED",
}

# Reserved tags that are run attributes here, not tags.
RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"
PARENT_TAG = "mlflow.parentRunId"
USER_TAG = "mlflow.user"
RESERVED_ATTRIBUTES = {RUN_NAME_TAG: "display_name", NOTE_TAG: "description", PARENT_TAG: "parent"}

MODEL_STATUS_OUT = {
    LoggedModelStatus.PENDING: "LOGGED_MODEL_PENDING",
    LoggedModelStatus.READY: "LOGGED_MODEL_READY",
    LoggedModelStatus.FAILED: "LOGGED_MODEL_UPLOAD_FAILED",
}
MODEL_STATUS_IN = {v: k for k, v in MODEL_STATUS_OUT.items()}

# MLflow's own limits for one log-batch request (mlflow/utils/validation.py).
MAX_METRICS_PER_BATCH = 1_000
MAX_PARAMS_TAGS_PER_BATCH = 100


def ms(moment) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def number(value: float | None) -> float | str:
    """A double as MLflow's JSON carries it: NaN and ±inf as strings (protobuf's JSON form)."""
    if value is None or math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def parse_number(value: Any, *, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInput(f"{field}: {value!r} is not a number.", field=field)
    try:
        return float(value)
    except ValueError:
        raise InvalidInput(f"{field}: {value!r} is not a number.", field=field) from None


def parse_int(value: Any, *, field: str, default: int | None = None) -> int | None:
    """protobuf's JSON sends int64 fields as strings ("1700000000000")."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise InvalidInput(f"{field}: {value!r} is not a whole number.", field=field)
    try:
        result = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{field}: {value!r} is not a whole number.", field=field) from None
    if not -(2**63) <= result < 2**63:
        raise InvalidInput(f"{field}: {value!r} does not fit in 64 bits.", field=field)
    return result


def key_values(items: Any, *, field: str) -> list[tuple[str, Any]]:
    """[{"key": k, "value": v}, …] → [(k, v), …], checked."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidInput(f"{field}: must be a list of {{key, value}} objects.", field=field)
    out = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise InvalidInput(
                f"{field}[{index}]: must be an object with a string 'key'.",
                field=f"{field}[{index}]",
            )
        out.append((item["key"], item.get("value")))
    return out


# --- experiments ------------------------------------------------------------------------------


def experiment_id(experiment: Experiment) -> str:
    return (
        DEFAULT_EXPERIMENT_ID if experiment.name == DEFAULT_EXPERIMENT_NAME else str(experiment.pk)
    )


def experiment_json(experiment: Experiment) -> dict:
    return {
        "experiment_id": experiment_id(experiment),
        "name": experiment.name,
        "artifact_location": f"mlflow-artifacts:/experiments/{experiment_id(experiment)}",
        "lifecycle_stage": "deleted" if experiment.archived_at else "active",
        "creation_time": ms(experiment.created_at),
        "last_update_time": ms(experiment.archived_at or experiment.created_at),
        "tags": [{"key": k, "value": v} for k, v in experiment.tags.items()],
    }


# --- runs -------------------------------------------------------------------------------------


def artifact_uri(run: Run) -> str:
    """The run's MLflow artifact root: its `outputs/` folder, through the artifact proxy."""
    return f"mlflow-artifacts:/runs/{run.run_id}/outputs"


def run_name(run: Run) -> str:
    return run.display_name or run.run_id


def run_json(run: Run) -> dict:
    """Needs the run's experiment, parent, submitter, tags, properties and metric_series
    loaded (views.RUN_DETAILS)."""
    tags = {t.key: "" if t.value is None else t.value for t in run.tags.all()}
    tags[RUN_NAME_TAG] = run_name(run)
    if run.description:
        tags[NOTE_TAG] = run.description
    if run.parent_id:
        tags[PARENT_TAG] = run.parent.run_id
    if run.submitter_id and USER_TAG not in tags:
        tags[USER_TAG] = run.submitter.username
    metrics = [
        {
            "key": s.name,
            "value": number(s.last_value),
            "timestamp": ms(s.updated_at),
            "step": s.last_step or 0,
        }
        for s in run.metric_series.all()
        if s.kind == MetricKind.SCALAR and s.count
    ]
    return {
        "info": {
            "run_id": run.run_id,
            "run_uuid": run.run_id,
            "run_name": run_name(run),
            "experiment_id": experiment_id(run.experiment),
            "user_id": run.submitter.username if run.submitter_id else "",
            "status": STATUS_OUT[run.status],
            "start_time": ms(run.started_at or run.created_at),
            "end_time": ms(run.ended_at),
            "artifact_uri": artifact_uri(run),
            "lifecycle_stage": "deleted" if run.archived_at else "active",
        },
        "data": {
            "metrics": metrics,
            "params": [{"key": p.key, "value": p.value} for p in run.properties.all()],
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        },
        **run_inputs_json(run.inputs.all()),
    }


def run_inputs_json(inputs) -> dict:
    """A run's RunInput rows as MLflow's `inputs` and `outputs`."""
    datasets, models_in, models_out = [], [], []
    for item in inputs:
        if item.kind == RunInputKind.DATASET:
            dataset = {
                "name": item.name,
                "digest": item.digest,
                "source_type": item.source_type,
                "source": item.source,
            }
            if item.schema:
                dataset["schema"] = item.schema
            if item.profile:
                dataset["profile"] = item.profile
            tags = [{"key": k, "value": v} for k, v in item.tags.items()]
            datasets.append({"tags": tags, "dataset": dataset})
        elif item.kind == RunInputKind.MODEL_INPUT:
            models_in.append({"model_id": item.name})
        else:
            models_out.append({"model_id": item.name, "step": item.step})
    return {
        "inputs": {"dataset_inputs": datasets, "model_inputs": models_in},
        "outputs": {"model_outputs": models_out},
    }


def dataset_in(item: Any, *, field: str) -> dict:
    """One of MLflow's DatasetInput ({"tags": [{key, value}], "dataset": {name, digest,
    source_type, source, schema, profile}}) → run_log_inputs' flat dataset."""
    if not isinstance(item, dict) or not isinstance(item.get("dataset"), dict):
        raise InvalidInput(f"{field}: must be an object with a 'dataset' object.", field=field)
    tags = dict(key_values(item.get("tags"), field=f"{field}.tags"))
    return {**item["dataset"], "tags": tags}


def model_ref_in(item: Any, *, field: str) -> tuple[str, int]:
    """One of MLflow's LoggedModelInput / LoggedModelOutput → (model id, step)."""
    if not isinstance(item, dict) or not isinstance(item.get("model_id"), str):
        raise InvalidInput(f"{field}: must be an object with a string 'model_id'.", field=field)
    step = parse_int(item.get("step"), field=f"{field}.step", default=0)
    return item["model_id"], step


# --- logged models ----------------------------------------------------------------------------


def model_artifact_uri(model: LoggedModel) -> str:
    return f"mlflow-artifacts:/runs/{model.run.run_id}/outputs/models/{model.model_id}"


def model_json(model: LoggedModel) -> dict:
    return {
        "info": {
            "model_id": model.model_id,
            "experiment_id": experiment_id(model.experiment),
            "name": model.name,
            "artifact_uri": model_artifact_uri(model),
            "creation_timestamp_ms": ms(model.created_at),
            "last_updated_timestamp_ms": ms(model.updated_at),
            "status": MODEL_STATUS_OUT[model.status],
            "status_message": model.status_message,
            "model_type": model.model_type,
            "source_run_id": model.run.run_id,
            "tags": [{"key": k, "value": v} for k, v in model.tags.items()],
        },
        "data": {"params": [{"key": k, "value": v} for k, v in model.params.items()]},
    }


# --- search: filter_string and order_by onto runs/query.py ------------------------------------

_RESERVED = "|".join(re.escape(k) for k in RESERVED_ATTRIBUTES)
# A reserved tag key in any of MLflow's spellings (tags.mlflow.runName, tags.`mlflow.runName`,
# tags."mlflow.runName"), or a quoted string, which is kept as it is: scanning strings whole
# means a key spelled inside a value ('tags.mlflow.runName') is never rewritten.
_TOKENS = re.compile(
    rf"""(?<![\w.`])(?:tags?)\.(?:`(?P<k1>{_RESERVED})`|"(?P<k2>{_RESERVED})"|(?P<k3>{_RESERVED})(?![\w.]))"""
    r"""|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""",
    re.IGNORECASE,
)
_CANONICAL = {k.lower(): k for k in RESERVED_ATTRIBUTES}


def _rewrite(match: re.Match) -> str:
    key = match.group("k1") or match.group("k2") or match.group("k3")
    if key is None:
        return match.group(0)
    return RESERVED_ATTRIBUTES[_CANONICAL[key.lower()]]


def filter_to_query(filter_string: str) -> str:
    """MLflow's filter_string in the one search language: its grammar is a subset of ours
    (attributes, params./metrics./tags., = != < > <= >= LIKE ILIKE IN NOT IN, AND; status
    names via query.MLFLOW_STATUSES); only the reserved tags that are run attributes here
    (mlflow.runName → display_name, mlflow.note.content → description, mlflow.parentRunId →
    parent) are renamed."""
    return _TOKENS.sub(_rewrite, filter_string or "")


_ORDER = re.compile(r"^\s*(?P<key>.+?)(?:\s+(?P<dir>asc|desc))?\s*$", re.IGNORECASE | re.DOTALL)


def order_to_sort(order_by: list[str]) -> list[str]:
    """MLflow's order_by (["metrics.loss ASC", "params.lr DESC", …]) → run_sort keys
    (["metrics.loss", "-properties.lr", …]): every clause in turn, then MLflow's own tie-breaks
    — newest start first (unless a clause already orders by start time), then the run id."""
    if not order_by:
        order_by = []
    if not isinstance(order_by, list) or not all(isinstance(c, str) for c in order_by):
        raise InvalidInput("order_by: must be a list of strings.", field="order_by")
    if len(order_by) > limits.SORT_KEYS_MAX:
        raise InvalidInput(
            f"order_by: {len(order_by)} clauses; at most {limits.SORT_KEYS_MAX} (SORT_KEYS_MAX).",
            field="order_by",
        )
    keys = []
    for clause in order_by:
        match = _ORDER.match(clause)
        if match is None:
            raise InvalidInput(f"order_by: {clause!r} is not 'key [ASC|DESC]'.", field="order_by")
        key = filter_to_query(match.group("key"))
        descending = (match.group("dir") or "asc").lower() == "desc"
        keys.append(("-" if descending else "") + key)
    if not any(_is_start_time(k) for k in keys):
        keys.append("-started")
    keys.append("run_id")
    return keys


def _is_start_time(key: str) -> bool:
    try:
        field = query.parse_field(key.lstrip("-"))
    except query.QueryError:
        return False  # run_sort names the bad key
    return field.kind == "attribute" and field.name == "started"


# Page tokens: the offset and the highest run pk of the first page, so runs created while a
# client pages (they get higher pks) never shift a later page.


def page_token_encode(*, offset: int, ceiling: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"o": offset, "c": ceiling})).decode()


def page_token_decode(token: str | None) -> tuple[int, int | None]:
    if not token:
        return 0, None
    if not isinstance(token, str):
        raise InvalidInput("page_token: must be a string.", field="page_token")
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        offset, ceiling = int(data["o"]), int(data["c"])
    except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise InvalidInput(
            "page_token: not a token this server gave; start again without one.",
            field="page_token",
        ) from None
    if offset < 0 or not 0 <= ceiling < 2**63:
        raise InvalidInput("page_token: out of range.", field="page_token")
    return offset, ceiling


def newest_first_page(
    queryset, body: dict, *, key: str, render: Callable[[Any], dict], default_size: int
) -> dict:
    """A page of experiments or logged models, newest first, as MLflow's search answers
    (`max_results` clamped to 1–1000, an offset token; no ceiling: unlike runs, nobody pages
    these while creating them by the thousand)."""
    limit = parse_int(body.get("max_results"), field="max_results", default=default_size)
    limit = max(1, min(limit, 1000))
    offset, _ = page_token_decode(body.get("page_token"))
    page = list(queryset.order_by("-created_at", "-id")[offset : offset + limit + 1])
    answer = {key: [render(item) for item in page[:limit]]}
    if len(page) > limit:
        answer["next_page_token"] = page_token_encode(offset=offset + limit, ceiling=0)
    return answer
