"""Submission without a worker: who may submit and cancel, compute targets, the snapshot
(ignore rules, size limits on both sides), and refused logging into a canceled run."""

import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from runs import limits, selectors, services
from runs.models import ComputeTarget, Run
from runs.sdk import (
    ComputeTarget as SdkComputeTarget,
)
from runs.sdk import (
    Experiment,
    ScriptRunConfig,
    SnapshotTooLarge,
    Workspace,
)
from runs.sdk.submit import IgnoreRules, pack_snapshot, snapshot_files

SUBMIT = "/api/v1/workspaces/lab/experiments/exp/submit"


def _zip(files: dict[str, str]) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return archive.getvalue()


def _submit(client, config: dict, files: dict[str, str] | None = None):
    upload = SimpleUploadedFile("snapshot.zip", _zip(files or {"train.py": "print(1)\n"}))
    return client.post(
        SUBMIT, {"config": json.dumps(config), "snapshot": upload}, format="multipart"
    )


def test_a_contributor_submits_a_script_that_queues_on_its_target(cast):
    response = _submit(
        cast.contributor.client,
        {"script": "train.py", "arguments": ["--lr", 0.01], "compute_target": "local"},
        {"train.py": "print(1)\n", "lib/util.py": "X = 1\n"},
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["compute_target"], body["run_type"]) == (
        "Queued",
        "local",
        "script",
    )
    assert body["properties"]["runstudio.script"] == "train.py"
    assert json.loads(body["properties"]["runstudio.arguments"]) == ["--lr", "0.01"]
    files = cast.reader.client.get(f"/api/v1/runs/{body['run_id']}/files").json()["files"]
    assert {f["path"] for f in files} == {"snapshot/train.py", "snapshot/lib/util.py"}
    from django_tasks_db.models import DBTaskResult

    task = DBTaskResult.objects.get()
    assert task.queue_name == "local" and task.task_path == "runs.tasks.execute_run"


def test_readers_cannot_submit_or_cancel(cast, make_run):
    assert _submit(cast.reader.client, {"script": "train.py"}).status_code == 403
    run = make_run(status="Queued", compute_target="local")

    response = cast.reader.client.post(f"/api/v1/runs/{run.run_id}/cancel")

    assert response.status_code == 403
    run.refresh_from_db()
    assert run.status == "Queued"
    assert Run.objects.count() == 1


def test_submitting_to_an_unknown_target_is_a_400_naming_compute_target(cast):
    response = _submit(cast.contributor.client, {"script": "train.py", "compute_target": "tpu"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "compute_target"
    assert "'tpu'" in error["message"] and "local" in error["message"]
    assert not Run.objects.exists()


def test_a_script_missing_from_the_snapshot_is_refused(cast):
    response = _submit(cast.contributor.client, {"script": "nope.py"})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "script"
    assert not Run.objects.exists()


def test_the_server_refuses_a_snapshot_over_its_limit_before_storing_anything(cast, monkeypatch):
    monkeypatch.setattr(limits, "SNAPSHOT_MAX_BYTES", 1000)

    response = _submit(cast.contributor.client, {"script": "train.py"}, {"train.py": "x" * 2000})

    assert response.status_code == 413
    assert (
        "limit is 0 MB" in response.json()["error"]["message"]
        or "limit" in (response.json()["error"]["message"])
    )
    assert ".runstudioignore" in response.json()["error"]["message"]
    assert not Run.objects.exists()


def test_a_zip_with_a_path_outside_the_tree_is_refused(cast):
    response = _submit(
        cast.contributor.client, {"script": "train.py"}, {"train.py": "", "../evil.py": ""}
    )

    assert response.status_code == 400
    assert not Run.objects.exists()


# --- compute targets ---------------------------------------------------------------------------


def test_every_workspace_has_a_local_target_and_owners_manage_the_others(cast):
    listed = cast.reader.client.get("/api/v1/workspaces/lab/compute").json()["results"]
    assert [t["name"] for t in listed] == ["local"]

    owner = cast.owner.client
    created = owner.post(
        "/api/v1/workspaces/lab/compute", {"name": "gpu-cluster", "capacity": 4}, format="json"
    )
    assert created.status_code == 201 and created.json()["capacity"] == 4
    assert (
        owner.patch(
            "/api/v1/workspaces/lab/compute/gpu-cluster", {"capacity": 2}, format="json"
        ).json()["capacity"]
        == 2
    )
    assert (
        owner.post(
            "/api/v1/workspaces/lab/compute", {"name": "gpu-cluster"}, format="json"
        ).status_code
        == 409
    )
    bad = owner.post("/api/v1/workspaces/lab/compute", {"name": "x", "capacity": 0}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "capacity"
    assert owner.delete("/api/v1/workspaces/lab/compute/local").status_code == 409
    assert owner.delete("/api/v1/workspaces/lab/compute/gpu-cluster").status_code == 204
    assert not ComputeTarget.objects.filter(name="gpu-cluster").exists()


def test_a_target_with_queued_runs_cannot_be_deleted(cast, make_run):
    services.compute_target_create(workspace=cast.workspace, name="busy")
    make_run(status="Queued", compute_target="busy")

    response = cast.owner.client.delete("/api/v1/workspaces/lab/compute/busy")

    assert response.status_code == 409
    assert "queued or running" in response.json()["error"]["message"]


def test_the_compute_overview_lists_workers_and_active_and_queued_runs(cast, make_run):
    services.worker_register(worker_id="host-1-abcd", queue_name="local")
    running = make_run(status="Running", compute_target="local")
    make_run(status="Queued", compute_target="local")
    make_run(status="Completed", compute_target="local")

    (local,) = selectors.compute_target_overview(workspace=cast.workspace)

    assert [w.worker_id for w in local.alive_workers] == ["host-1-abcd"]
    assert [r.run_id for r in local.active_runs] == [running.run_id]
    assert len(local.queued_runs) == 1
    api = cast.reader.client.get("/api/v1/workspaces/lab/compute/local").json()
    assert (api["active_runs"], api["queued_runs"]) == (1, 1)
    assert api["workers"][0]["alive"] is True


# --- the SDK side ------------------------------------------------------------------------------


def test_ignore_rules_follow_gitignore(tmp_path):
    rules = IgnoreRules(["# comment", "*.log", "data/", "/build", "!keep.log", "**/tmp/*.bin"])

    assert rules.ignored("run.log", is_dir=False)
    assert rules.ignored("deep/run.log", is_dir=False)
    assert not rules.ignored("keep.log", is_dir=False)
    assert rules.ignored("data", is_dir=True) and not rules.ignored("data", is_dir=False)
    assert rules.ignored("build", is_dir=True) and not rules.ignored("src/build", is_dir=True)
    assert rules.ignored("a/b/tmp/x.bin", is_dir=False)
    assert rules.ignored(".git", is_dir=True) and rules.ignored("pkg/__pycache__", is_dir=True)
    assert not rules.ignored("train.py", is_dir=False)


def test_the_snapshot_honours_amlignore_and_skips_the_usual_folders(tmp_path):
    (tmp_path / ".amlignore").write_text("outputs/\n*.ckpt\n")
    for name in ["train.py", "outputs/model.bin", "a.ckpt", ".venv/lib.py", "pkg/m.py"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")

    assert [rel for _, rel in snapshot_files(tmp_path)] == [".amlignore", "train.py", "pkg/m.py"]
    with zipfile.ZipFile(pack_snapshot(tmp_path)) as zf:
        assert sorted(zf.namelist()) == [".amlignore", "pkg/m.py", "train.py"]


def test_a_snapshot_over_the_limit_is_refused_before_uploading(sdk_server, tmp_path, monkeypatch):
    monkeypatch.setenv("RUNSTUDIO_SNAPSHOT_MAX_BYTES", "5000")
    (tmp_path / "train.py").write_text("print(1)\n")
    (tmp_path / "data.bin").write_bytes(b"\0" * 20_000)
    exp = Experiment(Workspace(sdk_server.workspace), "exp")

    with pytest.raises(SnapshotTooLarge) as caught:
        exp.submit(ScriptRunConfig(source_directory=tmp_path, script="train.py"))

    message = str(caught.value)
    assert "over the 0.0 MB limit" in message or "limit" in message
    assert "data.bin" in message and ".runstudioignore" in message
    assert "nothing was uploaded" in message
    assert not Run.objects.exists()


def test_compute_targets_come_from_the_workspace_and_may_be_passed_as_objects(sdk_server, tmp_path):
    (tmp_path / "train.py").write_text("print(1)\n")
    ws = Workspace(sdk_server.workspace)
    targets = ws.compute_targets
    assert isinstance(targets["local"], SdkComputeTarget)

    run = Experiment(ws, "exp").submit(
        ScriptRunConfig(
            source_directory=tmp_path, script="train.py", compute_target=targets["local"]
        ),
        tags={"sweep": "1"},
    )

    assert run.get_status() == "Queued"
    assert run.get_details()["target"] == "local"
    assert run.get_tags() == {"sweep": "1"}


def test_a_canceled_interactive_run_refuses_later_logging_loudly(sdk_server, capfd):
    exp = Experiment(Workspace(sdk_server.workspace), "exp")
    run = exp.start_logging()
    run.log("loss", 1.0)
    run.cancel()
    assert run.get_status() == "Canceled"

    # Another handle on the same run (e.g. the training loop's) keeps logging.
    again = Workspace(sdk_server.workspace).get_run(run.id)
    for i in range(3):
        again.log("loss", float(i))
    again.flush(timeout=10)

    err = capfd.readouterr().err
    assert "Canceled" in err and "takes no more metrics" in err
    assert err.count("takes no more metrics") == 1  # warned once, not per point
    assert again.get_metrics()["loss"] == [1.0]


def test_a_submit_to_a_target_no_worker_serves_says_so_in_one_line(sdk_server, tmp_path, capfd):
    from runs import services

    (tmp_path / "train.py").write_text("print(1)\n")
    exp = Experiment(Workspace(sdk_server.workspace), "exp")

    exp.submit(ScriptRunConfig(source_directory=tmp_path, script="train.py"))
    said = capfd.readouterr().err
    assert "no worker serves compute target 'local' now; the run waits Queued" in said
    assert "--local-workers 0" in said

    services.worker_register(worker_id="w-1", queue_name="local")
    exp.submit(ScriptRunConfig(source_directory=tmp_path, script="train.py"))
    assert "no worker serves" not in capfd.readouterr().err
