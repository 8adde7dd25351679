"""Domain services: every write goes through one of these, whichever door it came from
(REST API, studio pages, admin actions, the demo seeder, workers)."""

import dataclasses
import hashlib
import json
import math
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from runs import alerts, limits
from runs.errors import Conflict, InvalidInput
from runs.models import (
    TERMINAL_STATUSES,
    ApiToken,
    Experiment,
    Membership,
    MetricBatch,
    MetricEntry,
    MetricKind,
    MetricSeries,
    Role,
    Run,
    RunProperty,
    RunStatus,
    RunTag,
    StatusEvent,
    Workspace,
)
from runs.validation import (
    check_mapping,
    check_name,
    check_pattern,
    check_text,
    scalar_value,
)

# ---------------------------------------------------------------------------------------------
# Workspaces, members, tokens


def workspace_create(*, name: str, owner: AbstractBaseUser) -> Workspace:
    check_pattern(
        name,
        field="name",
        pattern=limits.WORKSPACE_NAME_RE,
        rule="1–64 letters, digits, '_', '.' or '-', starting with a letter or digit",
    )
    try:
        with transaction.atomic():
            workspace = Workspace.objects.create(name=name)
            Membership.objects.create(workspace=workspace, user=owner, role=Role.OWNER)
    except IntegrityError:
        raise Conflict(f"A workspace named {name!r} already exists.", field="name") from None
    return workspace


def membership_set(*, workspace: Workspace, user: AbstractBaseUser, role: str) -> Membership:
    if role not in Role.values:
        raise InvalidInput(f"role: must be one of {', '.join(Role.values)}.", field="role")
    membership, _ = Membership.objects.update_or_create(
        workspace=workspace, user=user, defaults={"role": role}
    )
    return membership


def membership_remove(*, workspace: Workspace, user: AbstractBaseUser) -> None:
    with transaction.atomic():
        membership = Membership.objects.select_for_update().filter(workspace=workspace, user=user)
        owners = Membership.objects.filter(workspace=workspace, role=Role.OWNER)
        if owners.count() == 1 and owners.filter(user=user).exists():
            raise Conflict("A workspace keeps at least one owner; add another owner first.")
        membership.delete()


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_create(*, user: AbstractBaseUser, name: str = "") -> tuple[ApiToken, str]:
    """Returns the token and its key; the key is not stored and cannot be shown again."""
    check_text(name, field="name", max_length=100)
    key = "rs_" + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, prefix=key[:10], key_hash=_hash_key(key))
    return token, key


def token_authenticate(*, key: str) -> ApiToken | None:
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=_hash_key(key), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    # At most one write a minute, so a busy ingest loop does not write on every request.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def token_revoke(*, token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])


# ---------------------------------------------------------------------------------------------
# Experiments and runs


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
                values[name] = check_text(data[name], field=f"{field}{name}", max_length=max_length)
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
                pattern=limits.RUN_ID_RE,
                rule="1–255 letters, digits, '_', '.' or '-', starting with a letter or digit",
            )
        return cls(**values)


def _check_kv(mapping: Any, *, field: str, tags: bool) -> dict:
    check_mapping(mapping, field=field)
    checked = {}
    for key, value in mapping.items():
        check_name(key, field=f"{field}.{key}" if key else field, what="key")
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


def _build_run(
    *, experiment: Experiment, spec: RunSpec, submitter: AbstractBaseUser | None, parent: Run | None
) -> Run:
    now = timezone.now()
    return Run(
        run_id=spec.run_id or _new_run_id(experiment),
        workspace_id=experiment.workspace_id,
        experiment=experiment,
        parent=parent,
        display_name=spec.display_name,
        description=spec.description,
        status=spec.status,
        run_type=spec.run_type,
        compute_target=spec.compute_target,
        submitter=submitter,
        started_at=now if spec.status == RunStatus.RUNNING else None,
        heartbeat_at=now if spec.status == RunStatus.RUNNING else None,
    )


def _create_runs(
    *,
    experiment: Experiment,
    specs: list[RunSpec],
    submitter: AbstractBaseUser | None,
    parent: Run | None,
) -> list[Run]:
    chosen = [s.run_id for s in specs if s.run_id]
    taken = Run.objects.filter(run_id__in=chosen).values_list("run_id", flat=True).first()
    if taken or len(set(chosen)) != len(chosen):
        raise Conflict(
            f"A run with id {taken or chosen[0]!r} already exists; choose another id or omit it.",
            field="run_id",
        )
    runs = Run.objects.bulk_create(
        [
            _build_run(experiment=experiment, spec=s, submitter=submitter, parent=parent)
            for s in specs
        ]
    )
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
        run.display_name = check_text(
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
) -> Run:
    """Moves a run along its lifecycle and records the event; a terminal state is final."""
    _check_status(status)
    locked = Run.objects.select_for_update().get(pk=run.pk)
    if locked.status == status:
        return locked
    if not transition_allowed(locked.status, status):
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
        locked.ended_at = now
        fields.append("ended_at")
    if status == RunStatus.FAILED:
        locked.error_code = check_text(error_code or "", field="error.code", max_length=100)
        locked.error_message = check_text(
            error_message or "", field="error.message", max_length=limits.DESCRIPTION_MAX_LENGTH
        )
        fields += ["error_code", "error_message"]
    locked.save(update_fields=fields)
    event = StatusEvent.objects.create(
        run=locked, from_status=previous, to_status=status, by=by, reason=reason
    )
    # Alerts go out from a task enqueued after commit, never from this request.
    alerts.on_status_event(event)
    return locked


def run_heartbeat(*, run: Run) -> Run:
    run.heartbeat_at = timezone.now()
    Run.objects.filter(pk=run.pk).update(heartbeat_at=run.heartbeat_at)
    return run


@transaction.atomic
def run_set_tags(
    *, run: Run, set_tags: dict | None = None, remove: Iterable[str] | None = None
) -> None:
    tags = _check_kv(set_tags or {}, field="set", tags=True)
    remove = list(remove or [])
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


# ---------------------------------------------------------------------------------------------
# Metrics: the hot path


@dataclass
class _SeriesBatch:
    name: str
    kind: str
    steps: list
    values: list
    times: list


@dataclass(frozen=True)
class BatchResult:
    accepted: int
    duplicate: bool


_KIND_CHECKS = {
    MetricKind.STRING: (str, "a string"),
    MetricKind.LIST: (list, "a list"),
    MetricKind.ROW: (dict, "an object of column → value"),
    MetricKind.IMAGE: (str, "the run-file path of the image"),
}


def _parse_batch(metrics: Any) -> list[_SeriesBatch]:
    """Validates a whole batch before anything is written."""
    if not isinstance(metrics, list):
        raise InvalidInput("metrics: must be a list of series.", field="metrics")
    if len(metrics) > limits.MAX_SERIES_PER_BATCH:
        raise InvalidInput(
            f"metrics: {len(metrics)} series in one batch; the limit is "
            f"{limits.MAX_SERIES_PER_BATCH}. Split the batch.",
            field="metrics",
            code="batch_too_large",
        )
    parsed, total, seen = [], 0, set()
    for i, item in enumerate(metrics):
        field = f"metrics[{i}]"
        if not isinstance(item, dict):
            raise InvalidInput(f"{field}: must be an object.", field=field)
        name = check_name(item.get("name"), field=f"{field}.name", what="metric name")
        if name in seen:
            raise InvalidInput(
                f"{field}.name: {name!r} appears twice in the batch; send one entry per series.",
                field=f"{field}.name",
            )
        seen.add(name)
        kind = item.get("kind", MetricKind.SCALAR)
        if kind not in MetricKind.values:
            raise InvalidInput(
                f"{field}.kind: {kind!r} is not one of {', '.join(MetricKind.values)}.",
                field=f"{field}.kind",
            )
        values = item.get("values")
        if not isinstance(values, list) or not values:
            raise InvalidInput(
                f"{field}.values: must be a non-empty list.", field=f"{field}.values"
            )
        total += len(values)
        if total > limits.MAX_POINTS_PER_BATCH:
            raise InvalidInput(
                f"metrics: more than {limits.MAX_POINTS_PER_BATCH} points in one batch. "
                "Split it into smaller batches.",
                field="metrics",
                code="batch_too_large",
            )
        steps = _column(item, "steps", len(values), field)
        times = _column(item, "times", len(values), field)
        if kind == MetricKind.SCALAR:
            values = _scalar_values(values, field=f"{field}.values")
        else:
            expected, label = _KIND_CHECKS[kind]
            for j, value in enumerate(values):
                if not isinstance(value, expected):
                    raise InvalidInput(
                        f"{field}.values[{j}]: a {kind} metric value must be {label}.",
                        field=f"{field}.values[{j}]",
                    )
        _check_steps(steps, field=f"{field}.steps")
        _check_times(times, field=f"{field}.times")
        parsed.append(_SeriesBatch(name, kind, steps, values, times))
    return parsed


def _column(item: dict, key: str, length: int, field: str) -> list | None:
    column = item.get(key)
    if column is None:
        return None
    if not isinstance(column, list) or len(column) != length:
        raise InvalidInput(
            f"{field}.{key}: must be a list as long as values ({length} entries).",
            field=f"{field}.{key}",
        )
    return column


_NUMBER_TYPES = frozenset({float, int})


def _all_finite_numbers(column: list) -> bool:
    """True when every entry is a finite float or int: C-speed passes (map, set), no Python
    loop, since this runs for every point of every batch."""
    if not set(map(type, column)) <= _NUMBER_TYPES:
        return False
    try:
        return all(map(math.isfinite, column))
    except OverflowError:  # an int beyond a float's range
        return False


def _scalar_values(values: list, *, field: str) -> list:
    if _all_finite_numbers(values):
        return values  # the common case, stored as given
    out = []
    for j, value in enumerate(values):
        if type(value) is bool:
            raise InvalidInput(
                f"{field}[{j}]: booleans are not metric values; log 0 or 1.", field=f"{field}[{j}]"
            )
        number = scalar_value(value, field=f"{field}[{j}]")
        out.append(None if math.isnan(number) else number)  # NaN is stored as NULL
    return out


_STEP_MIN, _STEP_MAX = -(2**63), 2**63 - 1  # the BigIntegerField's range


def _check_steps(steps: list | None, *, field: str) -> None:
    if steps is None:
        return
    if set(map(type, steps)) == {int} and min(steps) >= _STEP_MIN and max(steps) <= _STEP_MAX:
        return  # the common case, checked without a Python loop
    for j, step in enumerate(steps):
        if not (step is None or (type(step) is int and _STEP_MIN <= step <= _STEP_MAX)):
            raise InvalidInput(
                f"{field}[{j}]: a step must be a whole number that fits in 64 bits.",
                field=f"{field}[{j}]",
            )


def _check_times(times: list | None, *, field: str) -> None:
    if times is None or _all_finite_numbers(times):
        return
    for j, t in enumerate(times):
        if not (type(t) is float or type(t) is int or t is None) or (
            # Not math.isfinite: it raises on an int beyond a float's range. NaN fails too.
            t is not None and not -1e300 < t < 1e300
        ):
            raise InvalidInput(
                f"{field}[{j}]: a time must be seconds since the epoch.", field=f"{field}[{j}]"
            )


_INSERT_POINTS = (
    "INSERT INTO runs_metricpoint (series_id, seq, step, value, time) VALUES (%s, %s, %s, %s, %s)"
)


def run_log_batch(*, run: Run, metrics: Any, idempotency_key: str | None = None) -> BatchResult:
    """Stores a batch of metric values atomically; a batch whose key was seen is stored once."""
    if idempotency_key is not None:
        check_text(
            idempotency_key, field="idempotency_key", max_length=limits.IDEMPOTENCY_KEY_MAX_LENGTH
        )
    batches = _parse_batch(metrics)
    accepted = sum(len(b.values) for b in batches)
    try:
        with transaction.atomic():
            status = Run.objects.filter(pk=run.pk).values_list("status", flat=True).get()
            if status in (RunStatus.CANCEL_REQUESTED, RunStatus.CANCELED):
                raise Conflict(
                    f"Run {run.run_id} is {status}; it takes no more metrics.",
                    code="run_canceled",
                )
            if idempotency_key:
                MetricBatch.objects.create(run=run, key=idempotency_key, points=accepted)
            _store_batches(run=run, batches=batches)
    except IntegrityError:
        if idempotency_key and MetricBatch.objects.filter(run=run, key=idempotency_key).exists():
            return BatchResult(accepted=0, duplicate=True)
        raise
    return BatchResult(accepted=accepted, duplicate=False)


def _store_batches(*, run: Run, batches: list[_SeriesBatch]) -> None:
    names = [b.name for b in batches]
    existing = {
        s.name: s for s in MetricSeries.objects.select_for_update().filter(run=run, name__in=names)
    }
    for b in batches:
        if b.name in existing and existing[b.name].kind != b.kind:
            raise InvalidInput(
                f"metric {b.name!r} of run {run.run_id} holds {existing[b.name].kind} values; "
                f"it cannot take {b.kind} values. Log them under another name.",
                field="metrics",
                code="kind_mismatch",
            )
    new = [
        MetricSeries(run=run, name=b.name, kind=b.kind) for b in batches if b.name not in existing
    ]
    if new:
        MetricSeries.objects.bulk_create(new)
        if new[0].pk is None:  # pragma: no cover - backends that cannot return ids
            new = list(MetricSeries.objects.filter(run=run, name__in=[s.name for s in new]))
        existing.update({s.name: s for s in new})

    now = time.time()
    rows: list[tuple] = []
    entries: list[MetricEntry] = []
    for b in batches:
        series = existing[b.name]
        start = series.count
        n = len(b.values)
        seqs = range(start, start + n)
        steps = (
            [seq if s is None else s for seq, s in zip(seqs, b.steps, strict=True)]
            if b.steps
            else list(seqs)
        )
        times = [now if t is None else t for t in b.times] if b.times else [now] * n
        if b.kind == MetricKind.SCALAR:
            sid = series.pk
            rows.extend(zip([sid] * n, seqs, steps, b.values, times, strict=True))
            finite = [v for v in b.values if v is not None]
            if finite:
                low, high = min(finite), max(finite)
                series.min_value = low if series.min_value is None else min(series.min_value, low)
                series.max_value = high if series.max_value is None else max(series.max_value, high)
            last = b.values[-1]
            series.last_value = math.nan if last is None else last
        else:
            entries.extend(
                MetricEntry(series=series, seq=seq, step=step, value=value, time=t)
                for seq, step, value, t in zip(seqs, steps, b.values, times, strict=True)
            )
        series.count = start + n
        series.last_step = steps[-1]
    if rows:
        with connection.cursor() as cursor:
            # One executemany, not bulk_create: building a model per point costs ~5× the insert.
            cursor.executemany(_INSERT_POINTS, rows)
    if entries:
        MetricEntry.objects.bulk_create(entries)
    for b in batches:
        series = existing[b.name]
        MetricSeries.objects.filter(pk=series.pk).update(
            count=series.count,
            last_value=None
            if series.last_value is not None and math.isnan(series.last_value)
            else series.last_value,
            min_value=series.min_value,
            max_value=series.max_value,
            last_step=series.last_step,
            updated_at=timezone.now(),
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


# ---------------------------------------------------------------------------------------------
# Script submission (docs/architecture.md, "Compute and execution")

SCRIPT_PROPERTY = "runstudio.script"
ARGUMENTS_PROPERTY = "runstudio.arguments"  # a JSON list of strings


def _check_arguments(arguments: Any) -> list[str]:
    if arguments is None:
        return []
    if not isinstance(arguments, list) or len(arguments) > limits.SCRIPT_ARGUMENTS_MAX:
        raise InvalidInput(
            f"arguments: a list of at most {limits.SCRIPT_ARGUMENTS_MAX} strings.",
            field="arguments",
        )
    checked = []
    for i, value in enumerate(arguments):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InvalidInput(
                f"arguments[{i}]: {value!r} is not a string or a number.", field=f"arguments[{i}]"
            )
        text = str(value)
        if "\x00" in text:
            raise InvalidInput(f"arguments[{i}]: contains a NUL byte.", field=f"arguments[{i}]")
        checked.append(text)
    return checked


def run_submit(
    *,
    experiment: Experiment,
    script: str,
    snapshot: Any,
    submitter: AbstractBaseUser,
    arguments: Any = None,
    compute_target: str = "",
    parent: Run | None = None,
    spec: RunSpec | None = None,
) -> Run:
    """Creates a script run from a snapshot zip and queues it on its compute target.

    Everything is checked before anything is written (the target — an unknown one is a 400
    naming `compute_target` —, the script path, the arguments, the whole zip); then the run
    (status Queued), its snapshot files and its django.tasks task are created in one
    transaction, so a worker never sees a queued run without its snapshot."""
    # Imported here: these modules import this one.
    from runs import compute, storage, tasks
    from runs import snapshot as snapshots

    workspace = experiment.workspace
    target = compute.compute_target_for_submit(workspace=workspace, name=compute_target)
    storage.check_path(script or "", field="script")
    args = _check_arguments(arguments)
    if parent is not None and parent.workspace_id != workspace.id:
        raise InvalidInput("parent: the parent run belongs to another workspace.", field="parent")
    entries = snapshots.snapshot_check(archive=snapshot)
    if script not in {info.filename for info in entries}:
        raise InvalidInput(
            f"script: {script!r} is not in the snapshot of the source directory; give its path "
            "relative to source_directory (and check the ignore file does not leave it out).",
            field="script",
        )
    snapshot.seek(0)
    spec = spec or RunSpec()
    spec = dataclasses.replace(
        spec,
        run_type="script",
        status=RunStatus.QUEUED,
        compute_target=target.name,
        properties={
            **(spec.properties or {}),
            SCRIPT_PROPERTY: script,
            ARGUMENTS_PROPERTY: json.dumps(args),
        },
    )
    with transaction.atomic():
        run = run_create(experiment=experiment, spec=spec, submitter=submitter, parent=parent)
        snapshots.snapshot_store(run=run, archive=snapshot)
        tasks.run_enqueue(run=run)
    return run
