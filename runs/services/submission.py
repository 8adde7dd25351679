"""Script submission (docs/architecture.md, "Compute and execution")."""

import dataclasses
import json
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from runs import limits
from runs.errors import InvalidInput

# The property names are the worker's (runs/execution.py reads them); it may not import this
# module, which reaches it through tasks: the import circle stays open.
from runs.execution import ARGUMENTS_PROPERTY, SCRIPT_PROPERTY
from runs.models import Experiment, Run, RunStatus
from runs.services.files import run_files_delete_all
from runs.services.runs import RunSpec, run_create


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
    from runs import selectors, storage, tasks
    from runs import snapshot as snapshots

    workspace = experiment.workspace
    target = selectors.compute_target_for_submit(workspace=workspace, name=compute_target)
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
    # The snapshot unpacks aside first: the transaction (on SQLite, the database's write lock)
    # then lasts one rename and one insert, not the unpacking of up to SNAPSHOT_MAX_BYTES.
    placed = None
    try:
        with snapshots.snapshot_staged(archive=snapshot) as staged, transaction.atomic():
            run = run_create(experiment=experiment, spec=spec, submitter=submitter, parent=parent)
            snapshots.snapshot_place(run=run, staged=staged)
            placed = run
            tasks.run_enqueue(run=run)
    except BaseException:
        if placed is not None:  # the run was rolled back: its files go too
            run_files_delete_all(run=placed)
        raise
    return run
