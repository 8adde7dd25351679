"""Compute targets, workers and liveness: the writes of "Compute and execution" (the reads,
and the `local` target every workspace gets on first read, are runs/selectors/compute.py).

Workers record themselves in `Worker` rows; the reaper fails live runs whose heartbeats
stopped.
"""

import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from runs import limits
from runs.errors import Conflict, InvalidInput
from runs.models import ComputeTarget, Run, RunStatus, Worker, Workspace
from runs.selectors.compute import (
    LIVE_STATUSES,
    LOCAL,
    compute_target_ensure_local,
    queue_target,
    runs_stale,
    target_runs,
    worker_identity,
    worker_key_digest,
)
from runs.services.runs import run_set_status
from runs.validation import check_pattern, check_text


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
                # None (or absent) is none; {} or 0 is a 400, not a silent "".
                description=check_text(
                    "" if description is None else description,
                    field="description",
                    max_length=255,
                ),
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


WORKER_KEY_PREFIX = "rsw_"


WORKER_KEY_SHOWN = 12  # characters of a key kept (worker_key_prefix) to recognise it by


def compute_target_worker_key_rotate(*, target: ComputeTarget) -> str:
    """Makes the target a new worker key and returns it; only its SHA-256 is stored, so this is
    the one time it can be shown. The old key stops working for workers started from now on
    (a worker checks its key when it starts)."""
    if target.name == LOCAL:
        raise Conflict(
            "The local target is served by the workers `runstudio serve` starts; it has no "
            "worker key. Add a target of your own for workers on other machines.",
            field="name",
        )
    key = WORKER_KEY_PREFIX + secrets.token_urlsafe(32)
    target.worker_key_hash = worker_key_digest(key)
    target.worker_key_prefix = key[:WORKER_KEY_SHOWN]
    target.save(update_fields=["worker_key_hash", "worker_key_prefix", "updated_at"])
    return key


def worker_register(
    *,
    worker_id: str,
    queue_name: str,
    workspace: Workspace | None = None,
    isolated: bool = False,
) -> Worker:
    """Records a worker of `queue_name`; `workspace` is the one whose target it serves (None
    for the server's own `local` and alerts workers); `isolated`: it runs scripts in the
    sandbox (runs/sandbox.py)."""
    hostname, pid = worker_identity()
    worker, _ = Worker.objects.update_or_create(
        worker_id=worker_id,
        defaults={
            "queue_name": queue_name[:64],
            "workspace": workspace,
            "isolated": isolated,
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
        target = queue_target(queue_name)
        worker_register(
            worker_id=worker_id,
            queue_name=queue_name,
            workspace=target.workspace if target is not None else None,
        )


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


def runs_reap_stale(*, now: datetime | None = None) -> list[Run]:
    """Fails (or, for a cancel already requested, cancels) every stale run; returns them.

    Safe to run from many workers at once: each change goes through run_set_status, which
    locks the run and re-reads it, and a run someone just heartbeated is left alone."""

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
