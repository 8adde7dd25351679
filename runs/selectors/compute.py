"""Compute targets, workers and liveness: the reads of "Compute and execution" (the writes are
runs/services/compute.py).

A compute target belongs to one workspace, and so do its queue and its workers: the queue is
`t<target pk>` (target_queue_name), never the name, so two workspaces' `gpu-a` never share a
queue. `local` is the exception: the server's own workers serve every workspace's `local`
target on the one `local` queue. A worker for any other target proves it may take that queue
with the target's worker key (compute_target_for_worker). Workers record themselves in `Worker`
rows; the reaper (runs.services.compute.runs_reap_stale) fails the runs runs_stale finds.
"""

import hashlib
import hmac
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from runs.errors import InvalidInput, NotFound
from runs.models import ComputeTarget, Run, RunStatus, Worker, Workspace

LOCAL = "local"

# Statuses of a run that a worker holds (it has claimed the run and may be executing it).
EXECUTING_STATUSES = (RunStatus.PREPARING, RunStatus.RUNNING, RunStatus.FINALIZING)
# Statuses the reaper watches: somebody promised heartbeats while the run is in them.
LIVE_STATUSES = (*EXECUTING_STATUSES, RunStatus.CANCEL_REQUESTED)


# The one write a selector makes: the `local` default materialises, idempotently, on the first
# read that needs it, so every read of a workspace's targets sees it. It lives here, not in the
# services, because services import selectors and never the other way round.
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


def target_queue_name(target: ComputeTarget) -> str:
    """The django.tasks queue of the target's runs: `local` for the built-in target (served by
    the server's own workers), `t<pk>` for every other one — unique to this workspace's target
    and within django-tasks-db's 32-character queue_name."""
    return LOCAL if target.name == LOCAL else f"t{target.pk}"


def run_queue_name(run: Run) -> str:
    """The queue a queued run waits on. A run whose target is gone goes to `local`, whose
    worker fails it (ComputeTargetNotFound) rather than leaving it queued forever."""
    target = ComputeTarget.objects.filter(
        workspace_id=run.workspace_id, name=run.compute_target
    ).first()
    return target_queue_name(target) if target is not None else LOCAL


def queue_target(queue_name: str) -> ComputeTarget | None:
    """The target a `t<pk>` queue belongs to (None for `local`, the alerts queue, or junk)."""
    if queue_name.startswith("t") and queue_name[1:].isdigit():
        return ComputeTarget.objects.filter(pk=int(queue_name[1:])).first()
    return None


def worker_key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def worker_command(
    *, target: ComputeTarget, key: str = "<worker key>", server_url: str = ""
) -> str:
    """The command that starts a worker for the target (shown with a freshly made key). With
    `server_url` (runs.links.studio_url) it names the studio its scripts call back: without
    it, a worker on another host sends them to its own 127.0.0.1:8000."""
    command = f"runstudio worker -w {target.workspace.name} -c {target.name} --key {key}"
    return f"{command} --server-url {server_url}" if server_url else command


def compute_target_for_worker(*, workspace: str, name: str, key: str) -> ComputeTarget:
    """The target a worker started with `-w workspace -c name --key key` may serve, or a
    ServiceError whose message says what to do. The key is compared in constant time."""
    if name == LOCAL:
        raise InvalidInput(
            "The local target is served by the workers `runstudio serve` starts (queue "
            "'local'); start one with `runstudio worker` and no -w/--key.",
            field="compute_target",
        )
    target = (
        ComputeTarget.objects.select_related("workspace")
        .filter(workspace__name=workspace, name=name)
        .first()
    )
    if target is None:
        raise NotFound(
            f"Workspace {workspace!r} has no compute target named {name!r}; an owner adds it "
            f"on the compute page or with POST /api/v1/workspaces/{workspace}/compute.",
            field="compute_target",
        )
    if not target.worker_key_hash:
        raise InvalidInput(
            f"Compute target {name!r} of {workspace!r} has no worker key yet; an owner makes "
            f"one: `runstudio compute worker-key -w {workspace} -c {name}`.",
            field="key",
        )
    if not key or not hmac.compare_digest(worker_key_digest(key), target.worker_key_hash):
        raise InvalidInput(
            f"The worker key is not compute target {name!r}'s of {workspace!r} (its key starts "
            f"{target.worker_key_prefix!r}); pass --key or RUNSTUDIO_WORKER_KEY, or ask an "
            f"owner for a new one: `runstudio compute worker-key -w {workspace} -c {name}`.",
            field="key",
        )
    return target


def compute_target_key_current(*, target: ComputeTarget) -> bool:
    """Whether `target` (as loaded when a worker checked its key) still exists with that key;
    a running worker asks every heartbeat, so replacing the key also stops old workers."""
    return ComputeTarget.objects.filter(
        pk=target.pk, worker_key_hash=target.worker_key_hash
    ).exists()


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

    @property
    def isolated(self) -> bool | None:
        """True when every alive worker runs scripts in the sandbox, False when one does not,
        None when no worker is alive (nothing runs, so nothing to say)."""
        alive = self.alive_workers
        return all(w.isolated for w in alive) if alive else None


def compute_target_overview(*, workspace: Workspace) -> list[TargetOverview]:
    """Every target of the workspace with its workers (each with `.alive`), executing runs
    (oldest first) and queued runs (in queue order). Three queries whatever the sizes; recently
    stopped workers are kept a day so the page can show them as gone.

    Only the workspace's own workers, plus the server's shared `local` workers. Each worker gets
    `.run_here` (its current run if it is this workspace's, else None) and `.busy_elsewhere`
    (a shared local worker executing another workspace's run, whose id is never shown)."""
    targets = list(compute_target_list(workspace=workspace))
    by_queue = {target_queue_name(t): TargetOverview(target=t) for t in targets}
    own_queues = [q for q in by_queue if q != LOCAL]
    since = timezone.now() - timedelta(days=1)
    for worker in (
        worker_list()
        .filter(
            Q(queue_name=LOCAL, workspace__isnull=True)
            | Q(queue_name__in=own_queues, workspace=workspace)
        )
        .filter(Q(stopped_at__isnull=True) | Q(stopped_at__gte=since))
    ):
        worker.alive = worker_is_alive(worker)
        run = worker.current_run
        worker.run_here = run if run is not None and run.workspace_id == workspace.pk else None
        worker.busy_elsewhere = run is not None and worker.run_here is None
        by_queue[worker.queue_name].workers.append(worker)
    by_name = {o.target.name: o for o in by_queue.values()}
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


def worker_identity() -> tuple[str, int]:
    return socket.gethostname(), os.getpid()


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
