"""Queued script runs move from the old global queues (the target's name) to their target's
own queue (`t<target pk>`; `local` stays `local`), so an upgrade strands no queued run and no
worker of another workspace's same-named target can take one (docs/architecture.md,
"Per-workspace compute and worker keys")."""

from django.db import migrations


def requeue(apps, schema_editor):
    DBTaskResult = apps.get_model("django_tasks_database", "DBTaskResult")
    Run = apps.get_model("runs", "Run")
    ComputeTarget = apps.get_model("runs", "ComputeTarget")
    waiting = DBTaskResult.objects.filter(status="READY", task_path="runs.tasks.execute_run")
    for task in waiting.iterator():
        run_pk = ((task.args_kwargs or {}).get("kwargs") or {}).get("run_pk")
        run = Run.objects.filter(pk=run_pk).first()
        if run is None:
            continue
        target = (
            ComputeTarget.objects.filter(workspace_id=run.workspace_id, name=run.compute_target)
            .exclude(name="local")
            .first()
        )
        # A run whose target is gone goes to `local`, whose worker fails it with a reason.
        queue = f"t{target.pk}" if target is not None else "local"
        if task.queue_name != queue:
            DBTaskResult.objects.filter(pk=task.pk).update(queue_name=queue)


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0008_scopes_and_workspace_compute"),
        ("django_tasks_database", "0021_conditional_partial_index_ordering"),
    ]

    operations = [migrations.RunPython(requeue, migrations.RunPython.noop)]
