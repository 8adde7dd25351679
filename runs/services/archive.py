"""Archiving experiments: MLflow's delete_experiment / restore_experiment. An archived
experiment is hidden from the MLflow door's searches until restored; nothing is removed.

Runs have one archive path for every door — the studio's list and run page, the REST API and
MLflow's delete_run / restore_run: run_management.run_bulk_apply (descendants go along, each
action is recorded as a RunActivity). An experiment's runs archived with it are recorded the
same way."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from runs.models import Experiment, Run, RunAction, RunActivity


def _record_roots(experiment: Experiment, moment, action: str, by) -> None:
    """A RunActivity row, as the studio's archive writes, for each run that went (or came
    back) with the experiment at `moment` and whose parent did not: the Archived page then
    tells who deleted them, without one row per child of a sweep."""
    same = Q(parent__experiment=experiment, parent__archived_at=moment)
    roots = (
        Run.objects.filter(experiment=experiment, archived_at=moment)
        .exclude(same)
        .values_list("run_id", flat=True)
    )
    RunActivity.objects.bulk_create(
        [
            RunActivity(
                workspace_id=experiment.workspace_id,
                run_id=run_id,
                action=action,
                by=by,
                detail={"with_experiment": experiment.name},
            )
            for run_id in roots.iterator()
        ],
        batch_size=1000,
    )


@transaction.atomic
def experiment_archive(*, experiment: Experiment, by: AbstractBaseUser | None = None) -> Experiment:
    """Archives the experiment and its live runs, as MLflow's delete_experiment does; restoring
    brings back the runs archived with it (same moment), not runs archived before."""
    if experiment.archived_at is None:
        experiment.archived_at = timezone.now()
        experiment.save(update_fields=["archived_at"])
        Run.objects.filter(experiment=experiment, archived_at__isnull=True).update(
            archived_at=experiment.archived_at
        )
        _record_roots(experiment, experiment.archived_at, RunAction.ARCHIVE, by)
    return experiment


@transaction.atomic
def experiment_restore(*, experiment: Experiment, by: AbstractBaseUser | None = None) -> Experiment:
    if experiment.archived_at is not None:
        # Recorded first: afterwards nothing tells which runs came back with the experiment.
        _record_roots(experiment, experiment.archived_at, RunAction.RESTORE, by)
        Run.objects.filter(experiment=experiment, archived_at=experiment.archived_at).update(
            archived_at=None
        )
        experiment.archived_at = None
        experiment.save(update_fields=["archived_at"])
    return experiment
