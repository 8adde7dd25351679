"""Demo data for `runstudio serve --demo`: a user, a workspace and a few realistic runs,
written through the same services as every other door."""

import io
import math
import random

from django.contrib.auth import get_user_model
from django.db import transaction

from runs import services
from runs.models import Run, RunStatus, Workspace
from runs.services import RunSpec

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-password"
DEMO_WORKSPACE = "demo"


def _curve(rng: random.Random, steps: int, start: float, floor: float) -> list[float]:
    return [
        floor + (start - floor) * math.exp(-step / (steps / 4)) + rng.gauss(0, 0.01)
        for step in range(steps)
    ]


def _log_training(run: Run, rng: random.Random, *, steps: int, lr: float) -> None:
    loss = _curve(rng, steps, 2.3, 0.2 + lr)
    accuracy = [1 - v / 2.5 for v in loss]
    services.run_log_batch(
        run=run,
        metrics=[
            {"name": "loss", "values": loss},
            {"name": "accuracy", "values": accuracy},
            {"name": "learning_rate", "values": [lr]},
            {"name": "message", "kind": "string", "values": ["Hello from run!"]},
        ],
    )
    log = "".join(f"step {s}: loss={v:.4f}\n" for s, v in enumerate(loss[:200]))
    services.run_file_write(run=run, path="logs/70_driver_log.txt", stream=io.BytesIO(log.encode()))
    services.run_file_write(
        run=run, path="outputs/model.txt", stream=io.BytesIO(f"lr={lr}\n".encode())
    )


@transaction.atomic
def seed_demo() -> bool:
    """Seeds an empty database; returns False (and changes nothing) if it holds a workspace."""
    if Workspace.objects.exists():
        return False
    user = get_user_model().objects.create_user(
        DEMO_USERNAME, password=DEMO_PASSWORD, is_staff=True, is_superuser=True
    )
    workspace = services.workspace_create(name=DEMO_WORKSPACE, owner=user)
    rng = random.Random(7)

    explore, _ = services.experiment_get_or_create(workspace=workspace, name="explore-runs")
    run = services.run_create(
        experiment=explore,
        spec=RunSpec(
            display_name="baseline",
            description="First try with the **default** settings.",
            tags={"quality": "fantastic run", "worth another look": None},
            properties={"author": "azureml-user"},
        ),
        submitter=user,
    )
    _log_training(run, rng, steps=500, lr=0.01)
    services.run_set_status(run=run, status=RunStatus.COMPLETED, by=user)

    failed = services.run_create(
        experiment=explore,
        spec=RunSpec(display_name="diverged", tags={"quality": "bad run"}),
        submitter=user,
    )
    _log_training(failed, rng, steps=50, lr=0.5)
    services.run_set_status(
        run=failed,
        status=RunStatus.FAILED,
        by=user,
        error_code="UserError",
        error_message="FloatingPointError: loss became NaN",
    )

    sweep_exp, _ = services.experiment_get_or_create(workspace=workspace, name="sweep-lr")
    sweep = services.run_create(
        experiment=sweep_exp,
        spec=RunSpec(display_name="lr sweep", run_type="sweep", tags={"sweep": "lr"}),
        submitter=user,
    )
    rates = [0.001, 0.003, 0.01, 0.03, 0.1]
    children = services.run_create_children(
        parent=sweep,
        specs=[
            RunSpec(display_name=f"lr={lr}", run_type="child", tags={"lr": str(lr)}) for lr in rates
        ],
        submitter=user,
    )
    for child, lr in zip(children, rates, strict=True):
        _log_training(child, rng, steps=300, lr=lr)
        services.run_set_status(run=child, status=RunStatus.COMPLETED, by=user)
    services.run_log_batch(run=sweep, metrics=[{"name": "best_loss", "values": [0.21]}])

    services.run_create(
        experiment=explore,
        spec=RunSpec(display_name="still training", tags={"quality": "great run"}),
        submitter=user,
    )
    return True
