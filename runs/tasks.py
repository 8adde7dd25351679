"""Background tasks on Django's Tasks framework (`django.tasks`), stored by django-tasks-db.

Workers: `runstudio worker -c <target>` (= `manage.py runstudio_worker --queue-name <target>`,
which also records worker liveness and runs the reaper) or a plain `manage.py db_worker
--queue-name <target>`. See docs/architecture.md, "Compute and execution".
"""

from datetime import timedelta

from django.tasks import TaskContext, task
from django.utils import timezone

from runs.models import Run

# A run that would exceed its target's capacity is queued again this much later (seconds).
CAPACITY_RETRY_SECONDS = 2.0


# --- script execution ---------------------------------------------------------------------------


@task(takes_context=True)
def execute_run(context: TaskContext, run_pk: int) -> str:
    """Executes one submitted run (runs/execution.py); the task's queue is the run's target.

    Returns what happened: completed, failed, canceled, skipped (another worker claimed it, or
    it is already finished) or deferred (the target is at capacity; queued again)."""
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
    runner = execute_run.using(queue_name=run.compute_target)
    if delay:
        runner = runner.using(run_after=timezone.now() + timedelta(seconds=delay))
    runner.enqueue(run_pk=run.pk)
