"""Archiving: MLflow's soft delete. An archived run or experiment is hidden from the MLflow
door's searches and lists until restored; nothing is removed (run_delete removes for good).

Kept as plain services so any door (the studio, the REST API) can offer archiving later."""

from django.db import transaction
from django.utils import timezone

from runs.models import Experiment, Run


def run_archive(*, run: Run) -> Run:
    """Archives the run (idempotent: an archived run keeps its first archive time)."""
    if run.archived_at is None:
        run.archived_at = timezone.now()
        Run.objects.filter(pk=run.pk, archived_at__isnull=True).update(archived_at=run.archived_at)
    return run


def run_restore(*, run: Run) -> Run:
    run.archived_at = None
    Run.objects.filter(pk=run.pk).update(archived_at=None)
    return run


@transaction.atomic
def experiment_archive(*, experiment: Experiment) -> Experiment:
    """Archives the experiment and its live runs, as MLflow's delete_experiment does; restoring
    brings back the runs archived with it (same moment), not runs archived before."""
    if experiment.archived_at is None:
        experiment.archived_at = timezone.now()
        experiment.save(update_fields=["archived_at"])
        Run.objects.filter(experiment=experiment, archived_at__isnull=True).update(
            archived_at=experiment.archived_at
        )
    return experiment


@transaction.atomic
def experiment_restore(*, experiment: Experiment) -> Experiment:
    if experiment.archived_at is not None:
        Run.objects.filter(experiment=experiment, archived_at=experiment.archived_at).update(
            archived_at=None
        )
        experiment.archived_at = None
        experiment.save(update_fields=["archived_at"])
    return experiment
