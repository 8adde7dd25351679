"""Compute targets, workers and liveness: the services and selectors of "Compute and execution".

A compute target's name is the django.tasks queue its runs wait on (runs/tasks.py); workers
record themselves in `Worker` rows; the reaper fails live runs whose heartbeats stopped.
"""

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from runs import limits
from runs.errors import Conflict, InvalidInput, NotFound
from runs.models import ComputeTarget, Run, RunStatus, Worker, Workspace
from runs.validation import check_pattern, check_text

LOCAL = "local"

# Statuses of a run that a worker holds (it has claimed the run and may be executing it).
EXECUTING_STATUSES = (RunStatus.PREPARING, RunStatus.RUNNING, RunStatus.FINALIZING)
# Statuses the reaper watches: somebody promised heartbeats while the run is in them.
LIVE_STATUSES = (*EXECUTING_STATUSES, RunStatus.CANCEL_REQUESTED)


# --- compute targets ---------------------------------------------------------------------------


def compute_target_ensure_local(*, workspace: Workspace) -> None:
    """Every workspace has a `local` target; created on first need."""
    if not ComputeTarget.objects.filter(workspace=workspace, name=LOCAL).exists():
        try:
            with transaction.atomic():
                ComputeTarget.objects.create(
                    workspace=workspace,
                    name=LOCAL,
                    capacity=max(1, settings.RUNSTUDIO_LOCAL_CAPACITY),
                    description="This machine: the worker `runstudio serve` starts.",
                )
        except IntegrityError:  # created concurrently
            pass


def compute_target_list(*, workspace: Workspace) -> QuerySet[ComputeTarget]:
    compute_target_ensure_local(workspace=workspace)
    return ComputeTarget.objects.filter(workspace=workspace).order_by("name")


def compute_target_get(*, workspace: Workspace, name: str, field: str = "name") -> ComputeTarget:
    """The named target, or NotFound naming `field`."""
    if name == LOCAL:
        compute_target_ensure_local(workspace=workspace)
    target = ComputeTarget.objects.filter(workspace=workspace, name=name).first()
    if target is None:
        raise NotFound(f"No compute target named {name!r} in {workspace.name!r}.", field=field)
    return target


def compute_target_for_submit(*, workspace: Workspace, name: str) -> ComputeTarget:
    """Like compute_target_get, but an unknown target is bad input (400) naming the field."""
    if not isinstance(name, str) or not name:
        name = LOCAL
    try:
        return compute_target_get(workspace=workspace, name=name, field="compute_target")
    except NotFound:
        known = ", ".join(compute_target_list(workspace=workspace).values_list("name", flat=True))
        raise InvalidInput(
            f"compute_target: workspace {workspace.name!r} has no compute target named "
            f"{name!r}; it has: {known}. An owner can add one.",
            field="compute_target",
        ) from None


def _check_capacity(value: object) -> int:
    if type(value) is not int or not 1 <= value <= limits.COMPUTE_TARGET_CAPACITY_MAX:
        raise InvalidInput(
            f"capacity: a whole number from 1 to {limits.COMPUTE_TARGET_CAPACITY_MAX} "
            "(how many runs of this target may execute at once).",
            field="capacity",
        )
    return value


def compute_target_create(
    *, workspace: Workspace, name: str, capacity: int = 1, description: str = ""
) -> ComputeTarget:
    check_pattern(
        name,
        field="name",
        pattern=limits.COMPUTE_TARGET_NAME_RE,
        rule="1–32 letters, digits, '_', '.' or '-', starting with a letter or digit",
    )
    compute_target_ensure_local(workspace=workspace)
    try:
        with transaction.atomic():
            return ComputeTarget.objects.create(
                workspace=workspace,
                name=name,
                capacity=_check_capacity(capacity),
                description=check_text(description or "", field="description", max_length=255),
            )
    except IntegrityError:
        raise Conflict(
            f"Workspace {workspace.name!r} already has a compute target named {name!r}.",
            field="name",
        ) from None


def compute_target_update(
    *, target: ComputeTarget, capacity: int | None = None, description: str | None = None
) -> ComputeTarget:
    fields = ["updated_at"]
    if capacity is not None:
        target.capacity = _check_capacity(capacity)
        fields.append("capacity")
    if description is not None:
        target.description = check_text(description, field="description", max_length=255)
        fields.append("description")
    target.save(update_fields=fields)
    return target


def compute_target_delete(*, target: ComputeTarget) -> None:
    if target.name == LOCAL:
        raise Conflict(
            "The local target is every workspace's default and cannot be deleted.", field="name"
        )
    active = target_runs(target=target).count()
    if active:
        raise Conflict(
            f"Compute target {target.name!r} has {active} queued or running run(s); "
            "cancel them or let them finish first.",
            field="name",
        )
    target.delete()


def target_runs(*, target: ComputeTarget) -> QuerySet[Run]:
    """The target's queued and executing runs (finished runs leave the compute page)."""
    return Run.objects.filter(
        workspace_id=target.workspace_id,
        compute_target=target.name,
        status__in=[RunStatus.QUEUED, *LIVE_STATUSES],
    )


def worker_alive_since() -> datetime:
    return timezone.now() - timedelta(seconds=settings.RUNSTUDIO_HEARTBEAT_TIMEOUT)


def worker_list(*, queue_name: str | None = None, alive_only: bool = False) -> QuerySet[Worker]:
    workers = Worker.objects.select_related("current_run").order_by("queue_name", "-last_seen_at")
    if queue_name is not None:
        workers = workers.filter(queue_name=queue_name)
    if alive_only:
        workers = workers.filter(stopped_at__isnull=True, last_seen_at__gte=worker_alive_since())
    return workers


def worker_is_alive(worker: Worker) -> bool:
    return worker.stopped_at is None and worker.last_seen_at >= worker_alive_since()


@dataclass
class TargetOverview:
    """One row of the compute page: the target, its workers, its active and queued runs."""

    target: ComputeTarget
    workers: list[Worker] = field(default_factory=list)
    active_runs: list[Run] = field(default_factory=list)
    queued_runs: list[Run] = field(default_factory=list)

    @property
    def alive_workers(self) -> list[Worker]:
        return [w for w in self.workers if worker_is_alive(w)]


def compute_target_overview(*, workspace: Workspace) -> list[TargetOverview]:
    """Every target of the workspace with its workers (each with `.alive`), executing runs
    (oldest first) and queued runs (in queue order). Three queries whatever the sizes; recently
    stopped workers are kept a day so the page can show them as gone."""
    targets = list(compute_target_list(workspace=workspace))
    by_name = {t.name: TargetOverview(target=t) for t in targets}
    since = timezone.now() - timedelta(days=1)
    for worker in (
        worker_list()
        .filter(queue_name__in=list(by_name))
        .filter(Q(stopped_at__isnull=True) | Q(stopped_at__gte=since))
    ):
        worker.alive = worker_is_alive(worker)
        by_name[worker.queue_name].workers.append(worker)
    runs = (
        Run.objects.filter(
            workspace=workspace,
            compute_target__in=list(by_name),
            status__in=[RunStatus.QUEUED, *LIVE_STATUSES],
        )
        .select_related("experiment", "submitter")
        .order_by("created_at", "id")
    )
    for run in runs:
        overview = by_name[run.compute_target]
        if run.status == RunStatus.QUEUED:
            overview.queued_runs.append(run)
        else:
            overview.active_runs.append(run)
    return [by_name[t.name] for t in targets]


# --- workers -----------------------------------------------------------------------------------


def worker_identity() -> tuple[str, int]:
    return socket.gethostname(), os.getpid()


def worker_register(*, worker_id: str, queue_name: str) -> Worker:
    hostname, pid = worker_identity()
    worker, _ = Worker.objects.update_or_create(
        worker_id=worker_id,
        defaults={
            "queue_name": queue_name[:64],
            "hostname": hostname[:255],
            "pid": pid,
            "last_seen_at": timezone.now(),
            "stopped_at": None,
        },
    )
    return worker


def worker_heartbeat(*, worker_id: str, queue_name: str) -> None:
    updated = Worker.objects.filter(worker_id=worker_id).update(
        last_seen_at=timezone.now(), stopped_at=None
    )
    if not updated:  # a plain `db_worker` (not `runstudio worker`) running one of our tasks
        worker_register(worker_id=worker_id, queue_name=queue_name)


def worker_set_current_run(*, worker_id: str, queue_name: str, run: Run | None) -> None:
    worker_heartbeat(worker_id=worker_id, queue_name=queue_name)
    changes: dict = {"current_run": run}
    if run is None:
        changes["runs_executed"] = F("runs_executed") + 1
    Worker.objects.filter(worker_id=worker_id).update(**changes)


def worker_stop(*, worker_id: str) -> None:
    Worker.objects.filter(worker_id=worker_id).update(
        stopped_at=timezone.now(), current_run=None, last_seen_at=timezone.now()
    )


# --- liveness: the reaper ----------------------------------------------------------------------


def runs_stale(*, now: datetime | None = None) -> QuerySet[Run]:
    """Live runs whose heartbeat stopped more than RUNSTUDIO_HEARTBEAT_TIMEOUT ago.

    Watched: runs on a compute target (their worker heartbeats them from the claim on; one that
    never heartbeated counts from its creation), and runs a client has heartbeated at least
    once (the SDK does, every RUNSTUDIO_HEARTBEAT_INTERVAL). A run nobody ever heartbeated
    (created over REST or by an MLflow client, which promise no heartbeats) is left alone."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.RUNSTUDIO_HEARTBEAT_TIMEOUT)
    return (
        Run.objects.filter(status__in=LIVE_STATUSES)
        .annotate(last_sign=Coalesce("heartbeat_at", "started_at", "created_at"))
        .filter(last_sign__lt=cutoff)
        .filter(
            ~Q(compute_target="")
            | Q(
                heartbeat_at__isnull=False,
                started_at__isnull=False,
                heartbeat_at__gt=F("started_at"),
            )
        )
    )


def runs_reap_stale(*, now: datetime | None = None) -> list[Run]:
    """Fails (or, for a cancel already requested, cancels) every stale run; returns them.

    Safe to run from many workers at once: each change goes through run_set_status, which
    locks the run and re-reads it, and a run someone just heartbeated is left alone."""
    from runs.services import run_set_status

    reaped = []
    for run in runs_stale(now=now).order_by("id")[:1000]:
        with transaction.atomic():
            fresh = Run.objects.select_for_update().get(pk=run.pk)
            last = fresh.heartbeat_at or fresh.started_at or fresh.created_at
            cutoff = (now or timezone.now()) - timedelta(
                seconds=settings.RUNSTUDIO_HEARTBEAT_TIMEOUT
            )
            if fresh.status not in LIVE_STATUSES or last >= cutoff:
                continue
            when = last.strftime("%Y-%m-%d %H:%M:%S UTC")
            seen = "No heartbeat since" if fresh.heartbeat_at else "Never heartbeated; created"
            reason = f"{seen} {when}; the process or its worker died."
            if fresh.status == RunStatus.CANCEL_REQUESTED:
                done = run_set_status(
                    run=fresh, status=RunStatus.CANCELED, reason=f"cancel requested. {reason}"
                )
            else:
                done = run_set_status(
                    run=fresh,
                    status=RunStatus.FAILED,
                    error_code="HeartbeatTimeout",
                    error_message=reason,
                    reason=reason,
                )
            reaped.append(done)
    return reaped
