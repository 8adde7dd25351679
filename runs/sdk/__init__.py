"""Runstudio's Python SDK: Azure ML SDK v1's run-history shapes, self-hosted.

    from runs.sdk import Workspace, Experiment, Run

    ws = Workspace.from_config()
    exp = Experiment(workspace=ws, name="explore-runs")
    with exp.start_logging() as run:
        run.log("loss", 0.5)

Imports no Django (a test checks it): training scripts need only ``requests``.
"""

from runs.sdk.client import (
    AuthError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    NotFound,
    PermissionDenied,
    RunstudioError,
    ServerError,
)
from runs.sdk.experiment import Experiment
from runs.sdk.run import ActivityFailedException, Run
from runs.sdk.submit import ComputeTarget, ScriptRunConfig, SnapshotTooLarge
from runs.sdk.workspace import Workspace

__all__ = [
    "ActivityFailedException",
    "ComputeTarget",
    "ScriptRunConfig",
    "SnapshotTooLarge",
    "AuthError",
    "BadRequest",
    "Conflict",
    "ConnectionFailed",
    "Experiment",
    "NotFound",
    "PermissionDenied",
    "Run",
    "RunstudioError",
    "ServerError",
    "Workspace",
]
