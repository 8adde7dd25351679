"""Archiving experiments: MLflow's delete_experiment / restore_experiment. An archived
experiment is hidden from the MLflow door's searches until restored; nothing is removed.

Runs have one archive path for every door — the studio's list and run page, the REST API and
MLflow's delete_run / restore_run: run_management.run_bulk_apply (descendants go along, each
action is recorded as a RunActivity)."""

from django.db import transaction
from django.utils import timezone

from runs.models import Experiment, Run


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
