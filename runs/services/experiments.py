"""Experiments beyond get-or-create: explicit creation, renaming, tags."""

from django.db import IntegrityError, transaction

from runs import limits
from runs.errors import Conflict, InvalidInput
from runs.models import Experiment, Workspace
from runs.validation import check_pattern, check_text_mapping

EXPERIMENT_TAGS_MAX = 1_000
_NAME_RULE = "1–255 letters, digits, '_', '.' or '-', starting with a letter or digit"


def _check_name(name: object) -> str:
    return check_pattern(name, field="name", pattern=limits.EXPERIMENT_NAME_RE, rule=_NAME_RULE)


def experiment_create(*, workspace: Workspace, name: str, tags: dict | None = None) -> Experiment:
    """A new experiment; a 409 if the workspace has one by that name."""
    name = _check_name(name)
    tags = check_text_mapping(tags or {}, field="tags")
    try:
        with transaction.atomic():
            return Experiment.objects.create(workspace=workspace, name=name, tags=tags)
    except IntegrityError:
        raise Conflict(
            f"Workspace {workspace.name!r} already has an experiment named {name!r}.",
            field="name",
            code="already_exists",
        ) from None


def experiment_rename(*, experiment: Experiment, name: str) -> Experiment:
    name = _check_name(name)
    if name == experiment.name:
        return experiment
    try:
        with transaction.atomic():
            experiment.name = name
            experiment.save(update_fields=["name"])
    except IntegrityError:
        raise Conflict(
            f"Workspace {experiment.workspace.name!r} already has an experiment named {name!r}.",
            field="name",
            code="already_exists",
        ) from None
    return experiment


@transaction.atomic
def experiment_set_tags(
    *, experiment: Experiment, set_tags: dict | None = None, remove: list[str] | None = None
) -> Experiment:
    tags = check_text_mapping(set_tags or {}, field="tags")
    locked = Experiment.objects.select_for_update().get(pk=experiment.pk)
    merged = {k: v for k, v in locked.tags.items() if k not in set(remove or [])} | tags
    if len(merged) > EXPERIMENT_TAGS_MAX:
        raise InvalidInput(
            f"tags: an experiment keeps at most {EXPERIMENT_TAGS_MAX} tags.", field="tags"
        )
    locked.tags = merged
    locked.save(update_fields=["tags"])
    experiment.tags = merged
    return experiment
