"""MLflow 3 logged models and autologging: mlflow.sklearn.autolog() trains a small model and
its params, metrics, the logged model and its files arrive; load_model loads it back."""

import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)


def test_log_model_and_load_it_back(door):
    from sklearn.linear_model import LogisticRegression

    from runs.models import LoggedModel, RunFile

    model = LogisticRegression(max_iter=200).fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(model, name="clf", params={"C": "1.0"})
    stored = LoggedModel.objects.get(model_id=info.model_id)
    assert (stored.run.run_id, stored.name, stored.status) == (run.info.run_id, "clf", "READY")
    files = set(RunFile.objects.filter(run=stored.run).values_list("path", flat=True))
    assert f"outputs/models/{info.model_id}/MLmodel" in files
    loaded = mlflow.sklearn.load_model(info.model_uri)
    assert list(loaded.predict([[0.0], [3.0]])) == [0, 1]
    again = MlflowClient().get_logged_model(info.model_id)
    assert again.params == {"C": "1.0"} and again.source_run_id == run.info.run_id
    found = mlflow.search_logged_models(experiment_ids=["0"], output_format="list")
    assert [m.model_id for m in found] == [info.model_id]


def test_sklearn_autolog_logs_params_metrics_and_the_model(door):
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    from runs.models import LoggedModel, Run

    mlflow.sklearn.autolog(log_input_examples=False, log_model_signatures=False)
    try:
        X, y = load_iris(return_X_y=True)
        with mlflow.start_run() as run:
            DecisionTreeClassifier(max_depth=2).fit(X, y)
    finally:
        mlflow.sklearn.autolog(disable=True)
    stored = Run.objects.get(run_id=run.info.run_id)
    properties = dict(stored.properties.values_list("key", "value"))
    assert properties["max_depth"] == "2"
    assert "training_accuracy_score" in set(stored.metric_series.values_list("name", flat=True))
    model = LoggedModel.objects.get(run=stored)
    got = MlflowClient().get_run(run.info.run_id)
    # autolog also logs the training set (log_input) and links the model as the run's output.
    contexts = [
        {t.key: t.value for t in d.tags}.get("mlflow.data.context")
        for d in got.inputs.dataset_inputs
    ]
    assert "train" in contexts
    assert [o.model_id for o in got.outputs.model_outputs] == [model.model_id]
    loaded = mlflow.sklearn.load_model(f"models:/{model.model_id}")
    assert loaded.predict(X[:1]).shape == (1,)


def test_a_model_loads_by_its_runs_uri_too(door):
    from sklearn.linear_model import LinearRegression

    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0]), name="reg")
    loaded = mlflow.sklearn.load_model(f"runs:/{run.info.run_id}/reg")
    assert loaded.predict([[2.0]])[0] == pytest.approx(4.0)


def test_a_logged_models_tags_params_and_files_through_the_client(door):
    from sklearn.linear_model import LinearRegression

    client = MlflowClient()
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), name="m"
        )
    client.set_logged_model_tags(info.model_id, {"stage": "candidate", "owner": "carl"})
    client.delete_logged_model_tag(info.model_id, "owner")
    client.log_model_params(info.model_id, {"alpha": "0.5"})
    model = client.get_logged_model(info.model_id)
    assert model.tags.get("stage") == "candidate" and "owner" not in model.tags
    assert model.params["alpha"] == "0.5"
    names = {f.path for f in client.list_logged_model_artifacts(info.model_id)}
    assert "MLmodel" in names
    client.delete_logged_model(info.model_id)
    assert mlflow.search_logged_models(experiment_ids=["0"], output_format="list") == []
