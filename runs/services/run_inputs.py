"""What a run read and produced: datasets (MLflow's `log_input`) and logged models used or
produced (MLflow 3's log-inputs `models` and log-outputs). Each is logged once: the same
dataset (name and digest) or model again is a no-op, as in MLflow's own store, so a retried
request or an autologger that logs its training set on every `fit` adds nothing."""

from typing import Any

from django.db import transaction

from runs import limits
from runs.errors import InvalidInput, NotFound
from runs.models import LoggedModel, Run, RunInput, RunInputKind
from runs.validation import check_line, check_mapping, check_name, check_text


def _check_count(items: Any, *, field: str) -> list:
    if not isinstance(items, list | tuple):
        raise InvalidInput(f"{field}: must be a list.", field=field)
    if len(items) > limits.RUN_INPUTS_PER_REQUEST:
        raise InvalidInput(
            f"{field}: {len(items)} entries; at most {limits.RUN_INPUTS_PER_REQUEST} a request "
            "(RUN_INPUTS_PER_REQUEST). Split them.",
            field=field,
        )
    return list(items)


def _check_input_tags(tags: Any, *, field: str) -> dict[str, str]:
    check_mapping(tags, field=field, most=limits.INPUT_TAGS_MAX)
    for key, value in tags.items():
        check_name(key, field=f"{field}.{key}", what="key")
        check_line(value, field=f"{field}.{key}", max_length=limits.INPUT_TAG_VALUE_MAX_LENGTH)
    return dict(tags)


def _dataset(item: Any, *, field: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise InvalidInput(f"{field}: must be an object.", field=field)

    def line(name: str, max_length: int, *, required: bool = True) -> str:
        value = item.get(name)
        if value is None and not required:
            return ""
        if required and not value:
            raise InvalidInput(f"{field}.{name}: required.", field=f"{field}.{name}")
        return check_line(value, field=f"{field}.{name}", max_length=max_length)

    def text(name: str, max_length: int) -> str:
        value = item.get(name)
        return (
            ""
            if value is None
            else check_text(value, field=f"{field}.{name}", max_length=max_length)
        )

    return {
        "name": line("name", limits.DATASET_NAME_MAX_LENGTH),
        "digest": line("digest", limits.DATASET_DIGEST_MAX_LENGTH),
        "source_type": line("source_type", limits.DATASET_SOURCE_TYPE_MAX_LENGTH),
        "source": text("source", limits.DATASET_SOURCE_MAX_LENGTH),
        "schema": text("schema", limits.DATASET_SCHEMA_MAX_LENGTH),
        "profile": text("profile", limits.DATASET_PROFILE_MAX_LENGTH),
        "tags": _check_input_tags(item.get("tags") or {}, field=f"{field}.tags"),
    }


def _models_of(run: Run, model_ids: list[Any], *, field: str) -> list[str]:
    """The ids, checked to be logged models of the run's workspace. One elsewhere reads like
    one that does not exist."""
    for index, model_id in enumerate(model_ids):
        if not isinstance(model_id, str) or not model_id:
            raise InvalidInput(f"{field}[{index}]: a model id.", field=f"{field}[{index}]")
    known = set(
        LoggedModel.objects.filter(
            workspace_id=run.workspace_id, model_id__in=model_ids
        ).values_list("model_id", flat=True)
    )
    for index, model_id in enumerate(model_ids):
        if model_id not in known:
            raise NotFound(
                f"Logged model with id={model_id!r} not found.", field=f"{field}[{index}]"
            )
    return model_ids


@transaction.atomic
def run_log_inputs(*, run: Run, datasets: Any = (), model_ids: Any = ()) -> list[RunInput]:
    """Records the datasets ({name, digest, source_type, source, schema?, profile?, tags}) and
    logged models a run used. Everything is checked before anything is stored."""
    checked = [
        _dataset(item, field=f"datasets[{i}]")
        for i, item in enumerate(_check_count(datasets, field="datasets"))
    ]
    models = _models_of(run, _check_count(model_ids, field="models"), field="models")
    rows = [RunInput(run=run, kind=RunInputKind.DATASET, **d) for d in checked] + [
        RunInput(run=run, kind=RunInputKind.MODEL_INPUT, name=m) for m in models
    ]
    return RunInput.objects.bulk_create(rows, ignore_conflicts=True)


@transaction.atomic
def run_log_outputs(*, run: Run, models: Any) -> list[RunInput]:
    """Records the logged models a run produced: [(model id, step)]."""
    pairs = _check_count(models, field="models")
    for index, pair in enumerate(pairs):
        if (
            not isinstance(pair, list | tuple)
            or len(pair) != 2
            or type(pair[1]) is not int
            or not 0 <= pair[1] < 2**63
        ):
            raise InvalidInput(
                f"models[{index}]: a model id and a step (a whole number ≥ 0).",
                field=f"models[{index}]",
            )
    ids = _models_of(run, [model_id for model_id, _ in pairs], field="models")
    rows = [
        RunInput(run=run, kind=RunInputKind.MODEL_OUTPUT, name=model_id, step=step)
        for model_id, (_, step) in zip(ids, pairs, strict=True)
    ]
    return RunInput.objects.bulk_create(rows, ignore_conflicts=True)
