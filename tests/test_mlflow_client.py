"""The real MLflow client (mlflow-skinny, pinned in the test extra) against a live server's
MLflow door: fluent API and MlflowClient, end to end."""

import os

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402


@pytest.fixture
def door(live_server, cast, monkeypatch):
    """MLFLOW_TRACKING_URI = the workspace's door, the contributor's token."""
    for name in list(os.environ):
        if name.startswith("MLFLOW_") and name not in ("MLFLOW_DISABLE_TELEMETRY",):
            monkeypatch.delenv(name)
    uri = f"{live_server.url}/mlflow/{cast.workspace.name}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", cast.contributor.token)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.tracking.fluent._active_experiment_id = None
    mlflow.set_tracking_uri(None)


def test_fluent_run_logs_params_metrics_and_tags_into_the_default_experiment(door, cast):
    from runs.models import Run

    with mlflow.start_run(run_name="first") as active:
        mlflow.log_param("lr", 0.1)
        mlflow.log_metric("loss", 0.5, step=1)
        mlflow.log_metric("loss", 0.25, step=2)
        mlflow.set_tag("team", "vision")
    run = Run.objects.get(run_id=active.info.run_id)
    assert run.display_name == "first"
    assert run.experiment.name == "Default"
    assert run.status == "Completed"
    got = MlflowClient().get_run(active.info.run_id)
    assert got.data.params == {"lr": "0.1"}
    assert got.data.metrics == {"loss": 0.25}
    assert got.data.tags["team"] == "vision"
    assert got.info.status == "FINISHED"
    assert got.info.experiment_id == "0"
