"""Experiments and runs: creation, lifecycle, tags, properties, cancel."""

import math
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from runs import limits
from runs.errors import Conflict, InvalidInput
from runs.models import (
    TERMINAL_STATUSES,
    Experiment,
    Run,
    RunProperty,
    RunStatus,
    RunTag,
    StatusEvent,
    Workspace,
)
from runs.services import alerts
from runs.services.files import on_run_ended, run_files_delete_all
from runs.validation import check_line, check_mapping, check_name, check_pattern, check_text


def experiment_get_or_create(*, workspace: Workspace, name: str) -> tuple[Experiment, bool]:
    check_pattern(
        name,
        field="name",
        pattern=limits.EXPERIMENT_NAME_RE,
        rule="1–255 letters, digits, '_', '.' or '-', starting with a letter or digit",
    )
    try:
        with transaction.atomic():
            return Experiment.objects.get_or_create(workspace=workspace, name=name)
    except IntegrityError:  # created by a concurrent request
        return Experiment.objects.get(workspace=workspace, name=name), False


def _new_run_id(experiment: Experiment) -> str:
    return f"{experiment.name[:200]}_{int(time.time())}_{secrets.token_hex(4)}"


# The reaper's error code: a run presumed dead because its heartbeat stopped.
HEARTBEAT_TIMEOUT = "HeartbeatTimeout"


def check_client_time(value: Any, *, field: str) -> datetime:
    """A time a client reports (a run's real start or end, sent late from the SDK's spool) in
    unix seconds, from 2000 to 9999 (limits.CLIENT_TIME_MIN/MAX). A time in the future is
    taken as now: clocks drift."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not limits.CLIENT_TIME_MIN <= value <= limits.CLIENT_TIME_MAX
    ):
        raise InvalidInput(
            f"{field}: {value!r} is not a time; send unix seconds between "
            f"{limits.CLIENT_TIME_MIN} (2000-01-01) and {limits.CLIENT_TIME_MAX} (9999-12-31), "
            "e.g. time.time().",
            field=field,
        )
    return min(datetime.fromtimestamp(value, UTC), timezone.now())


def _check_status(value: Any, *, field: str = "status") -> str:
    if value not in RunStatus.values:
        raise InvalidInput(
            f"{field}: {value!r} is not a run status; use one of {', '.join(RunStatus.values)}.",
            field=field,
        )
    return value


@dataclass(frozen=True)
class RunSpec:
    display_name: str = ""
    description: str = ""
    run_type: str = "interactive"
    status: str = RunStatus.RUNNING
    compute_target: str = ""
    tags: dict | None = None
    properties: dict | None = None
    run_id: str = ""  # chosen by the caller (Azure's child_run(run_id=…)); generated if empty
    started_at: datetime | None = None  # an offline-first run's real start (SDK spool)
    # Generate a 32-hex id (128 random bits) like MLflow's instead of the Azure-style one: the
    # MLflow door's runs keep the id shape MLflow tools expect. Never client-chosen.
    hex_id: bool = False
    # False: the client promises no heartbeats (the MLflow door), so the reaper never watches
    # the run (compute.runs_stale needs a heartbeat after the start).
    heartbeats: bool = True

    @classmethod
    def from_input(cls, data: dict, *, field: str = "", **defaults: Any) -> "RunSpec":
        """Validates a run description from any door; `field` prefixes error field names."""
        values = {**defaults}
        for name, max_length in (
            ("display_name", limits.DISPLAY_NAME_MAX_LENGTH),
            ("description", limits.DESCRIPTION_MAX_LENGTH),
            ("run_type", 32),
            ("compute_target", 64),
        ):
            if data.get(name) is not None:
                check = check_text if name == "description" else check_line
                values[name] = check(data[name], field=f"{field}{name}", max_length=max_length)
        if data.get("status") is not None:
            status = _check_status(data["status"], field=f"{field}status")
            if status in TERMINAL_STATUSES or status == RunStatus.CANCEL_REQUESTED:
                raise InvalidInput(
                    f"{field}status: a run cannot be created {status}.", field=f"{field}status"
                )
            values["status"] = status
        for name in ("tags", "properties"):
            if data.get(name) is not None:
                values[name] = _check_kv(data[name], field=f"{field}{name}", tags=name == "tags")
        if data.get("run_id") is not None:
            values["run_id"] = check_pattern(
                data["run_id"],
                field=f"{field}run_id",
                pattern=limits.CHOSEN_RUN_ID_RE,
                rule="1–255 letters, digits, '_', '.' or '-', starting with a letter or digit, "
                "optionally after '<workspace>~'",
            )
        if data.get("started_at") is not None:
            values["started_at"] = check_client_time(
                data["started_at"], field=f"{field}started_at"
            )
        return cls(**values)


def _check_kv(mapping: Any, *, field: str, tags: bool) -> dict:
    check_mapping(mapping, field=field)
    checked = {}
    for key, value in mapping.items():
        check_name(key, field=f"{field}.{key}" if key else field, what="key")
        # A number or boolean is kept as its text; an object or a list would be kept as its
        # Python repr ("{}"), which nobody meant: refused.
        if isinstance(value, dict | list):
            raise InvalidInput(
                f"{field}.{key}: give text, a number or a boolean, not an object or a list.",
                field=f"{field}.{key}",
            )
        if tags:
            if value is not None and not isinstance(value, str):
                value = str(value)
            checked[key] = check_text(
                value,
                field=f"{field}.{key}",
                max_length=limits.TAG_VALUE_MAX_LENGTH,
                allow_none=True,
            )
        else:
            if value is None:
                raise InvalidInput(
                    f"{field}.{key}: a property needs a value.", field=f"{field}.{key}"
                )
            if not isinstance(value, str):
                value = str(value)
            checked[key] = check_text(
                value, field=f"{field}.{key}", max_length=limits.PROPERTY_VALUE_MAX_LENGTH
            )
    return checked


def _namespaced_run_id(workspace: Workspace, run_id: str) -> str:
    """`x` or `<workspace>~x` → `<workspace>~x`; another workspace's prefix is refused."""
    prefix, separator, chosen = run_id.rpartition(limits.RUN_ID_NAMESPACE_SEPARATOR)
    if separator and prefix != workspace.name:
        raise InvalidInput(
            f"run_id: {run_id!r} names workspace {prefix!r}; a chosen id lives in the run's "
            f"own workspace: give {chosen!r} or {workspace.name + separator + chosen!r}.",
            field="run_id",
        )
    full = workspace.name + limits.RUN_ID_NAMESPACE_SEPARATOR + chosen
    if len(full) > 255:
        raise InvalidInput(
            f"run_id: {full!r} is {len(full)} characters with its workspace prefix; the limit "
            "is 255, so choose a shorter id.",
            field="run_id",
        )
    return full


def _build_run(
    *, experiment: Experiment, spec: RunSpec, submitter: AbstractBaseUser | None, parent: Run | None
) -> Run:
    now = timezone.now()
    return Run(
        run_id=spec.run_id or (uuid.uuid4().hex if spec.hex_id else _new_run_id(experiment)),
        workspace_id=experiment.workspace_id,
        experiment=experiment,
        parent=parent,
        display_name=spec.display_name,
        description=spec.description,
        status=spec.status,
        run_type=spec.run_type,
        compute_target=spec.compute_target,
        submitter=submitter,
        started_at=(spec.started_at or now) if spec.status == RunStatus.RUNNING else None,
        heartbeat_at=now if spec.status == RunStatus.RUNNING and spec.heartbeats else None,
    )


def _create_runs(
    *,
    experiment: Experiment,
    specs: list[RunSpec],
    submitter: AbstractBaseUser | None,
    parent: Run | None,
) -> list[Run]:
    workspace = experiment.workspace
    specs = [
        replace(s, run_id=_namespaced_run_id(workspace, s.run_id)) if s.run_id else s
        for s in specs
    ]
    chosen = [s.run_id for s in specs if s.run_id]
    # Every chosen id starts with this workspace's name and `~`, so a taken one is this
    # workspace's own run: the 409 tells the caller nothing about other workspaces.
    taken = Run.objects.filter(run_id__in=chosen).values_list("run_id", flat=True).first()
    if taken or len(set(chosen)) != len(chosen):
        raise Conflict(
            f"Workspace {workspace.name!r} already has a run with id {taken or chosen[0]!r}; "
            "choose another id or omit it.",
            field="run_id",
        )
    try:
        with transaction.atomic():
            runs = Run.objects.bulk_create(
                [
                    _build_run(experiment=experiment, spec=s, submitter=submitter, parent=parent)
                    for s in specs
                ]
            )
    except IntegrityError:  # a concurrent request took one of the chosen ids
        raise Conflict(
            f"Workspace {workspace.name!r} already has a run with one of the ids "
            f"{', '.join(map(repr, chosen))}; choose another id or omit it.",
            field="run_id",
        ) from None
    tags, properties, events = [], [], []
    for run, spec in zip(runs, specs, strict=True):
        tags += [RunTag(run=run, key=k, value=v) for k, v in (spec.tags or {}).items()]
        properties += [
            RunProperty(run=run, key=k, value=v) for k, v in (spec.properties or {}).items()
        ]
        events.append(StatusEvent(run=run, from_status="", to_status=run.status, by=submitter))
    RunTag.objects.bulk_create(tags)
    RunProperty.objects.bulk_create(properties)
    StatusEvent.objects.bulk_create(events)
    return runs


@transaction.atomic
def run_create(
    *,
    experiment: Experiment,
    spec: RunSpec,
    submitter: AbstractBaseUser | None,
    parent: Run | None = None,
) -> Run:
    if parent is not None and parent.workspace_id != experiment.workspace_id:
        raise InvalidInput("parent: the parent run belongs to another workspace.", field="parent")
    return _create_runs(experiment=experiment, specs=[spec], submitter=submitter, parent=parent)[0]


@transaction.atomic
def run_create_children(
    *, parent: Run, specs: list[RunSpec], submitter: AbstractBaseUser | None
) -> list[Run]:
    if not 1 <= len(specs) <= limits.MAX_CHILDREN_PER_REQUEST:
        raise InvalidInput(
            f"count: between 1 and {limits.MAX_CHILDREN_PER_REQUEST} children per request.",
            field="count",
        )
    return _create_runs(
        experiment=parent.experiment, specs=specs, submitter=submitter, parent=parent
    )


def run_update(*, run: Run, display_name: str | None = None, description: str | None = None) -> Run:
    fields = []
    if display_name is not None:
        run.display_name = check_line(
            display_name, field="display_name", max_length=limits.DISPLAY_NAME_MAX_LENGTH
        )
        fields.append("display_name")
    if description is not None:
        run.description = check_text(
            description, field="description", max_length=limits.DESCRIPTION_MAX_LENGTH
        )
        fields.append("description")
    if fields:
        run.save(update_fields=fields)
    return run


_ORDER = [
    RunStatus.NOT_STARTED,
    RunStatus.QUEUED,
    RunStatus.PREPARING,
    RunStatus.RUNNING,
    RunStatus.FINALIZING,
    RunStatus.COMPLETED,
]


def transition_allowed(current: str, new: str) -> bool:
    if current in TERMINAL_STATUSES:
        return False
    if new in (RunStatus.FAILED, RunStatus.CANCELED):
        return True
    if current == RunStatus.CANCEL_REQUESTED:
        return False
    if new == RunStatus.CANCEL_REQUESTED:
        return True
    return _ORDER.index(RunStatus(new)) > _ORDER.index(RunStatus(current))


@transaction.atomic
def run_set_status(
    *,
    run: Run,
    status: str,
    by: AbstractBaseUser | None = None,
    error_code: str = "",
    error_message: str = "",
    reason: str = "",
    ended_at: datetime | None = None,
) -> Run:
    """Moves a run along its lifecycle and records the event; a terminal state is final.

    One exception: a run the reaper failed (error code HeartbeatTimeout) was presumed dead,
    not known to be; the final status its own client reports later (a slow script's
    `complete()`, or one sent from the SDK's spool) replaces that presumption once.
    `ended_at` is the client's real end time (clamped between the start and now)."""
    _check_status(status)
    locked = Run.objects.select_for_update().get(pk=run.pk)
    presumed_dead = (
        locked.status == RunStatus.FAILED
        and locked.error_code == HEARTBEAT_TIMEOUT
        and status in TERMINAL_STATUSES
        and error_code != HEARTBEAT_TIMEOUT
    )
    if locked.status == status and not presumed_dead:
        return locked
    if not presumed_dead and not transition_allowed(locked.status, status):
        raise Conflict(
            f"Run {locked.run_id} is {locked.status}; it cannot become {status}."
            + (" A finished run's status is final." if locked.is_terminal else ""),
            field="status",
            code="invalid_transition",
        )
    now = timezone.now()
    previous = locked.status
    locked.status = status
    fields = ["status"]
    if status == RunStatus.RUNNING and locked.started_at is None:
        locked.started_at = now
        fields.append("started_at")
    if status in TERMINAL_STATUSES:
        floor = locked.started_at or locked.created_at
        locked.ended_at = now if ended_at is None else max(min(ended_at, now), floor)
        fields.append("ended_at")
    if presumed_dead:
        reason = reason or "Final status reported by the run's client after a heartbeat timeout."
        if status != RunStatus.FAILED:
            locked.error_code, locked.error_message = "", ""
            fields += ["error_code", "error_message"]
    if status == RunStatus.FAILED:
        # A failure's message may quote a terminal (colour escapes): kept as it came.
        locked.error_code = check_line(error_code or "", field="error.code", max_length=100)
        locked.error_message = check_text(
            error_message or "",
            field="error.message",
            max_length=limits.DESCRIPTION_MAX_LENGTH,
            allow_control=True,
        )
        fields += ["error_code", "error_message"]
    locked.save(update_fields=fields)
    event = StatusEvent.objects.create(
        run=locked, from_status=previous, to_status=status, by=by, reason=reason
    )
    # Alerts go out from a task enqueued after commit, never from this request.
    alerts.on_status_event(event)
    if status in TERMINAL_STATUSES:
        on_run_ended(run=locked)
    return locked


def run_heartbeat(*, run: Run) -> Run:
    run.heartbeat_at = timezone.now()
    Run.objects.filter(pk=run.pk).update(heartbeat_at=run.heartbeat_at)
    return run


@transaction.atomic
def run_set_tags(
    *, run: Run, set_tags: dict | None = None, remove: Iterable[str] | None = None
) -> None:
    # Only a missing `set` means none: `false` or `[]` is refused, not read as "no tags".
    tags = _check_kv({} if set_tags is None else set_tags, field="set", tags=True)
    remove = list(remove or [])
    if len(remove) > limits.TAGS_PER_REQUEST:
        raise InvalidInput(
            f"remove: has {len(remove)} keys; the limit is {limits.TAGS_PER_REQUEST} per "
            "request (TAGS_PER_REQUEST). Split it into several requests.",
            field="remove",
        )
    for index, key in enumerate(remove):
        check_name(key, field=f"remove[{index}]", what="key")
    if remove:
        RunTag.objects.filter(run=run, key__in=remove).delete()
    if tags:
        RunTag.objects.bulk_create(
            [RunTag(run=run, key=k, value=v) for k, v in tags.items()],
            update_conflicts=True,
            unique_fields=["run", "key"],
            update_fields=["value"],
        )


@transaction.atomic
def run_add_properties(*, run: Run, properties: dict) -> None:
    """Properties are an audit record: a key keeps its first value forever."""
    properties = _check_kv(properties, field="properties", tags=False)
    stored = dict(
        RunProperty.objects.select_for_update()
        .filter(run=run, key__in=list(properties))
        .values_list("key", "value")
    )
    for key, value in properties.items():
        if key in stored and stored[key] != value:
            raise Conflict(
                f"Property {key!r} of run {run.run_id} is already {stored[key]!r}; properties are "
                f"immutable, so {value!r} was refused. Use a tag for a value that changes.",
                field=f"properties.{key}",
                code="property_immutable",
            )
    RunProperty.objects.bulk_create(
        [RunProperty(run=run, key=k, value=v) for k, v in properties.items() if k not in stored]
    )


def run_cancel(*, run: Run, by: AbstractBaseUser | None = None) -> Run:
    """Cancels a run from any door. A run a worker executes (status Queued, Preparing,
    Running or Finalizing on a compute target) becomes CancelRequested and its worker ends
    the process; any other run (an interactive one, or one not started) is Canceled at once."""
    worker_owned = run.compute_target and run.status in (
        RunStatus.QUEUED,
        RunStatus.PREPARING,
        RunStatus.RUNNING,
        RunStatus.FINALIZING,
    )
    status = RunStatus.CANCEL_REQUESTED if worker_owned else RunStatus.CANCELED
    return run_set_status(run=run, status=status, by=by, reason="cancel requested")


def _tree(run: Run) -> list[Run]:
    """The run and its descendants, one query per level."""
    found, level = [run], [run.pk]
    while level:
        children = list(Run.objects.filter(parent_id__in=level))
        found += children
        level = [c.pk for c in children]
    return found


def run_check_deletable(*, run: Run) -> list[Run]:
    """The run's tree, or a 409 if a worker still executes a run in it: cancel it first, so
    no script writes into a tree that is being removed."""
    tree = _tree(run)
    for member in tree:
        if member.compute_target and member.status in (
            RunStatus.QUEUED,
            RunStatus.PREPARING,
            RunStatus.RUNNING,
            RunStatus.FINALIZING,
            RunStatus.CANCEL_REQUESTED,
        ):
            raise Conflict(
                f"Run {member.run_id} is {member.status} on a worker; cancel it and wait for "
                "it to end before deleting.",
                field="run_id",
            )
    return tree


def run_delete(*, run: Run) -> int:
    """Deletes a run for good with its children, their records and their files; returns how
    many runs went (a 409 from run_check_deletable first)."""
    tree = run_check_deletable(run=run)
    # Files first: their index rows go with them, and the object-storage path needs those
    # rows to know the names. A failure after this leaves a run without files, never files
    # without a run.
    for member in tree:
        run_files_delete_all(run=member)
    with transaction.atomic():
        Run.objects.filter(pk__in=[r.pk for r in tree]).delete()
    return len(tree)
