"""The server's side of the SDK spool and of reaping (issue 8, items 4 and 5): a run keeps
the start and end times its client reports (sent late from the spool), a finished run refuses
heartbeats with a 409 that says why, and a run the reaper presumed dead takes its client's
final status once."""

import time
from datetime import datetime

import pytest

from runs import services
from runs.models import RunStatus, StatusEvent


def _time(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def offline_run(cast):
    """A run created the way `runstudio sync` creates an offline-first run: an hour late."""
    api = cast.contributor.client
    started = time.time() - 3600
    answer = api.post(
        "/api/v1/workspaces/lab/experiments/offline/runs",
        {"run_id": "lab~offline_1_cafe", "started_at": started},
        format="json",
    )
    assert answer.status_code == 201, answer.json()
    return answer.json(), started


def test_a_run_created_late_keeps_its_real_start_and_end(cast, offline_run):
    details, started = offline_run
    assert details["run_id"] == "lab~offline_1_cafe"
    assert abs(_time(details["started_at"]) - started) < 0.01
    ended = started + 600
    answer = cast.contributor.client.post(
        "/api/v1/runs/lab~offline_1_cafe/status",
        {"status": "Completed", "ended_at": ended},
        format="json",
    )
    assert answer.status_code == 200
    assert abs(_time(answer.json()["ended_at"]) - ended) < 0.01


@pytest.mark.parametrize("field", ["ended_at", "started_at"])
@pytest.mark.parametrize(
    "value", ["yesterday", True, [1], "2026-11-30T12:00:00Z", 1e300, 0, 946684799.9]
)
def test_a_time_that_is_not_one_is_a_400_naming_the_field(cast, make_run, field, value):
    api = cast.contributor.client
    if field == "ended_at":
        run = make_run()
        answer = api.post(
            f"/api/v1/runs/{run.run_id}/status",
            {"status": "Completed", field: value},
            format="json",
        )
    else:
        answer = api.post(
            "/api/v1/workspaces/lab/experiments/e/runs", {field: value}, format="json"
        )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["field"] == field and "unix seconds between" in error["message"]
    assert error["message"].startswith(f"{field}: ")


def test_an_end_before_the_start_or_in_the_future_is_clamped(cast, offline_run):
    details, started = offline_run
    api = cast.contributor.client
    answer = api.post(
        "/api/v1/runs/lab~offline_1_cafe/status",
        {"status": "Completed", "ended_at": 978307200},  # 2001, before the run started
        format="json",
    )
    assert abs(_time(answer.json()["ended_at"]) - started) < 0.01
    other = api.post("/api/v1/workspaces/lab/experiments/e/runs", {}, format="json").json()
    future = api.post(
        f"/api/v1/runs/{other['run_id']}/status",
        {"status": "Completed", "ended_at": time.time() + 86400},
        format="json",
    ).json()
    assert _time(future["ended_at"]) <= time.time()


def test_a_heartbeat_for_a_finished_run_is_a_409_that_says_why(cast, make_run):
    run = make_run()
    services.run_set_status(
        run=run,
        status=RunStatus.FAILED,
        error_code="HeartbeatTimeout",
        error_message="No heartbeat since 2026-11-30 12:00:00 UTC; the process died.",
    )
    answer = cast.contributor.client.post(f"/api/v1/runs/{run.run_id}/heartbeat")
    assert answer.status_code == 409
    error = answer.json()["error"]
    assert error["code"] == "run_finished"
    assert "is Failed: No heartbeat since 2026-11-30 12:00:00 UTC" in error["message"]
    running = make_run()
    ok = cast.contributor.client.post(f"/api/v1/runs/{running.run_id}/heartbeat")
    assert ok.status_code == 200


def test_a_run_the_reaper_failed_takes_its_clients_final_status_once(cast, make_run):
    run = make_run()
    services.run_set_status(
        run=run, status=RunStatus.FAILED, error_code="HeartbeatTimeout", error_message="silent"
    )
    api = cast.contributor.client
    answer = api.post(f"/api/v1/runs/{run.run_id}/status", {"status": "Completed"}, format="json")
    assert answer.status_code == 200
    assert answer.json()["status"] == "Completed" and answer.json()["error"] is None
    event = StatusEvent.objects.filter(run=run).latest("id")
    assert (event.from_status, event.to_status) == ("Failed", "Completed")
    assert "after a heartbeat timeout" in event.reason
    # Now it is the client's own final status, and final.
    again = api.post(f"/api/v1/runs/{run.run_id}/status", {"status": "Failed"}, format="json")
    assert again.status_code == 409


def test_a_run_its_script_failed_stays_failed(cast, make_run):
    run = make_run()
    services.run_set_status(
        run=run, status=RunStatus.FAILED, error_code="UserError", error_message="boom"
    )
    answer = cast.contributor.client.post(
        f"/api/v1/runs/{run.run_id}/status", {"status": "Completed"}, format="json"
    )
    assert answer.status_code == 409


def test_a_reaped_run_whose_script_then_fails_keeps_the_scripts_error(cast, make_run):
    run = make_run()
    services.run_set_status(
        run=run, status=RunStatus.FAILED, error_code="HeartbeatTimeout", error_message="silent"
    )
    answer = cast.contributor.client.post(
        f"/api/v1/runs/{run.run_id}/status",
        {"status": "Failed", "error": {"code": "UserError", "message": "ValueError: nan loss"}},
        format="json",
    )
    assert answer.status_code == 200
    assert answer.json()["error"] == {"code": "UserError", "message": "ValueError: nan loss"}
