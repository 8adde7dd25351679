"""MLflow 3 logged models (`mlflow.<flavor>.log_model`): a model's record; its files are run
files of its source run, under `outputs/models/<model_id>/` (run_file_write)."""

import uuid

from django.db import transaction
from django.utils import timezone

from runs import limits
from runs.errors import InvalidInput
from runs.models import LoggedModel, LoggedModelStatus, Run
from runs.validation import check_line, check_text, check_text_mapping

MODEL_FILES_FOLDER = "outputs/models"
MODEL_KEYS_MAX = 1_000


def logged_model_folder(model: LoggedModel) -> str:
    return f"{MODEL_FILES_FOLDER}/{model.model_id}"


def logged_model_create(
    *,
    run: Run,
    name: str,
    model_type: str = "",
    tags: dict | None = None,
    params: dict | None = None,
) -> LoggedModel:
    return LoggedModel.objects.create(
        model_id=f"m-{uuid.uuid4().hex}",
        workspace_id=run.workspace_id,
        experiment_id=run.experiment_id,
        run=run,
        name=check_line(name, field="name", max_length=limits.NAME_MAX_LENGTH),
        model_type=check_line(model_type or "", field="model_type", max_length=255),
        tags=check_text_mapping(tags or {}, field="tags"),
        params=check_text_mapping(params or {}, field="params"),
    )


def logged_model_finalize(*, model: LoggedModel, status: str, message: str = "") -> LoggedModel:
    if status not in LoggedModelStatus.values:
        raise InvalidInput(
            f"status: {status!r} is not one of {', '.join(LoggedModelStatus.values)}.",
            field="status",
        )
    model.status = status
    model.status_message = check_text(message or "", field="status_message", max_length=5_000)
    model.save(update_fields=["status", "status_message", "updated_at"])
    return model


@transaction.atomic
def logged_model_update(
    *,
    model: LoggedModel,
    set_tags: dict | None = None,
    remove_tags: list[str] | None = None,
    params: dict | None = None,
) -> LoggedModel:
    """Tags change; params, like a run's, keep their first value (MLflow's rule too)."""
    locked = LoggedModel.objects.select_for_update().get(pk=model.pk)
    tags = {k: v for k, v in locked.tags.items() if k not in set(remove_tags or [])}
    tags |= check_text_mapping(set_tags or {}, field="tags")
    new_params = check_text_mapping(params or {}, field="params")
    merged_params = new_params | locked.params
    if len(tags) > MODEL_KEYS_MAX or len(merged_params) > MODEL_KEYS_MAX:
        raise InvalidInput(
            f"tags/params: a model keeps at most {MODEL_KEYS_MAX} of each.", field="tags"
        )
    locked.tags, locked.params = tags, merged_params
    locked.save(update_fields=["tags", "params", "updated_at"])
    return locked


def logged_model_archive(*, model: LoggedModel) -> None:
    LoggedModel.objects.filter(pk=model.pk).update(archived_at=timezone.now())
