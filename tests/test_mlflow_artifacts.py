"""MLflow's artifact calls through the proxy API: the files land in the run's own tree
(outputs/), where the studio's Outputs + logs and Download show them."""

import json
import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MPLBACKEND", "Agg")

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

# Each test runs with the run files in the local folder and again in a real SeaweedFS bucket.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("files_backend")]


def _files(run_id: str) -> dict[str, int]:
    from runs.models import RunFile

    return dict(RunFile.objects.filter(run__run_id=run_id).values_list("path", "size"))


def test_every_artifact_call_stores_into_the_runs_outputs(door, tmp_path):
    import numpy as np
    import pandas as pd
    from matplotlib import pyplot as plt

    (tmp_path / "notes.txt").write_text("hello")
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.csv").write_text("x,y\n1,2\n")
    (folder / "sub" / "b.bin").write_bytes(b"\x00\x01" * 1000)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "notes.txt"))
        mlflow.log_artifacts(str(folder), artifact_path="data")
        mlflow.log_dict({"lr": 0.1, "layers": [1, 2]}, "config.json")
        mlflow.log_text("free text", "texts/readme.md")
        figure, axes = plt.subplots()
        axes.plot([1, 2, 3])
        mlflow.log_figure(figure, "plots/line.png")
        mlflow.log_image(np.zeros((8, 8, 3), dtype=np.uint8), "images/black.png")
        mlflow.log_table(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), "tables/t.json")
    files = _files(run.info.run_id)
    for path in (
        "outputs/notes.txt",
        "outputs/data/a.csv",
        "outputs/data/sub/b.bin",
        "outputs/config.json",
        "outputs/texts/readme.md",
        "outputs/plots/line.png",
        "outputs/images/black.png",
        "outputs/tables/t.json",
    ):
        assert path in files, path
    assert files["outputs/data/sub/b.bin"] == 2000

    client = MlflowClient()
    top = {f.path: f.is_dir for f in client.list_artifacts(run.info.run_id)}
    assert top["notes.txt"] is False and top["data"] is True and top["images"] is True
    assert [f.path for f in client.list_artifacts(run.info.run_id, "data/sub")] == [
        "data/sub/b.bin"
    ]
    assert mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/config.json") == {
        "lr": 0.1,
        "layers": [1, 2],
    }
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/texts/readme.md") == "free text"
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="data", dst_path=str(tmp_path / "down")
    )
    assert (tmp_path / "down" / "data" / "sub" / "b.bin").read_bytes() == b"\x00\x01" * 1000
    assert os.path.isdir(local)
    table = mlflow.load_table("tables/t.json", run_ids=[run.info.run_id])
    assert list(table["a"]) == [1, 2] and list(table["b"]) == ["x", "y"]


def test_an_artifact_shows_in_the_studio_api_file_list(door, cast, tmp_path):
    with mlflow.start_run() as run:
        mlflow.log_text("line\n", "report.txt")
    listed = cast.contributor.client.get(f"/api/v1/runs/{run.info.run_id}/files").json()
    assert "outputs/report.txt" in json.dumps(listed)


def test_delete_artifacts_removes_a_file_or_a_folder(door):
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    with mlflow.start_run() as run:
        mlflow.log_text("a", "keep.txt")
        mlflow.log_text("b", "tmp/one.txt")
        mlflow.log_text("c", "tmp/deeper/two.txt")
    repo = get_artifact_repository(run.info.artifact_uri)
    repo.delete_artifacts("tmp")
    assert set(_files(run.info.run_id)) == {"outputs/keep.txt"}
    assert [f.path for f in MlflowClient().list_artifacts(run.info.run_id)] == ["keep.txt"]
