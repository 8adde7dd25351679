"""get_metric_history through the real MLflow client: what the door's lean history path
(selectors.metric_point_rows, dicts built straight from the rows) must keep exact."""

import math
import os

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric  # noqa: E402


def test_a_points_millisecond_timestamp_reads_back_exactly_in_any_year(door):
    # Stored as seconds, these read back as x.9999… ms: truncating them lost a millisecond.
    stamps = [537_107_601_032, 2_197_669_713_871, 1_700_000_000_010]
    client = MlflowClient()
    run_id = client.create_run("0").info.run_id
    client.log_batch(
        run_id, metrics=[Metric("loss", 0.5, stamp, step) for step, stamp in enumerate(stamps)]
    )
    history = client.get_metric_history(run_id, "loss")
    assert [m.timestamp for m in history] == stamps


def test_nan_and_infinities_read_back_among_finite_values(door):
    values = [1.5, math.nan, math.inf, -math.inf, -0.25]
    client = MlflowClient()
    run_id = client.create_run("0").info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric("loss", v, 1_700_000_000_000 + i, i) for i, v in enumerate(values)],
    )
    got = [m.value for m in client.get_metric_history(run_id, "loss")]
    assert got[0] == 1.5 and got[4] == -0.25
    assert math.isnan(got[1])
    assert got[2] == math.inf and got[3] == -math.inf


def test_a_history_pages_by_its_token_without_losing_or_repeating_a_point(door, cast):
    import requests

    client = MlflowClient()
    run_id = client.create_run("0").info.run_id
    client.log_batch(
        run_id, metrics=[Metric("loss", i / 10, 1_700_000_000_000 + i, i) for i in range(25)]
    )
    steps, token = [], None
    while True:
        params = {"run_id": run_id, "metric_key": "loss", "max_results": 10}
        if token:
            params["page_token"] = token
        page = requests.get(
            f"{door}/api/2.0/mlflow/metrics/get-history",
            params=params,
            headers={"Authorization": f"Bearer {cast.contributor.token}"},
            timeout=30,
        ).json()
        steps += [m["step"] for m in page["metrics"]]
        token = page.get("next_page_token")
        if not token:
            break
    assert steps == list(range(25))
