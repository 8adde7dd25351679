"""search_runs through the real MLflow client: filter_string on the one search language,
order_by, max_results with page tokens, run_view_type; a pandas frame from mlflow.search_runs."""

import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def runs(door):
    """Five finished runs in experiment "search": lr, loss, team differ."""
    mlflow.set_experiment("search")
    made = {}
    for i, (team, loss) in enumerate(
        [("vision", 0.5), ("audio", 0.3), ("vision", 0.1), ("text", 0.9), ("vision", 0.7)]
    ):
        with mlflow.start_run(run_name=f"r{i}") as run:
            mlflow.log_param("lr", f"0.{i}")
            mlflow.log_metric("loss", loss)
            mlflow.set_tag("team", team)
        made[f"r{i}"] = run.info.run_id
    return made


def _names(found) -> list[str]:
    return [r.info.run_name for r in found]


def test_filter_strings_in_mlflows_grammar(runs):
    client = MlflowClient()
    exp = client.get_experiment_by_name("search").experiment_id

    def search(text, **kwargs):
        return sorted(_names(client.search_runs([exp], filter_string=text, **kwargs)))

    assert search("metrics.loss < 0.4") == ["r1", "r2"]
    assert search("tags.team = 'vision' AND metrics.loss > 0.2") == ["r0", "r4"]
    assert search("params.lr IN ('0.1', '0.3')") == ["r1", "r3"]
    assert search("attributes.run_name LIKE 'r%' and tags.team != 'vision'") == ["r1", "r3"]
    assert search("tags.team ILIKE 'VIS%'") == ["r0", "r2", "r4"]
    assert search("tags.`mlflow.runName` = 'r3'") == ["r3"]
    assert search("tags.\"mlflow.runName\" = 'r2'") == ["r2"]
    assert search("attributes.status = 'FINISHED'") == ["r0", "r1", "r2", "r3", "r4"]
    assert search("run_name = 'tags.mlflow.runName'") == []
    with pytest.raises(MlflowException) as bad:
        client.search_runs([exp], filter_string="metrics.loss <")
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"


def test_order_by_and_page_tokens(runs):
    client = MlflowClient()
    exp = client.get_experiment_by_name("search").experiment_id
    by_loss = client.search_runs([exp], order_by=["metrics.loss DESC"])
    assert _names(by_loss) == ["r3", "r4", "r0", "r1", "r2"]
    assert _names(client.search_runs([exp], order_by=["params.lr ASC"])) == [
        "r0",
        "r1",
        "r2",
        "r3",
        "r4",
    ]
    by_start = client.search_runs([exp], order_by=["attributes.start_time DESC"])
    assert _names(by_start) == ["r4", "r3", "r2", "r1", "r0"]
    assert _names(client.search_runs([exp], order_by=["tags.team"]))[:2] == ["r1", "r3"]
    first = client.search_runs([exp], order_by=["metrics.loss ASC"], max_results=2)
    assert _names(first) == ["r2", "r1"] and first.token
    # A run created between pages does not shift the next page.
    with mlflow.start_run(run_name="late"):
        mlflow.log_metric("loss", 0.0)
    second = client.search_runs(
        [exp], order_by=["metrics.loss ASC"], max_results=2, page_token=first.token
    )
    assert _names(second) == ["r0", "r4"]
    third = client.search_runs(
        [exp], order_by=["metrics.loss ASC"], max_results=2, page_token=second.token
    )
    assert _names(third) == ["r3"] and not third.token


def test_mlflow_search_runs_returns_a_frame_with_the_right_rows_and_order(runs):
    frame = mlflow.search_runs(
        experiment_names=["search"],
        filter_string="tags.team = 'vision'",
        order_by=["metrics.loss ASC"],
    )
    assert list(frame["tags.mlflow.runName"]) == ["r2", "r0", "r4"]
    assert list(frame["metrics.loss"]) == [0.1, 0.5, 0.7]
    assert list(frame["params.lr"]) == ["0.2", "0.0", "0.4"]
    assert set(frame["status"]) == {"FINISHED"}
    every = mlflow.search_runs(
        experiment_names=["search"], order_by=["tags.team ASC", "metrics.loss DESC"]
    )
    assert list(every["tags.mlflow.runName"]) == ["r1", "r3", "r4", "r0", "r2"]
    assert list(every["run_id"]) == [runs[name] for name in ["r1", "r3", "r4", "r0", "r2"]]


def test_order_by_uses_every_clause_then_start_time_then_run_id(runs):
    client = MlflowClient()
    exp = client.get_experiment_by_name("search").experiment_id

    def order(*clauses):
        return _names(client.search_runs([exp], order_by=list(clauses)))

    assert order("tags.team ASC", "metrics.loss DESC") == ["r1", "r3", "r4", "r0", "r2"]
    assert order("tags.team DESC", "params.lr DESC") == ["r4", "r2", "r0", "r3", "r1"]
    assert order("attributes.status", "attributes.run_name DESC") == ["r4", "r3", "r2", "r1", "r0"]
    # With no clause on start time, MLflow's tie-break is the newest start first.
    assert order("tags.team") == ["r1", "r3", "r4", "r2", "r0"]
    assert order("attributes.end_time ASC") == ["r0", "r1", "r2", "r3", "r4"]
    assert order("run_name ASC") == ["r0", "r1", "r2", "r3", "r4"]
    # A run without the metric comes last both ways.
    with mlflow.start_run(run_name="no-loss"):
        mlflow.set_tag("team", "vision")
    assert order("tags.team DESC", "metrics.loss ASC")[:4] == ["r2", "r0", "r4", "no-loss"]
    assert order("metrics.loss DESC")[-1] == "no-loss"
    # The same start time everywhere: the run id decides (ascending), so pages never disagree.
    same = sorted(client.create_run(exp, start_time=1_000_000_000_000).info.run_id for _ in "abc")
    for clauses in (["attributes.start_time"], ["attributes.start_time DESC"]):
        found = [r.info.run_id for r in client.search_runs([exp], order_by=clauses)]
        assert [i for i in found if i in same] == same
    with pytest.raises(MlflowException) as bad:
        client.search_runs([exp], order_by=["metrics.loss", "nothing.here.at.all DESC"])
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "nothing.here" in str(bad.value)
    with pytest.raises(MlflowException) as bad:
        client.search_runs([exp], order_by=["metrics.loss"] * 11)
    assert "SORT_KEYS_MAX" in str(bad.value)


def test_pages_skip_and_repeat_no_run_while_runs_are_inserted_between_pages(runs):
    client = MlflowClient()
    exp = client.get_experiment_by_name("search").experiment_id
    for order_by in ([], ["metrics.loss ASC"], ["tags.team DESC", "params.lr"]):
        before = {r.info.run_id for r in client.search_runs([exp], max_results=1000)}
        seen, token, inserted = [], None, 0
        while True:
            page = client.search_runs([exp], order_by=order_by, max_results=2, page_token=token)
            seen += [r.info.run_id for r in page]
            # Newer runs land on every side of the page's sort keys: first, last, between.
            for loss in (-1.0, 0.4, 99.0):
                with mlflow.start_run(run_name=f"late-{inserted}"):
                    mlflow.log_metric("loss", loss)
                    mlflow.set_tag("team", "vision")
                    mlflow.log_param("lr", "0.25")
                inserted += 1
            token = page.token
            if not token:
                break
        assert len(seen) == len(set(seen)), order_by  # nothing repeated
        assert set(seen) == before, order_by  # nothing skipped, nothing new mid-way
