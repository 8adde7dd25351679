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


# --- who may do what ---------------------------------------------------------------------------


def _code(exc: pytest.ExceptionInfo) -> str:
    return exc.value.error_code


def test_a_reader_reads_but_a_write_is_permission_denied(door, cast, monkeypatch):
    run_id = MlflowClient().create_run("0").info.run_id
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", cast.reader.token)
    client = MlflowClient()
    assert client.get_run(run_id).info.run_id == run_id
    with pytest.raises(MlflowException) as refused:
        client.log_metric(run_id, "loss", 1.0)
    assert _code(refused) == "PERMISSION_DENIED"
    with pytest.raises(MlflowException) as refused:
        client.create_experiment("readers-cannot")
    assert _code(refused) == "PERMISSION_DENIED"


def test_an_outsider_gets_resource_does_not_exist(door, cast, monkeypatch):
    run_id = MlflowClient().create_run("0").info.run_id
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", cast.outsider.token)
    with pytest.raises(MlflowException) as hidden:
        MlflowClient().get_run(run_id)
    assert _code(hidden) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as hidden:
        MlflowClient().get_experiment("0")
    assert _code(hidden) == "RESOURCE_DOES_NOT_EXIST"


def test_no_credentials_is_unauthenticated(door, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    with pytest.raises(MlflowException) as refused:
        MlflowClient().get_experiment("0")
    assert _code(refused) == "UNAUTHENTICATED"
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "rs_not-a-token")
    with pytest.raises(MlflowException) as refused:
        MlflowClient().get_experiment("0")
    assert _code(refused) == "UNAUTHENTICATED"


def test_basic_auth_and_the_workspace_header_reach_the_workspace(
    door, cast, live_server, monkeypatch
):
    from conftest import PASSWORD

    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", cast.contributor.user.username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    monkeypatch.setenv("MLFLOW_WORKSPACE", cast.workspace.name)
    uri = f"{live_server.url}/mlflow"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_name="via-header") as active:
        mlflow.log_metric("acc", 0.9)
    from runs.models import Run

    run = Run.objects.get(run_id=active.info.run_id)
    assert (run.workspace.name, run.submitter.username) == ("lab", "carl")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
    with pytest.raises(MlflowException) as refused:
        MlflowClient().get_run(active.info.run_id)
    assert _code(refused) == "UNAUTHENTICATED"


# --- experiments -------------------------------------------------------------------------------


def test_experiments_create_get_search_rename_tag_delete_and_restore(door):
    client = MlflowClient()
    exp_id = client.create_experiment("vision-sweeps", tags={"owner": "carl"})
    assert client.get_experiment(exp_id).name == "vision-sweeps"
    assert client.get_experiment_by_name("vision-sweeps").experiment_id == exp_id
    assert client.get_experiment_by_name("nothing-here") is None
    with pytest.raises(MlflowException) as taken:
        client.create_experiment("vision-sweeps")
    assert _code(taken) == "RESOURCE_ALREADY_EXISTS"
    client.set_experiment_tag(exp_id, "stage", "draft")
    assert client.get_experiment(exp_id).tags == {"owner": "carl", "stage": "draft"}
    client.rename_experiment(exp_id, "vision-sweeps-2")
    names = [e.name for e in client.search_experiments()]
    assert "vision-sweeps-2" in names
    client.delete_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"
    assert "vision-sweeps-2" not in [e.name for e in client.search_experiments()]
    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"


def test_set_experiment_then_nested_runs_show_as_children(door):
    from runs.models import Run

    mlflow.set_experiment("nested-demo")
    with mlflow.start_run(run_name="parent") as parent:
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("x", 1)
    stored = Run.objects.get(run_id=child.info.run_id)
    assert stored.parent.run_id == parent.info.run_id
    assert stored.experiment.name == "nested-demo"
    tags = MlflowClient().get_run(child.info.run_id).data.tags
    assert tags["mlflow.parentRunId"] == parent.info.run_id
    assert tags["mlflow.runName"] == "child"


# --- runs --------------------------------------------------------------------------------------


def test_a_param_logged_again_with_another_value_is_invalid_parameter_value(door):
    with mlflow.start_run():
        mlflow.log_param("lr", 0.1)
        mlflow.log_param("lr", 0.1)  # the same value again is fine
        with pytest.raises(MlflowException) as conflict:
            mlflow.log_param("lr", 0.2)
    assert _code(conflict) == "INVALID_PARAMETER_VALUE"
    assert "lr" in str(conflict.value)


def test_note_and_run_name_tags_are_the_description_and_display_name(door):
    from runs.models import Run

    with mlflow.start_run() as active:
        mlflow.set_tag("mlflow.note.content", "# Notes\nfirst try")
        mlflow.set_tag("mlflow.runName", "renamed")
    run = Run.objects.get(run_id=active.info.run_id)
    assert (run.display_name, run.description) == ("renamed", "# Notes\nfirst try")
    client = MlflowClient()
    client.delete_tag(active.info.run_id, "mlflow.note.content")
    assert Run.objects.get(run_id=active.info.run_id).description == ""


def test_statuses_map_both_ways(door):
    from runs.models import Run

    client = MlflowClient()
    for mlflow_status, studio in (
        ("FINISHED", "Completed"),
        ("FAILED", "Failed"),
        ("KILLED", "Canceled"),
    ):
        run = client.create_run("0")
        client.set_terminated(run.info.run_id, status=mlflow_status)
        assert Run.objects.get(run_id=run.info.run_id).status == studio
        assert client.get_run(run.info.run_id).info.status == mlflow_status
    assert len(run.info.run_id) == 32 and int(run.info.run_id, 16) >= 0


def test_delete_run_archives_it_and_restore_brings_it_back(door):
    from runs.models import Run

    client = MlflowClient()
    run_id = client.create_run("0").info.run_id
    client.delete_run(run_id)
    assert Run.objects.get(run_id=run_id).archived_at is not None
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    assert run_id not in [r.info.run_id for r in client.search_runs(["0"])]
    deleted = client.search_runs(["0"], run_view_type=mlflow.entities.ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [run_id]
    with pytest.raises(MlflowException) as refused:
        client.log_metric(run_id, "x", 1)
    assert _code(refused) == "INVALID_STATE"
    client.restore_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "active"


def test_delete_run_is_the_studios_archive_recorded_with_its_children_and_restore_matches(
    door, cast
):
    from runs.models import Membership, Run, RunActivity
    from runs.services import run_management

    with mlflow.start_run(run_name="sweep") as parent:
        with mlflow.start_run(run_name="trial-1", nested=True) as first:
            pass
        with mlflow.start_run(run_name="trial-2", nested=True) as second:
            pass
    client = MlflowClient()
    client.delete_run(second.info.run_id)  # archived on its own first
    client.delete_run(parent.info.run_id)
    deleted = client.search_runs(["0"], run_view_type=mlflow.entities.ViewType.DELETED_ONLY)
    assert {r.info.run_id for r in deleted} == {
        parent.info.run_id,
        first.info.run_id,
        second.info.run_id,
    }
    activity = RunActivity.objects.filter(run_id=parent.info.run_id).get()
    assert (activity.action, activity.by, activity.detail) == (
        "archive",
        cast.contributor.user,
        {"with_descendants": 1},
    )
    client.restore_run(parent.info.run_id)
    stages = {
        r.info.run_name: r.info.lifecycle_stage
        for r in client.search_runs(["0"], run_view_type=mlflow.entities.ViewType.ALL)
    }
    # Only what was archived with the parent comes back: trial-2 was deleted on its own.
    assert stages == {"sweep": "active", "trial-1": "active", "trial-2": "deleted"}
    assert list(
        RunActivity.objects.filter(run_id=parent.info.run_id).values_list("action", flat=True)
    ) == ["restore", "archive"]

    # The other way round: a run archived in the studio reads as deleted through MLflow.
    run_management.run_bulk_apply(
        membership=Membership.objects.get(user=cast.owner.user, workspace=cast.workspace),
        action="archive",
        run_ids=[first.info.run_id],
    )
    assert client.get_run(first.info.run_id).info.lifecycle_stage == "deleted"
    client.restore_run(first.info.run_id)
    assert Run.objects.get(run_id=first.info.run_id).archived_at is None


def test_log_batch_and_metric_history_pages(door):
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient()
    run_id = client.create_run("0").info.run_id
    metrics = [Metric("loss", 1.0 / (i + 1), 1_700_000_000_000 + i, i) for i in range(1000)]
    client.log_batch(
        run_id,
        metrics=metrics,
        params=[Param(f"p{i}", str(i)) for i in range(100)],
        tags=[RunTag(f"t{i}", "v") for i in range(100)],
    )
    history = client.get_metric_history(run_id, "loss")
    assert [m.step for m in history] == list(range(1000))
    assert history[10].value == pytest.approx(1 / 11)
    assert history[10].timestamp == 1_700_000_000_010


def test_log_batch_over_mlflows_limits_is_invalid_parameter_value(door, cast):
    import requests

    run_id = MlflowClient().create_run("0").info.run_id
    point = {"key": "m", "value": 1.0, "timestamp": 0, "step": 0}
    for body in (
        {"metrics": [point] * 1001},
        {"params": [{"key": f"p{i}", "value": "1"} for i in range(101)]},
        {"tags": [{"key": f"t{i}", "value": "1"} for i in range(101)]},
    ):
        answer = requests.post(
            f"{door}/api/2.0/mlflow/runs/log-batch",
            json={"run_id": run_id, **body},
            headers={"Authorization": f"Bearer {cast.contributor.token}"},
            timeout=30,
        )
        assert answer.status_code == 400
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert next(iter(body)) in answer.json()["message"]


def test_a_retried_log_batch_stores_its_points_once(door, cast):
    import requests

    from runs.models import MetricSeries

    run_id = MlflowClient().create_run("0").info.run_id
    body = {
        "run_id": run_id,
        "metrics": [{"key": "m", "value": 1.5, "timestamp": "1700000000000", "step": "3"}],
    }
    for _ in range(2):
        answer = requests.post(
            f"{door}/api/2.0/mlflow/runs/log-batch",
            json=body,
            headers={"Authorization": f"Bearer {cast.contributor.token}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
    assert MetricSeries.objects.get(run__run_id=run_id, name="m").count == 1


def test_an_mlflow_run_is_never_reaped_for_missing_heartbeats(door):
    from datetime import timedelta

    from django.utils import timezone

    from runs.selectors.compute import runs_stale

    run_id = MlflowClient().create_run("0", start_time=1_600_000_000_000).info.run_id
    later = timezone.now() + timedelta(days=30)
    assert run_id not in {r.run_id for r in runs_stale(now=later)}
    assert MlflowClient().get_run(run_id).info.start_time == 1_600_000_000_000


def test_async_logging_arrives_whole(door, monkeypatch):
    from runs.models import MetricSeries

    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_LOGGING", "true")
    with mlflow.start_run() as active:
        for step in range(300):
            mlflow.log_metric("loss", 1 / (step + 1), step=step, synchronous=False)
        mlflow.log_param("optimizer", "adam", synchronous=False)
        mlflow.set_tag("mode", "async", synchronous=False)
        mlflow.flush_async_logging()
    series = MetricSeries.objects.get(run__run_id=active.info.run_id, name="loss")
    assert series.count == 300
    # The async queue may send its batches in any order: every step arrives, once.
    history = MlflowClient().get_metric_history(active.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(300))
    got = MlflowClient().get_run(active.info.run_id)
    assert got.data.params == {"optimizer": "adam"} and got.data.tags["mode"] == "async"


def test_a_run_logged_with_the_sdk_reads_back_through_mlflow_and_the_other_way(door, sdk_server):
    from runs.sdk import Experiment, Workspace
    from runs.sdk import Run as SdkRun

    ws = Workspace.get(sdk_server.workspace)
    sdk_run = Experiment(workspace=ws, name="both-ways").start_logging(display_name="from sdk")
    sdk_run.log("acc", 0.75)
    sdk_run.add_properties({"seed": "7"})
    sdk_run.tag("source", "sdk")
    sdk_run.complete()

    client = MlflowClient()
    seen = client.get_run(sdk_run.id)
    assert seen.info.run_name == "from sdk" and seen.info.status == "FINISHED"
    assert seen.data.metrics == {"acc": 0.75} and seen.data.params == {"seed": "7"}
    assert seen.data.tags["source"] == "sdk"
    exp = client.get_experiment_by_name("both-ways").experiment_id
    assert [r.info.run_id for r in client.search_runs([exp])] == [sdk_run.id]

    with mlflow.start_run(experiment_id=exp, run_name="from mlflow") as active:
        mlflow.log_metric("acc", 0.8)
        mlflow.log_param("seed", "8")
    back = SdkRun.get(ws, active.info.run_id)
    assert back.display_name == "from mlflow"
    assert back.get_metrics() == {"acc": [0.8]}
    assert back.get_properties() == {"seed": "8"}
    assert back.get_status() == "Completed"


def test_the_view_run_link_page_sends_a_member_to_the_studio_and_others_to_404(cast, make_run):
    from django.test import Client

    run = make_run()
    page = Client().get("/mlflow/lab/")
    assert page.status_code == 200 and b"mlflow_link.js" in page.content
    anonymous = Client().get(f"/mlflow/lab/?run={run.run_id}")
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    member = Client()
    member.force_login(cast.reader.user)
    opened = member.get(f"/mlflow/lab/?run={run.run_id}")
    assert opened.status_code == 302 and opened["Location"] == f"/w/lab/runs/{run.run_id}/"
    by_header_link = member.get(f"/mlflow/?run={run.run_id}&workspace=lab")
    assert by_header_link["Location"] == f"/w/lab/runs/{run.run_id}/"
    outsider = Client()
    outsider.force_login(cast.outsider.user)
    assert outsider.get(f"/mlflow/lab/?run={run.run_id}").status_code == 404
    assert outsider.get(f"/mlflow/elsewhere/?run={run.run_id}").status_code == 404


def test_search_experiments_by_name_pattern(door):
    client = MlflowClient()
    for name in ("cv.resnet", "cv-vit", "nlp.bert"):
        client.create_experiment(name)
    found = client.search_experiments(filter_string="name LIKE 'cv%'")
    assert sorted(e.name for e in found) == ["cv-vit", "cv.resnet"]
    assert [e.name for e in client.search_experiments(filter_string="name = 'nlp.bert'")] == [
        "nlp.bert"
    ]
    assert client.search_experiments(filter_string="name LIKE '(cv'") == []
    with pytest.raises(MlflowException) as bad:
        client.search_experiments(filter_string="tags.x = 'y'")
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"


def test_search_experiments_pages_newest_first_by_token_each_once(door):
    client = MlflowClient()
    for i in range(5):
        client.create_experiment(f"paged-{i}")
    seen, token = [], None
    while True:
        page = client.search_experiments(
            max_results=2, page_token=token, filter_string="name LIKE 'paged-%'"
        )
        assert len(page) <= 2
        seen += [e.name for e in page]
        token = page.token
        if not token:
            break
    assert seen == [f"paged-{i}" for i in reversed(range(5))]


def test_a_tracking_uri_with_a_trailing_slash_works(door, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", door + "/")
    mlflow.set_tracking_uri(door + "/")
    with mlflow.start_run() as active:
        mlflow.log_metric("x", 1.0)
        mlflow.log_text("t", "t.txt")
    assert MlflowClient().get_run(active.info.run_id).data.metrics == {"x": 1.0}
    assert [f.path for f in MlflowClient().list_artifacts(active.info.run_id)] == ["t.txt"]


def test_an_experiment_name_outside_the_studios_rule_says_the_rule(door):
    with pytest.raises(MlflowException) as refused:
        mlflow.set_experiment("My Experiment")
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "letters, digits" in str(refused.value)


def test_running_and_scheduled_read_back_from_the_studios_states(door, make_run):
    from runs.models import Run

    client = MlflowClient()
    created = client.create_run("0")
    assert created.info.status == "RUNNING"
    assert Run.objects.get(run_id=created.info.run_id).status == "Running"
    for studio in ("NotStarted", "Queued", "Preparing"):
        assert client.get_run(make_run(status=studio).run_id).info.status == "SCHEDULED"
    for studio in ("Finalizing", "CancelRequested"):
        assert client.get_run(make_run(status=studio).run_id).info.status == "RUNNING"


def test_a_history_longer_than_the_clients_page_arrives_whole_and_in_order(door):
    from mlflow.entities import Metric

    client = MlflowClient()
    run_id = client.create_run("0").info.run_id
    total = 26_000  # the client asks 25,000 points a page: this takes two
    for start in range(0, total, 1000):
        client.log_batch(
            run_id,
            metrics=[
                Metric("loss", float(i), 1_700_000_000_000 + i, i)
                for i in range(start, start + 1000)
            ],
        )
    history = client.get_metric_history(run_id, "loss")
    assert [m.step for m in history] == list(range(total))
    assert history[-1].value == total - 1
    assert history[-1].timestamp == 1_700_000_000_000 + total - 1


def test_each_workspace_has_its_own_default_experiment_zero(door, cast, live_server, monkeypatch):
    from runs.models import Run

    with mlflow.start_run() as ours:
        pass
    uri = f"{live_server.url}/mlflow/elsewhere"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", cast.outsider.token)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run() as theirs:
        pass
    assert theirs.info.experiment_id == ours.info.experiment_id == "0"
    placed = {
        r.run_id: (r.workspace.name, r.experiment.name)
        for r in Run.objects.select_related("workspace", "experiment")
    }
    assert placed[ours.info.run_id] == ("lab", "Default")
    assert placed[theirs.info.run_id] == ("elsewhere", "Default")
    assert [r.info.run_id for r in MlflowClient().search_runs(["0"])] == [theirs.info.run_id]
    assert MlflowClient().get_experiment("0").name == "Default"


def test_delete_experiment_records_its_runs_archive_once_per_tree_and_restore_too(door, cast):
    from runs.models import RunActivity

    client = MlflowClient()
    exp = client.create_experiment("to-delete")
    with mlflow.start_run(experiment_id=exp, run_name="sweep") as parent:
        with mlflow.start_run(experiment_id=exp, run_name="trial", nested=True):
            pass
    with mlflow.start_run(experiment_id=exp, run_name="single") as single:
        pass
    client.delete_experiment(exp)
    rows = RunActivity.objects.filter(action="archive")
    assert {r.run_id for r in rows} == {parent.info.run_id, single.info.run_id}
    assert {(r.by, r.detail["with_experiment"]) for r in rows} == {
        (cast.contributor.user, "to-delete")
    }
    client.restore_experiment(exp)
    restored = RunActivity.objects.filter(action="restore").values_list("run_id", flat=True)
    assert set(restored) == {parent.info.run_id, single.info.run_id}
    assert len(client.search_runs([exp])) == 3
