"""Datasets and logged models a run used or produced (MLflow's log_input / log_inputs /
log_outputs) through the real client: stored once, read back by get_run and search_runs, and
shown on the run's studio page, one line per dataset."""

import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)


def _frame():
    import pandas as pd

    return pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 1]})


def test_log_input_stores_datasets_with_their_context_and_get_run_returns_them(door, cast):
    from django.test import Client

    train = mlflow.data.from_pandas(_frame(), source="s3://bucket/train.csv", name="train")
    evaluation = mlflow.data.from_pandas(_frame().head(2), name="eval")
    with mlflow.start_run() as active:
        mlflow.log_input(train, context="training")
        mlflow.log_input(train, context="training")  # the same dataset again: one input
        mlflow.log_input(evaluation, context="evaluation", tags={"split": "holdout"})
    got = MlflowClient().get_run(active.info.run_id).inputs.dataset_inputs
    assert [d.dataset.name for d in got] == ["train", "eval"]
    first = got[0]
    assert first.dataset.digest == train.digest and first.dataset.source_type == "s3"
    assert "s3://bucket/train.csv" in first.dataset.source
    assert first.dataset.schema and "x" in first.dataset.schema
    assert {t.key: t.value for t in first.tags} == {"mlflow.data.context": "training"}
    assert {t.key: t.value for t in got[1].tags} == {
        "mlflow.data.context": "evaluation",
        "split": "holdout",
    }
    # search_runs carries them too.
    found = MlflowClient().search_runs(["0"])
    assert [d.dataset.name for d in found[0].inputs.dataset_inputs] == ["train", "eval"]

    page = Client()
    page.force_login(cast.reader.user)
    html = page.get(f"/w/lab/runs/{active.info.run_id}/").content.decode()
    section = html[html.index('id="run-inputs"') :]
    section = section[: section.index("</section>")]
    assert section.count('class="rd-input"') == 2
    assert "train" in section and train.digest in section and "training" in section
    assert "eval" in section and "split: holdout" in section


def test_log_model_links_the_model_as_the_runs_output_and_log_inputs_takes_models(door):
    from mlflow.entities import LoggedModelInput
    from sklearn.linear_model import LinearRegression

    with mlflow.start_run() as producer:
        info = mlflow.sklearn.log_model(LinearRegression().fit([[0.0], [1.0]], [0, 1]), name="m")
    outputs = MlflowClient().get_run(producer.info.run_id).outputs.model_outputs
    assert [(o.model_id, o.step) for o in outputs] == [(info.model_id, 0)]
    # The fluent mlflow.log_inputs(models=…) is Databricks-only; the client sends it anywhere.
    consumer = MlflowClient().create_run("0")
    MlflowClient().log_inputs(consumer.info.run_id, models=[LoggedModelInput(info.model_id)])
    inputs = MlflowClient().get_run(consumer.info.run_id).inputs.model_inputs
    assert [m.model_id for m in inputs] == [info.model_id]


def test_a_model_input_from_nowhere_or_a_reader_is_refused(door, cast, monkeypatch):
    from mlflow.entities import LoggedModelInput

    client = MlflowClient()
    run_id = client.create_run("0").info.run_id
    with pytest.raises(MlflowException) as missing:
        client.log_inputs(run_id, models=[LoggedModelInput("m-" + "0" * 32)])
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", cast.reader.token)
    dataset = mlflow.data.from_pandas(_frame(), name="train")._to_mlflow_entity()
    from mlflow.entities import DatasetInput

    with pytest.raises(MlflowException) as refused:
        MlflowClient().log_inputs(run_id, datasets=[DatasetInput(dataset)])
    assert refused.value.error_code == "PERMISSION_DENIED"
    from runs.models import RunInput

    assert not RunInput.objects.filter(run__run_id=run_id).exists()


def test_a_dataset_past_mlflows_limits_is_invalid_parameter_value_naming_the_field(door, cast):
    import requests

    run_id = MlflowClient().create_run("0").info.run_id
    dataset = {"name": "d", "digest": "abc", "source_type": "local", "source": "{}"}
    for bad, field in (
        ({**dataset, "digest": "x" * 37}, "digest"),
        ({**dataset, "name": ""}, "name"),
        ({**dataset, "source": 5}, "source"),
    ):
        answer = requests.post(
            f"{door}/api/2.0/mlflow/runs/log-inputs",
            json={"run_id": run_id, "datasets": [{"dataset": bad}]},
            headers={"Authorization": f"Bearer {cast.contributor.token}"},
            timeout=30,
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert f"datasets[0].{field}" in answer.json()["message"]
    answer = requests.post(
        f"{door}/api/2.0/mlflow/runs/log-inputs",
        json={"run_id": run_id, "datasets": [{"dataset": dataset}] * 1001},
        headers={"Authorization": f"Bearer {cast.contributor.token}"},
        timeout=30,
    )
    assert answer.status_code == 400 and "RUN_INPUTS_PER_REQUEST" in answer.json()["message"]
