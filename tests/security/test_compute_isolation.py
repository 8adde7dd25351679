"""Compute is per workspace (issue 7, item 2): two workspaces may both have `gpu-a`, and each
one's runs execute only on its own workers; a worker proves with the target's worker key which
queue it may take; the compute page and API of one workspace never show another's run ids,
workers or current runs.

Real `manage.py runstudio_worker` processes on the test database (as in tests/test_execution.py).
The attack these stop: workspace B created a target named like A's, so B's scripts ran on A's
workers (target names were global queue names), and B's compute page showed A's running run.
"""

import hashlib
import json
import zipfile
from io import BytesIO
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django_tasks_db.models import DBTaskResult

from runs import selectors, services, tasks
from runs.models import ComputeTarget, Run, RunStatus, Worker
from tests.processes import ROOT, Workers, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

A, B = "lab", "elsewhere"  # the cast's workspace (owner olivia) and the outsider's (owner oscar)


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def workers(settings, tmp_path):
    files_dir = Path(settings.STORAGES["default"]["OPTIONS"]["location"])
    log_dir = tmp_path / "worker-logs"
    log_dir.mkdir()
    # These scripts never call back to a server.
    pool = Workers("http://127.0.0.1:9", files_dir.parent, log_dir)
    yield pool
    pool.stop()


def submit(client, workspace: str, target: str, code: str = "print('hi')\n") -> str:
    """Submits train.py (with `code`) to the workspace's target over the API; the run id."""
    archive = BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train.py", code)
    response = client.post(
        f"/api/v1/workspaces/{workspace}/experiments/jobs/submit",
        {
            "config": json.dumps({"script": "train.py", "compute_target": target}),
            "snapshot": SimpleUploadedFile("snapshot.zip", archive.getvalue(), "application/zip"),
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    return response.json()["run_id"]


def executed_by(client, run_id: str) -> Worker:
    """The worker whose process ran the script (logs/process_info.json's worker_id)."""
    response = client.get(f"/api/v1/runs/{run_id}/files/logs/process_info.json")
    assert response.status_code == 200
    info = json.loads(b"".join(response.streaming_content))
    return Worker.objects.get(worker_id=info["worker_id"])


def status_of(run_id: str) -> str:
    return Run.objects.get(run_id=run_id).status


@pytest.fixture
def gpu_a(cast):
    """`gpu-a` in both workspaces, each with its own worker key (made through the API)."""
    keys = {}
    for workspace, owner in ((A, cast.owner.client), (B, cast.outsider.client)):
        created = owner.post(
            f"/api/v1/workspaces/{workspace}/compute", {"name": "gpu-a"}, format="json"
        )
        assert created.status_code == 201
        made = owner.post(f"/api/v1/workspaces/{workspace}/compute/gpu-a/worker-key")
        assert made.status_code == 201
        keys[workspace] = made.json()
    return keys


# --- each workspace's runs on its own workers ------------------------------------------------


def test_each_workspaces_gpu_a_run_executes_only_on_its_own_worker(cast, gpu_a, workers):
    run_a = submit(cast.contributor.client, A, "gpu-a")
    run_b = submit(cast.outsider.client, B, "gpu-a")
    assert gpu_a[A]["queue_name"] != gpu_a[B]["queue_name"]

    workers.drain("-w", A, "-c", "gpu-a", key=gpu_a[A]["worker_key"])
    # A's worker drained its queue and left B's run alone, although both targets are `gpu-a`.
    assert status_of(run_a) == RunStatus.COMPLETED, workers.logs()
    assert status_of(run_b) == RunStatus.QUEUED

    workers.drain("-w", B, "-c", "gpu-a", key=gpu_a[B]["worker_key"])
    assert status_of(run_b) == RunStatus.COMPLETED, workers.logs()

    worker_a = executed_by(cast.reader.client, run_a)
    worker_b = executed_by(cast.outsider.client, run_b)
    assert worker_a.pk != worker_b.pk
    assert (worker_a.workspace.name, worker_a.queue_name) == (A, gpu_a[A]["queue_name"])
    assert (worker_b.workspace.name, worker_b.queue_name) == (B, gpu_a[B]["queue_name"])
    for run_id, worker in ((run_a, worker_a), (run_b, worker_b)):
        task = DBTaskResult.objects.get(
            args_kwargs__kwargs__run_pk=Run.objects.get(run_id=run_id).pk
        )
        assert task.worker_ids == [worker.worker_id]


def test_a_run_enqueued_by_hand_on_another_workspaces_queue_never_executes_there(
    cast, gpu_a, workers
):
    run_b = Run.objects.get(run_id=submit(cast.outsider.client, B, "gpu-a"))
    # Someone with database access puts B's run on A's gpu-a queue as well.
    tasks.execute_run.using(queue_name=gpu_a[A]["queue_name"]).enqueue(run_pk=run_b.pk)

    workers.drain("-w", A, "-c", "gpu-a", key=gpu_a[A]["worker_key"])

    stolen = DBTaskResult.objects.get(queue_name=gpu_a[A]["queue_name"])
    assert stolen.return_value == "refused", workers.logs()
    run_b.refresh_from_db()
    assert run_b.status == RunStatus.QUEUED
    assert not run_b.status_events.filter(to_status=RunStatus.PREPARING).exists()
    # Its own workspace's worker still runs it.
    workers.drain("-w", B, "-c", "gpu-a", key=gpu_a[B]["worker_key"])
    assert status_of(run_b.run_id) == RunStatus.COMPLETED, workers.logs()


# --- worker keys --------------------------------------------------------------------------------


def test_the_cli_worker_takes_workspace_target_and_key_and_runs_only_that_targets_runs(
    cast, gpu_a, workers, monkeypatch, capfd
):
    """`runstudio worker -w lab -c gpu-a --key KEY --batch`, the command the key page shows."""
    from runs.sdk.cli import main

    run_a = submit(cast.contributor.client, A, "gpu-a")
    run_b = submit(cast.outsider.client, B, "gpu-a")
    for name, value in workers.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(ROOT)

    assert main(["worker", "-w", A, "-c", "gpu-a", "--key", gpu_a[B]["worker_key"], "--batch"])
    assert "worker key is not compute target 'gpu-a'" in capfd.readouterr().err
    assert main(["worker", "-w", A, "-c", "gpu-a", "--key", gpu_a[A]["worker_key"], "--batch"]) == 0

    assert status_of(run_a) == RunStatus.COMPLETED
    assert status_of(run_b) == RunStatus.QUEUED
    assert executed_by(cast.reader.client, run_a).workspace.name == A


def test_a_worker_with_workspace_as_key_cannot_serve_workspace_bs_target(cast, gpu_a, workers):
    submit(cast.outsider.client, B, "gpu-a")

    said = workers.refused("-w", B, "-c", "gpu-a", key=gpu_a[A]["worker_key"])

    assert "worker key is not compute target 'gpu-a'" in said
    assert "runstudio compute worker-key -w elsewhere -c gpu-a" in said
    assert not Worker.objects.filter(workspace__name=B).exists()
    assert Run.objects.get(workspace__name=B).status == RunStatus.QUEUED


def test_a_wrong_missing_or_rotated_key_is_refused(cast, gpu_a, workers):
    assert "worker key is not" in workers.refused("-w", A, "-c", "gpu-a", key="rsw_guess")
    assert "worker key is not" in workers.refused("-w", A, "-c", "gpu-a")
    old = gpu_a[A]["worker_key"]
    cast.owner.client.post(f"/api/v1/workspaces/{A}/compute/gpu-a/worker-key")
    assert "worker key is not" in workers.refused("-w", A, "-c", "gpu-a", key=old)
    assert not Worker.objects.exists()


def test_replacing_the_key_stops_the_workers_started_with_the_old_one(cast, gpu_a, workers):
    process = workers.start("-w", A, "-c", "gpu-a", key=gpu_a[A]["worker_key"])
    wait_for(lambda: Worker.objects.filter(workspace__name=A).exists(), what="the worker")

    cast.owner.client.post(f"/api/v1/workspaces/{A}/compute/gpu-a/worker-key")

    assert process.wait(timeout=20) == 0
    assert "worker key of compute target 'gpu-a' was replaced" in workers.logs()
    assert Worker.objects.get(workspace__name=A).stopped_at is not None


def test_a_worker_cannot_name_a_queue_itself(cast, gpu_a, workers):
    """The queue is derived from the verified target; a raw queue name (another workspace's
    `t<pk>`, the old global `gpu-a`, or every queue) is refused."""
    for queue in (gpu_a[B]["queue_name"], "gpu-a", "*", f"local,{gpu_a[B]['queue_name']}"):
        said = workers.refused("--queue-name", queue, key=gpu_a[A]["worker_key"])
        assert "is not one of the server's own queues" in said
        assert "runstudio worker -w WORKSPACE -c TARGET --key WORKER_KEY" in said
    assert "pass both -w WORKSPACE and -c TARGET" in workers.refused("-c", "gpu-a")
    said = workers.refused("-w", B, "-c", "gpu-b", key=gpu_a[A]["worker_key"])
    assert "Workspace 'elsewhere' has no compute target named 'gpu-b'" in said
    assert "no worker key yet" in workers.refused(
        "-w", A, "-c", services.compute_target_create(workspace=cast.workspace, name="new").name
    )
    assert not Worker.objects.exists()


# --- what workspace B's compute page and API show -------------------------------------------


def test_workspace_bs_compute_page_and_api_never_show_as_runs_or_workers(cast, gpu_a, workers):
    """A's runs execute on the shared local worker and on A's gpu-a worker; B (with its own
    gpu-a) sees neither run id nor A's worker, only that the shared local worker is busy."""
    sleeper = "import time\ntime.sleep(120)\n"
    on_local = submit(cast.contributor.client, A, "local", sleeper)
    on_gpu = submit(cast.contributor.client, A, "gpu-a", sleeper)
    workers.start("--queue-name", "local")
    workers.start("-w", A, "-c", "gpu-a", key=gpu_a[A]["worker_key"])
    busy = wait_for(
        lambda: (
            list(Worker.objects.filter(current_run__isnull=False))
            if Worker.objects.filter(current_run__isnull=False).count() == 2
            else None
        ),
        what="both of A's runs executing",
    )
    a_worker = next(w for w in busy if w.workspace_id is not None)

    browser = Client()
    browser.force_login(cast.outsider.user)
    seen_by_b = [
        browser.get(f"/w/{B}/compute/").content.decode(),
        browser.get(f"/w/{B}/compute/live/").content.decode(),
        cast.outsider.client.get(f"/api/v1/workspaces/{B}/compute").content.decode(),
        cast.outsider.client.get(f"/api/v1/workspaces/{B}/compute/gpu-a").content.decode(),
        cast.outsider.client.get(f"/api/v1/workspaces/{B}/compute/local").content.decode(),
    ]
    for shown in seen_by_b:
        assert on_local not in shown and on_gpu not in shown
        assert a_worker.worker_id not in shown and f":{a_worker.pid}" not in shown
    assert "busy with another workspace's run" in seen_by_b[1]
    local = json.loads(seen_by_b[4])
    assert [(w["current_run"], w["busy_elsewhere"]) for w in local["workers"]] == [(None, True)]
    assert json.loads(seen_by_b[3])["workers"] == []

    # A itself sees both runs on its workers.
    a_api = cast.reader.client.get(f"/api/v1/workspaces/{A}/compute").json()["results"]
    running = {t["name"]: [w["current_run"] for w in t["workers"]] for t in a_api}
    assert running == {"gpu-a": [on_gpu], "local": [on_local]}

    for run_id in (on_local, on_gpu):
        services.run_cancel(run=Run.objects.get(run_id=run_id))
    wait_for(
        lambda: {status_of(on_local), status_of(on_gpu)} == {RunStatus.CANCELED},
        what="the sleepers canceled",
    )


# --- who may make a worker key ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "expected"),
    [("owner", 201), ("contributor", 403), ("reader", 403), ("outsider", 404), ("anonymous", 401)],
)
def test_only_an_owner_makes_a_worker_key(cast, role, expected):
    services.compute_target_create(workspace=cast.workspace, name="gpu-a")
    client = cast.anonymous if role == "anonymous" else cast.by_role(role).client

    response = client.post(f"/api/v1/workspaces/{A}/compute/gpu-a/worker-key")

    assert response.status_code == expected, response.content
    target = ComputeTarget.objects.get(workspace=cast.workspace, name="gpu-a")
    if expected == 201:
        key = response.json()["worker_key"]
        # Stored as its SHA-256 only; the answer says how to start a worker with it.
        assert target.worker_key_hash == hashlib.sha256(key.encode()).hexdigest()
        assert key not in target.worker_key_prefix + target.worker_key_hash
        assert response.json()["worker_command"] == (
            f"runstudio worker -w lab -c gpu-a --key {key} --server-url http://testserver"
        )
    else:
        assert target.worker_key_hash == "" and "worker_key" not in response.json()


def test_the_local_target_has_no_worker_key(cast):
    response = cast.owner.client.post(f"/api/v1/workspaces/{A}/compute/local/worker-key")

    assert response.status_code == 409
    assert "runstudio serve" in response.json()["error"]["message"]


def test_the_compute_page_shows_a_new_key_once_to_an_owner_only(cast):
    services.compute_target_create(workspace=cast.workspace, name="gpu-a")
    owner, contributor = Client(), Client()
    owner.force_login(cast.owner.user)
    contributor.force_login(cast.contributor.user)

    assert contributor.post(f"/w/{A}/compute/gpu-a/worker-key/").status_code == 403
    page = owner.post(f"/w/{A}/compute/gpu-a/worker-key/")

    assert page.status_code == 200 and page["Cache-Control"] == "no-store"
    html = page.content.decode()
    target = ComputeTarget.objects.get(workspace=cast.workspace, name="gpu-a")
    key = f"{target.worker_key_prefix}{html.split(target.worker_key_prefix, 1)[1][:35]}"
    assert selectors.compute_target_for_worker(workspace=A, name="gpu-a", key=key) == target
    assert f"runstudio worker -w lab -c gpu-a --key {key}" in html
    assert key not in owner.get(f"/w/{A}/compute/").content.decode()  # shown once
