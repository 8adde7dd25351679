"""A run logged by the unchanged MLflow client, seen in the studio: the "View run … at" link
the client prints opens its run page, with its params, metric chart and artifacts."""

import os
import re

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_view_run_link_opens_the_mlflow_runs_studio_page(
    page, door, cast, sign_in, screenshot, capsys
):
    import mlflow
    import pandas as pd

    mlflow.set_experiment("mlflow-demo")
    train = mlflow.data.from_pandas(pd.DataFrame({"x": [1.0, 2.0]}), name="train-set")
    with mlflow.start_run(run_name="logged by mlflow") as run:
        mlflow.log_param("lr", "0.01")
        mlflow.log_input(train, context="training")
        for step in range(20):
            mlflow.log_metric("loss", 1 / (step + 1), step=step)
        mlflow.log_text("all good\n", "report.txt")
    printed = capsys.readouterr().out
    link = re.search(r"View run .* at: (\S+)", printed).group(1)
    assert f"/runs/{run.info.run_id}" in link

    sign_in(page, cast.reader)
    page.goto(link)
    page.wait_for_url(f"**/w/lab/runs/{run.info.run_id}/")
    assert page.locator("h1#run-name").inner_text() == "logged by mlflow"
    assert "0.01" in page.locator("#run-properties").inner_text()
    dataset = page.locator("#run-inputs .rd-input")
    assert dataset.count() == 1
    assert "train-set" in dataset.inner_text() and "training" in dataset.inner_text()
    screenshot(page, "mlflow-run-overview")
    page.click(".rd-tabs a:has-text('Metrics')")
    page.wait_for_selector(".js-plotly-plot", timeout=15_000)
    assert "loss" in page.content()
    page.click(".rd-tabs a:has-text('Outputs')")
    page.wait_for_selector("text=report.txt")
    screenshot(page, "mlflow-run-outputs")
