"""Attacks on the MLflow door (/mlflow/<workspace>/…): another workspace's run, experiment or
model answers exactly like one that does not exist; artifact paths cannot leave the run's
tree (or its outputs/ folder, for writes); junk of any type is a 4xx in MLflow's shape."""

import json
import re

import pytest
from django.test import Client

from runs import services
from runs.models import Run, RunFile, Workspace
from runs.services import RunSpec

MISSING = "0123456789abcdef0123456789abcdef"


def _call(member, method: str, url: str, body=None, **extra):
    client = Client()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {member.token}", **extra}
    if method == "get":
        return client.get(url, body if isinstance(body, dict) else {}, **headers)
    if method == "put":
        return client.put(url, body or b"", content_type="application/octet-stream", **headers)
    if isinstance(body, bytes):
        return getattr(client, method)(
            url, body, content_type="application/octet-stream", **headers
        )
    return getattr(client, method)(
        url, json.dumps(body or {}), content_type="application/json", **headers
    )


def _same(first, second, first_name: str, second_name: str) -> None:
    assert first.status_code == second.status_code, (first.status_code, second.status_code)

    def text(response, name):
        content = b"".join(response.streaming_content) if response.streaming else response.content
        return re.sub(rf"(?<![\w.]){re.escape(name)}(?!\w)", "<probe>", content.decode())

    assert text(first, first_name) == text(second, second_name)


@pytest.fixture
def foreign_run(cast):
    """A run in "elsewhere", the outsider's workspace, which lab's members cannot see."""
    elsewhere = Workspace.objects.get(name="elsewhere")
    experiment, _ = services.experiment_get_or_create(workspace=elsewhere, name="secret")
    return services.run_create(
        experiment=experiment, spec=RunSpec(hex_id=True), submitter=cast.outsider.user
    )


CALLS = [
    ("get", "api/2.0/mlflow/runs/get", lambda rid: {"run_id": rid}),
    (
        "post",
        "api/2.0/mlflow/runs/log-metric",
        lambda rid: {"run_id": rid, "key": "m", "value": 1, "timestamp": 0},
    ),
    (
        "post",
        "api/2.0/mlflow/runs/log-parameter",
        lambda rid: {"run_id": rid, "key": "p", "value": "1"},
    ),
    ("post", "api/2.0/mlflow/runs/set-tag", lambda rid: {"run_id": rid, "key": "t", "value": "1"}),
    ("post", "api/2.0/mlflow/runs/delete-tag", lambda rid: {"run_id": rid, "key": "t"}),
    (
        "post",
        "api/2.0/mlflow/runs/log-batch",
        lambda rid: {"run_id": rid, "params": [{"key": "a", "value": "b"}]},
    ),
    ("post", "api/2.0/mlflow/runs/update", lambda rid: {"run_id": rid, "status": "FINISHED"}),
    ("post", "api/2.0/mlflow/runs/delete", lambda rid: {"run_id": rid}),
    ("post", "api/2.0/mlflow/runs/restore", lambda rid: {"run_id": rid}),
    ("get", "api/2.0/mlflow/metrics/get-history", lambda rid: {"run_id": rid, "metric_key": "m"}),
    (
        "post",
        "api/2.0/mlflow/runs/create",
        lambda rid: {"experiment_id": "0", "tags": [{"key": "mlflow.parentRunId", "value": rid}]},
    ),
    (
        "post",
        "api/2.0/mlflow/logged-models",
        lambda rid: {"experiment_id": "0", "source_run_id": rid},
    ),
    ("get", "api/2.0/mlflow-artifacts/artifacts", lambda rid: {"path": f"runs/{rid}/outputs"}),
    (
        "post",
        "api/2.0/mlflow/runs/log-inputs",
        lambda rid: {
            "run_id": rid,
            "datasets": [{"dataset": {"name": "d", "digest": "1", "source_type": "local"}}],
        },
    ),
    ("post", "api/2.0/mlflow/runs/outputs", lambda rid: {"run_id": rid, "models": []}),
]


@pytest.mark.parametrize(("method", "route", "body"), CALLS, ids=[c[1] for c in CALLS])
def test_another_workspaces_run_reads_like_a_run_that_does_not_exist(
    cast, foreign_run, method, route, body
):
    url = f"/mlflow/lab/{route}"
    foreign = _call(cast.contributor, method, url, body(foreign_run.run_id))
    missing = _call(cast.contributor, method, url, body(MISSING))
    assert foreign.status_code == 404
    assert foreign.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    _same(foreign, missing, foreign_run.run_id, MISSING)
    assert not foreign_run.metric_series.exists() and not foreign_run.properties.exists()
    assert Run.objects.get(pk=foreign_run.pk).archived_at is None


def test_another_workspaces_run_by_its_artifact_url_reads_like_a_missing_one(cast, foreign_run):
    services.run_log_batch(run=foreign_run, metrics=[{"name": "m", "values": [1]}])
    for method in ("get", "put", "delete"):
        url = "/mlflow/lab/api/2.0/mlflow-artifacts/artifacts/runs/{}/outputs/a.txt"
        foreign = _call(cast.contributor, method, url.format(foreign_run.run_id), b"x")
        missing = _call(cast.contributor, method, url.format(MISSING), b"x")
        assert foreign.status_code == 404
        _same(foreign, missing, foreign_run.run_id, MISSING)
    assert not RunFile.objects.filter(run=foreign_run).exists()


def test_the_outsider_cannot_reach_a_workspace_door_it_is_not_in(cast, make_run):
    run = make_run()
    theirs = _call(
        cast.outsider, "get", "/mlflow/lab/api/2.0/mlflow/runs/get", {"run_id": run.run_id}
    )
    nobody = _call(
        cast.outsider, "get", "/mlflow/nowhere/api/2.0/mlflow/runs/get", {"run_id": run.run_id}
    )
    assert theirs.status_code == nobody.status_code == 404
    _same(theirs, nobody, "lab", "nowhere")
    via_header = _call(
        cast.outsider,
        "get",
        "/mlflow/api/2.0/mlflow/runs/get",
        {"run_id": run.run_id},
        HTTP_X_MLFLOW_WORKSPACE="lab",
    )
    assert via_header.status_code == 404


def test_another_workspaces_experiment_reads_like_a_missing_one(cast, foreign_run):
    foreign_id = str(foreign_run.experiment_id)
    missing_id = "987654321"
    for method, route, body in (
        ("get", "experiments/get", lambda e: {"experiment_id": e}),
        ("post", "runs/create", lambda e: {"experiment_id": e}),
        ("post", "runs/search", lambda e: {"experiment_ids": [e]}),
        ("post", "experiments/delete", lambda e: {"experiment_id": e}),
        (
            "post",
            "experiments/set-experiment-tag",
            lambda e: {"experiment_id": e, "key": "k", "value": "v"},
        ),
    ):
        url = f"/mlflow/lab/api/2.0/mlflow/{route}"
        foreign = _call(cast.contributor, method, url, body(foreign_id))
        missing = _call(cast.contributor, method, url, body(missing_id))
        assert foreign.status_code == 404, route
        _same(foreign, missing, foreign_id, missing_id)
    by_name = _call(
        cast.contributor,
        "get",
        "/mlflow/lab/api/2.0/mlflow/experiments/get-by-name",
        {"experiment_name": "secret"},
    )
    assert by_name.status_code == 404


def test_another_workspaces_logged_model_reads_like_a_missing_one(cast, foreign_run):
    model = services.logged_model_create(run=foreign_run, name="m")
    for method, suffix in (
        ("get", ""),
        ("patch", ""),
        ("delete", ""),
        ("patch", "/tags"),
        ("post", "/params"),
    ):
        url = "/mlflow/lab/api/2.0/mlflow/logged-models/{}" + suffix
        foreign = _call(
            cast.contributor, method, url.format(model.model_id), {"status": "LOGGED_MODEL_READY"}
        )
        missing = _call(
            cast.contributor, method, url.format("m-" + MISSING), {"status": "LOGGED_MODEL_READY"}
        )
        assert foreign.status_code == 404
        _same(foreign, missing, model.model_id, "m-" + MISSING)
    model.refresh_from_db()
    assert model.status == "PENDING" and model.archived_at is None


def test_another_workspaces_logged_model_cannot_be_linked_as_an_input_or_output(
    cast, foreign_run, make_run
):
    from runs.models import RunInput

    model = services.logged_model_create(run=foreign_run, name="m")
    run = make_run()
    for route in ("runs/log-inputs", "runs/outputs"):
        url = f"/mlflow/lab/api/2.0/mlflow/{route}"

        def body(model_id):
            return {"run_id": run.run_id, "models": [{"model_id": model_id}]}

        foreign = _call(cast.contributor, "post", url, body(model.model_id))
        missing = _call(cast.contributor, "post", url, body("m-" + MISSING))
        assert foreign.status_code == 404, route
        _same(foreign, missing, model.model_id, "m-" + MISSING)
    assert not RunInput.objects.exists()


@pytest.mark.parametrize(
    "path",
    [
        "outputs/../../{other}/outputs/x.txt",
        "outputs/%2e%2e/%2e%2e/{other}/outputs/x.txt",
        "outputs/..%2f..%2f{other}/outputs/x.txt",
        "outputs//x.txt",
        "outputs/./x.txt",
        "logs/x.txt",
        "snapshot/train.py",
        "x.txt",
    ],
)
def test_artifact_paths_cannot_leave_the_runs_outputs(cast, make_run, path):
    run, other = make_run(), make_run()
    url = f"/mlflow/lab/api/2.0/mlflow-artifacts/artifacts/runs/{run.run_id}/" + path.format(
        other=other.run_id
    )
    answer = _call(cast.contributor, "put", url, b"payload")
    assert answer.status_code in (400, 404), answer.content
    assert answer.json()["error_code"] in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST")
    assert not RunFile.objects.exists()


def test_listing_and_reading_cannot_climb_out_of_the_run(cast, make_run):
    run, other = make_run(), make_run()
    from io import BytesIO

    from runs import services

    services.run_file_write(run=other, path="outputs/secret.txt", stream=BytesIO(b"s"), size=1)
    listing = _call(
        cast.contributor,
        "get",
        "/mlflow/lab/api/2.0/mlflow-artifacts/artifacts",
        {"path": f"runs/{run.run_id}/../{other.run_id}/outputs"},
    )
    assert listing.status_code == 400 and "secret" not in listing.content.decode()
    read = _call(
        cast.contributor,
        "get",
        f"/mlflow/lab/api/2.0/mlflow-artifacts/artifacts/runs/{run.run_id}/outputs/..%2F..%2F{other.run_id}/outputs/secret.txt",
    )
    assert read.status_code in (400, 404)


def test_a_reader_cannot_upload_or_delete_artifacts(cast, make_run):
    from io import BytesIO

    from runs import services

    run = make_run()
    services.run_file_write(run=run, path="outputs/keep.txt", stream=BytesIO(b"k"), size=1)
    url = f"/mlflow/lab/api/2.0/mlflow-artifacts/artifacts/runs/{run.run_id}/outputs/keep.txt"
    for method in ("put", "delete"):
        answer = _call(cast.reader, method, url, b"overwritten")
        assert answer.status_code == 403 and answer.json()["error_code"] == "PERMISSION_DENIED"
    assert RunFile.objects.get(run=run).size == 1


JUNK = [-1, 1e308, True, ["x"], {"a": 1}, "", "\x00"]


@pytest.mark.parametrize("value", JUNK, ids=repr)
def test_junk_of_any_type_is_a_4xx_in_mlflows_shape(cast, make_run, value):
    run = make_run()
    for route in [
        "experiments/create",
        "experiments/get",
        "experiments/search",
        "experiments/update",
        "experiments/set-experiment-tag",
        "runs/create",
        "runs/update",
        "runs/log-metric",
        "runs/log-parameter",
        "runs/set-tag",
        "runs/delete-tag",
        "runs/log-batch",
        "runs/search",
        "metrics/get-history",
        "logged-models",
        "logged-models/search",
    ]:
        method = "get" if route.endswith(("get", "get-history")) else "post"
        for field in (
            "name",
            "experiment_id",
            "experiment_ids",
            "key",
            "value",
            "status",
            "start_time",
            "timestamp",
            "metrics",
            "params",
            "tags",
            "filter",
            "order_by",
            "max_results",
            "page_token",
            "metric_key",
            "run_view_type",
            "source_run_id",
        ):
            body = {
                "run_id": run.run_id,
                "experiment_id": "0",
                "key": "k",
                "value": "1",
                field: value,
            }
            if method == "get":
                body = {
                    k: v
                    for k, v in body.items()
                    if isinstance(v, str | int | float) and v is not None
                }
            answer = _call(cast.contributor, method, f"/mlflow/lab/api/2.0/mlflow/{route}", body)
            assert answer.status_code < 500, (route, field, value, answer.content[:300])
            # (A NUL in a query string is refused before any door, in plain text.)
            if answer.status_code >= 400 and answer["Content-Type"] == "application/json":
                assert "error_code" in answer.json(), (route, field)


@pytest.mark.parametrize("value", [*JUNK, None, "x" * 70_000, {"\x00": "v"}], ids=repr)
def test_junk_anywhere_in_log_inputs_or_outputs_is_a_4xx_never_a_5xx(cast, make_run, value):
    from runs.models import RunInput

    run = make_run()
    dataset = {"name": "d", "digest": "1", "source_type": "local", "source": "{}"}
    bodies = [{"datasets": value}, {"models": value}, {"datasets": [value]}, {"models": [value]}]
    bodies += [{"datasets": [{"dataset": {**dataset, k: value}}]} for k in dataset]
    bodies += [{"datasets": [{"dataset": {**dataset, k: value}}]} for k in ("schema", "profile")]
    bodies += [
        {"datasets": [{"dataset": dataset, "tags": value}]},
        {"datasets": [{"dataset": dataset, "tags": [{"key": "k", "value": value}]}]},
        {"datasets": [{"dataset": dataset, "tags": [{"key": value, "value": "v"}]}]},
        {"models": [{"model_id": value}]},
        {"models": [{"model_id": "m-1", "step": value}]},
    ]
    for route in ("runs/log-inputs", "runs/outputs"):
        for body in bodies:
            answer = _call(
                cast.contributor,
                "post",
                f"/mlflow/lab/api/2.0/mlflow/{route}",
                {"run_id": run.run_id, **body},
            )
            assert answer.status_code < 500, (route, body, answer.content[:300])
            if answer.status_code >= 400:
                assert "error_code" in answer.json(), (route, body)
    # Whatever was accepted is a well-formed input of this run, and reads back.
    for item in RunInput.objects.all():
        assert item.run_id == run.pk and item.name and item.kind == "dataset"
    url = "/mlflow/lab/api/2.0/mlflow/runs/get"
    assert _call(cast.contributor, "get", url, {"run_id": run.run_id}).status_code == 200
