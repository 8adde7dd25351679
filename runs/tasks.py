"""Background tasks on Django's Tasks framework (`django.tasks`), stored by django-tasks-db.

A run waits on its target's queue (runs.selectors.compute.target_queue_name: `local`, or
`t<target pk>`).
Workers: `runstudio worker -w <workspace> -c <target> --key <worker key>` (= `manage.py
runstudio_worker` with the same options, which checks the key, derives the queue, records
worker liveness and runs the reaper); `runstudio serve` starts the `local` ones. See
docs/architecture.md, "Compute and execution".
"""

from datetime import timedelta

from django.tasks import TaskContext, task
from django.utils import timezone

from runs import selectors
from runs.models import Run

# A run that would exceed its target's capacity is queued again this much later (seconds).
CAPACITY_RETRY_SECONDS = 2.0


# --- script execution ---------------------------------------------------------------------------


@task(takes_context=True)
def execute_run(context: TaskContext, run_pk: int) -> str:
    """Executes one submitted run (runs/execution.py); the task's queue is the run's target.

    Returns what happened: completed, failed, canceled, skipped (another worker claimed it, or
    it is already finished), deferred (the target is at capacity; queued again) or refused (the
    task was on a queue that is not the run's own target's)."""
    from runs import execution

    result = context.task_result
    worker_id = result.worker_ids[-1] if result.worker_ids else "immediate"
    outcome = execution.execute(
        run_pk=run_pk, worker_id=worker_id, queue_name=result.task.queue_name
    )
    if outcome == execution.DEFERRED:
        run_enqueue(run=Run.objects.get(pk=run_pk), delay=CAPACITY_RETRY_SECONDS)
    return outcome


def run_enqueue(*, run: Run, delay: float | None = None) -> None:
    """Puts a queued run on its compute target's queue (inside the caller's transaction)."""
    runner = execute_run.using(queue_name=selectors.run_queue_name(run))
    if delay:
        runner = runner.using(run_after=timezone.now() + timedelta(seconds=delay))
    runner.enqueue(run_pk=run.pk)
