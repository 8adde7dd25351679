"""The SDK without a server: offline runs, validation, the batch builder, the flusher's
retry rules (against a fake client), configuration and CLI helpers."""

import json
import math
import os
import stat
import subprocess
import sys

import pytest
import requests

from runs.sdk import Run, config, flusher
from runs.sdk.cli import main, render_table
from runs.sdk.client import (
    AuthError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    NotFound,
    PermissionDenied,
    ServerError,
    decode_number,
    dumps,
    error_from_response,
)
from runs.sdk.experiment import tag_params
from runs.sdk.flusher import Flusher, build_batches
from runs.sdk.offline import _OfflineRun
from runs.sdk.values import validate_metric_name


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No stored credentials, folder config or RUNSTUDIO_* variables leak into a test."""
    for name in list(os.environ):
        if name.startswith("RUNSTUDIO_") and name != "RUNSTUDIO_DATA_DIR":
            monkeypatch.delenv(name)
    monkeypatch.setenv("RUNSTUDIO_HOME", str(tmp_path / "home"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)


def test_the_sdk_and_cli_import_no_django():
    code = (
        "import runs.sdk, runs.sdk.cli, runs.sdk.offline, sys; "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'django'], 'django imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- offline runs ------------------------------------------------------------------------


def test_get_context_outside_a_submitted_run_is_an_offline_run():
    run = Run.get_context()
    assert isinstance(run, _OfflineRun)
    assert run.id.startswith("OfflineRun_")
    assert run.get_status() == "Running"
    assert run.parent is None


def test_offline_run_prints_what_it_logs_and_keeps_it(capsys):
    run = Run.get_context()
    run.log("loss", 0.5)
    run.log("loss", 0.25)
    run.log("message", "Hello from run!")
    run.log_list("accuracies", [0.1, 0.2])
    run.log_list("accuracies", [0.3])
    run.log_row("table", x=1, y=2)
    run.log_table("table", {"x": [3, 4], "y": [5, 6]})
    out = capsys.readouterr().out
    assert "Attempted to log scalar metric loss:\n0.5\n" in out
    assert run.get_metrics() == {
        "loss": [0.5, 0.25],
        "message": ["Hello from run!"],
        "accuracies": [0.1, 0.2, 0.3],
        "table": {"x": [1, 3, 4], "y": [2, 5, 6]},
    }
    assert run.get_metrics("loss") == {"loss": [0.5, 0.25]}


def test_offline_run_keeps_tags_and_refuses_a_changed_property():
    run = Run.get_context()
    run.tag("quality", "great run")
    run.tag("worth another look")
    run.add_properties({"author": "azureml-user"})
    run.add_properties({"author": "azureml-user"})  # same value: a no-op
    with pytest.raises(Conflict) as refused:
        run.add_properties({"author": "different-user"})
    assert "author" in str(refused.value) and "different-user" in str(refused.value)
    assert run.get_tags() == {"quality": "great run", "worth another look": None}
    assert run.get_properties() == {"author": "azureml-user"}


def test_offline_child_runs_know_their_parent_and_complete_on_exit():
    parent = Run.get_context()
    with parent.child_run("c") as child:
        child.log("x", 1)
    assert child.get_status() == "Completed"
    assert child.parent is parent
    assert [c.id for c in parent.get_children()] == [child.id]


def test_an_offline_run_left_by_an_exception_is_failed_and_the_exception_goes_on(capsys):
    parent = Run.get_context()
    with pytest.raises(KeyError), parent.child_run("c") as child:
        raise KeyError("lr")
    assert child.get_status() == "Failed"
    assert "KeyError" in capsys.readouterr().out


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "x" * 256, "bad\nname", "tab\there", "del\x7f"])
def test_invalid_metric_names_raise_value_error_at_once(name):
    with pytest.raises(ValueError):
        validate_metric_name(name)
    with pytest.raises(ValueError):
        _OfflineRun().log(name, 1.0)


def test_a_metric_name_keeps_its_kind():
    run = _OfflineRun()
    run.log("m", 1.0)
    with pytest.raises(ValueError, match="scalar"):
        run.log("m", "text")


def test_bools_are_logged_as_scalar_zero_or_one_and_objects_are_refused():
    run = _OfflineRun()
    run.log("flag", True)
    run.log("flag", False)
    assert run.get_metrics("flag") == {"flag": [1, 0]}
    with pytest.raises(TypeError, match="log_list"):
        run.log("obj", [1, 2])


# --- the batch builder ---------------------------------------------------------------------


def _points(name, n, start=0, kind="scalar", step=None):
    return [(name, kind, float(i), step, 1000.0 + i) for i in range(start, start + n)]


def test_batches_are_columnar_per_series_in_logged_order():
    points = _points("a", 2) + [("b", "string", "hi", None, 5.0)] + _points("a", 1, start=2)
    (batch,) = build_batches(points)
    assert batch == [
        {
            "name": "a",
            "kind": "scalar",
            "values": [0.0, 1.0, 2.0],
            "times": [1000.0, 1001.0, 1002.0],
        },
        {"name": "b", "kind": "string", "values": ["hi"], "times": [5.0]},
    ]


def test_steps_are_left_out_when_none_given_and_null_where_missing():
    points = [("a", "scalar", 1.0, 7, 1.0), ("a", "scalar", 2.0, None, 2.0)]
    (batch,) = build_batches(points)
    assert batch[0]["steps"] == [7, None]


def test_batches_split_at_the_point_limit_and_a_series_continues_in_order():
    batches = build_batches(_points("a", 25) + _points("b", 10), max_points=10)
    assert [sum(len(s["values"]) for s in b) for b in batches] == [10, 10, 10, 5]
    a_values = [v for b in batches for s in b if s["name"] == "a" for v in s["values"]]
    assert a_values == [float(i) for i in range(25)]
    assert all(len({s["name"] for s in b}) == len(b) for b in batches)  # one entry per series


def test_batches_split_at_the_series_limit():
    points = [p for i in range(25) for p in _points(f"m{i}", 2)]
    batches = build_batches(points, max_series=10)
    assert [len(b) for b in batches] == [10, 10, 5]


def test_batches_split_before_the_body_size_limit():
    big = "x" * 4000
    points = [("s", "string", big, None, float(i)) for i in range(10)]
    batches = build_batches(points, max_bytes=10_000)
    assert len(batches) == 5
    assert sum(len(b[0]["values"]) for b in batches) == 10


def test_default_limits_match_the_server():
    from runs import limits as server

    assert flusher.MAX_BATCH_POINTS == server.MAX_POINTS_PER_BATCH
    assert flusher.MAX_BATCH_SERIES == server.MAX_SERIES_PER_BATCH
    assert flusher.BATCH_BYTES_BUDGET < server.MAX_BATCH_BYTES


# --- JSON and errors -----------------------------------------------------------------------


def test_non_finite_floats_travel_as_strings_and_come_back():
    body = json.loads(dumps({"values": [1.0, math.nan, math.inf, -math.inf]}))
    assert body == {"values": [1.0, "NaN", "Infinity", "-Infinity"]}
    decoded = [decode_number(v) for v in body["values"]]
    assert math.isnan(decoded[1]) and decoded[2] == math.inf and decoded[3] == -math.inf


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequest),
        (401, AuthError),
        (403, PermissionDenied),
        (404, NotFound),
        (409, Conflict),
        (503, ServerError),
        (429, ServerError),
    ],
)
def test_error_responses_become_typed_exceptions(status, cls):
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(
        {"error": {"code": "c", "message": "what went wrong", "field": "f"}}
    ).encode()
    error = error_from_response(response)
    assert type(error) is cls
    message = str(error)
    if status == 401:  # a refused token also says how to get one
        assert "`runstudio login --url URL --username NAME`" in message
        message = message.split(". Sign in")[0]
    assert (error.status, error.code, error.field, message) == (
        status,
        "c",
        "f",
        "what went wrong",
    )


def test_tag_filters_become_query_parameters():
    assert tag_params("worth another look") == [("tag", "worth another look")]
    assert tag_params({"quality": "fantastic run", "bare": None}) == [
        ("tag", "quality=fantastic run"),
        ("tag", "bare"),
    ]
    assert tag_params(["a", "b"]) == [("tag", "a"), ("tag", "b")]


# --- the flusher against a fake server -----------------------------------------------------


class FakeClient:
    """Answers metric batches from a script of outcomes; records every request."""

    def __init__(self, outcomes=(), always=None):
        self.outcomes = list(outcomes)
        self.always = always
        self.requests = []
        self.url, self.token = "http://fake", None

    def post(self, path, body):
        return self.call("POST", path, data=dumps(body).encode())

    def call(self, method, path, *, data, headers=None):
        body = json.loads(data)
        self.requests.append((path, body))
        outcome = self.outcomes.pop(0) if self.outcomes else self.always
        if outcome is not None:
            raise outcome
        return {"accepted": len(body.get("metrics", [])), "duplicate": False}

    def close(self):
        pass


def test_transient_failures_are_retried_with_the_same_idempotency_key():
    client = FakeClient(
        [ConnectionFailed("refused"), ServerError("busy", status=503), ServerError("x", status=429)]
    )
    f = Flusher(client, "run-1", sleep=lambda s: None)
    f.buffer.extend(_points("loss", 3))
    f.send_pending()
    keys = {body["idempotency_key"] for _, body in client.requests}
    assert len(client.requests) == 4 and len(keys) == 1
    assert client.requests[-1][1]["metrics"][0]["values"] == [0.0, 1.0, 2.0]
    assert f.sent == 3 and f.dropped == 0


def test_batches_go_out_on_two_lanes_each_series_on_one_of_them_in_order(monkeypatch):
    monkeypatch.setattr(flusher, "BATCH_POINTS", 40)  # a batch of 80 points: two requests
    client = FakeClient()
    f = Flusher(client, "run-1", sleep=lambda s: None)
    names = ["loss", "acc", "lr", "grad"]
    f.buffer.extend((name, "scalar", float(i), i, 1.0) for i in range(200) for name in names)
    f.send_pending()

    groups = {frozenset(s["name"] for s in body["metrics"]) for _, body in client.requests}
    assert len(groups) == 2 and frozenset().union(*groups) == set(names)
    assert all(len(group) == 2 for group in groups)  # a new series takes the emptier lane
    assert max(sum(len(s["values"]) for s in b["metrics"]) for _, b in client.requests) == 40
    for name in names:
        values = [
            v
            for _, body in client.requests
            for s in body["metrics"]
            if s["name"] == name
            for v in s["values"]
        ]
        assert values == [float(i) for i in range(200)], name
    assert f.sent == 800 and not f.unsent


def test_a_refused_batch_is_dropped_with_one_warning_and_logging_goes_on(capsys):
    client = FakeClient([Conflict("Run r is Canceled; it takes no more metrics.", status=409)])
    f = Flusher(client, "run-1", sleep=lambda s: None)
    f.buffer.extend(_points("loss", 3))
    f.send_pending()
    f.buffer.extend(_points("loss", 2))
    f.send_pending()
    f.close(timeout=1)
    err = capsys.readouterr().err
    assert err.count("3 metric points were not stored, the server refused them (HTTP 409)") == 1
    assert "run-1" in err and "Canceled" in err
    assert "5 metric points could not be stored" in err
    assert len(client.requests) == 1  # a canceled run is not asked again


def test_a_value_json_cannot_encode_drops_its_batch_with_a_warning(capsys):
    f = Flusher(FakeClient(), "run-1", sleep=lambda s: None)
    f.buffer.append(("row", "row", {"x": object()}, None, 1.0))
    f.send_pending()
    assert "could not be encoded" in capsys.readouterr().err
    assert f.dropped == 1


def test_close_spools_what_an_unreachable_server_never_took_and_says_so(
    capsys, tmp_path, monkeypatch
):
    from runs.sdk import spool

    monkeypatch.setenv("RUNSTUDIO_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setattr(spool, "_down_since", {})
    client = FakeClient(always=ConnectionFailed("cannot reach http://fake (connection refused)"))
    f = Flusher(client, "run-1", sleep=lambda s: None)
    f.buffer.extend(_points("loss", 7))
    f.close(timeout=0.2)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err
    assert "cannot reach http://fake (connection refused); retrying" in err[0]
    assert "saved 7 metric points" in err[1] and "runstudio sync" in err[1]
    [entry] = spool.entries(tmp_path / "spool")
    ops = [json.loads(line) for line in (entry / "ops.jsonl").read_text().splitlines()]
    bodies = [json.loads((entry / op["file"]).read_text()) for op in ops]
    assert [op["op"] for op in ops] == ["metrics"]
    assert bodies[0]["metrics"][0]["values"] == [float(i) for i in range(7)]
    assert not f.buffer and f.dropped == 0


def test_a_long_outage_moves_old_points_to_disk_and_spools_them_all_in_order(
    tmp_path, monkeypatch
):
    import time

    from runs.sdk import flusher as flusher_module
    from runs.sdk import spool

    monkeypatch.setenv("RUNSTUDIO_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setattr(spool, "_down_since", {})
    monkeypatch.setattr(flusher_module, "SPILL_POINTS", 10)
    client = FakeClient(always=ConnectionFailed("cannot reach http://fake (connection refused)"))
    f = Flusher(client, "run-1", sleep=lambda s: time.sleep(0.01))
    f.start()
    f.buffer.extend(_points("loss", 5))
    f.wake.set()
    deadline = time.monotonic() + 10
    while not client.requests and time.monotonic() < deadline:  # the first batch is stuck
        time.sleep(0.01)
    f.buffer.extend(("loss", "scalar", float(i), i, 1.0) for i in range(5, 60))
    while len(f.spilled) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(f.spilled) == 4 and len(f.buffer) < 20  # the rest waits on disk
    f.close(timeout=0.2)

    [entry] = spool.entries(tmp_path / "spool")
    ops = [json.loads(line) for line in (entry / "ops.jsonl").read_text().splitlines()]
    values = [
        v
        for op in ops
        for series in json.loads((entry / op["file"]).read_text())["metrics"]
        for v in series["values"]
    ]
    assert values == [float(i) for i in range(60)]
    assert not list(tmp_path.glob("spool/.staging-*/*.pickle"))


def test_an_idle_run_says_in_one_line_when_its_heartbeat_finds_the_server_gone(
    capsys, monkeypatch
):
    from runs.sdk import spool

    monkeypatch.setattr(spool, "_down_since", {})
    client = FakeClient(always=ConnectionFailed("cannot reach http://fake (connection refused)"))
    f = Flusher(client, "run-1", heartbeat=True)
    import time

    for _ in range(3):
        f._last_heartbeat = time.monotonic() - 10_000  # due
        f._maybe_heartbeat()
    [line] = capsys.readouterr().err.splitlines()
    assert "cannot reach http://fake (connection refused); retrying" in line


def test_a_spool_that_cannot_be_written_is_one_line_saying_what_to_set(
    capsys, tmp_path, monkeypatch
):
    from runs.sdk import spool

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RUNSTUDIO_SPOOL_DIR", str(blocker / "spool"))
    monkeypatch.setattr(spool, "_down_since", {})
    client = FakeClient(always=ConnectionFailed("cannot reach http://fake (connection refused)"))
    f = Flusher(client, "run-1", sleep=lambda s: None)
    f.buffer.extend(_points("loss", 3))
    f.close(timeout=0.1)  # does not raise
    err = capsys.readouterr().err.splitlines()
    assert "RUNSTUDIO_SPOOL_DIR" in err[-1] and "could not be written" in err[-1]


def test_flush_sends_everything_through_the_background_thread():
    client = FakeClient()
    f = Flusher(client, "run-1")
    f.start()
    f.buffer.extend(_points("loss", 5))
    assert f.flush(timeout=5)
    assert f.sent == 5
    f.close(timeout=1)


# --- configuration -------------------------------------------------------------------------


def test_credentials_are_private_and_give_the_default_url(tmp_path):
    path = config.save_token("http://127.0.0.1:9000/", "rs_secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    settings = config.resolve()
    assert (settings.url, settings.token) == ("http://127.0.0.1:9000", "rs_secret")


def test_folder_config_is_found_in_a_parent_and_environment_overrides(tmp_path, monkeypatch):
    config.write_folder_config(tmp_path / "work", url="http://host:1", workspace="lab")
    deep = tmp_path / "work" / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert config.resolve().workspace == "lab"
    monkeypatch.setenv("RUNSTUDIO_WORKSPACE", "other")
    monkeypatch.setenv("RUNSTUDIO_URL", "http://elsewhere:2")
    settings = config.resolve()
    assert (settings.url, settings.workspace) == ("http://elsewhere:2", "other")


def test_no_server_configured_is_a_clear_error():
    with pytest.raises(config.ConfigError, match="runstudio login"):
        config.resolve()


# --- CLI helpers ---------------------------------------------------------------------------


def test_table_output_lists_rows_under_a_header():
    text = render_table([{"run_id": "r1", "status": "Running", "tags": {}}], ["run_id", "status"])
    lines = text.splitlines()
    assert lines[0].split() == ["Run", "Id", "Status"]
    assert lines[2].split() == ["r1", "Running"]


def test_cli_without_a_server_fails_on_stderr_with_status_1(capsys):
    assert main(["workspace", "list"]) == 1
    captured = capsys.readouterr()
    assert "runstudio login" in captured.err and captured.out == ""


def test_cli_usage_errors_exit_2():
    with pytest.raises(SystemExit) as exited:
        main(["run", "show"])
    assert exited.value.code == 2


def test_ints_beyond_64_bits_are_sent_as_the_floats_they_are_stored_as_not_dropped(capsys):
    client = FakeClient()
    f = Flusher(client, "run-1", sleep=lambda s: None)
    logged = [1.5, 2**70, 10**400, -(10**400), 2**63 - 1, 7]
    f.buffer.extend(("x", "scalar", v, i, 1.0) for i, v in enumerate(logged))
    f.buffer.append(("y", "scalar", 0.25, 0, 1.0))
    f.send_pending()

    sent = {s["name"]: s["values"] for _, body in client.requests for s in body["metrics"]}
    assert sent == {
        "x": [1.5, float(2**70), "Infinity", "-Infinity", 2**63 - 1, 7],
        "y": [0.25],
    }
    assert f.sent == 7 and f.dropped == 0
    assert capsys.readouterr().err == ""


def test_an_encoded_batch_spells_non_finite_values_out_and_keeps_finite_ones_as_numbers():
    from runs.sdk.flusher import encode_batch

    metrics = [
        {"name": "loss", "kind": "scalar", "values": [1.5, math.nan, math.inf, -math.inf, 2]},
        {"name": "table", "kind": "row", "values": [{"x": math.nan, "y": 1.0}]},
    ]
    body = json.loads(encode_batch(metrics, "key-1"))
    assert body["idempotency_key"] == "key-1"
    assert body["metrics"][0]["values"] == [1.5, "NaN", "Infinity", "-Infinity", 2]
    assert body["metrics"][1]["values"] == [{"x": "NaN", "y": 1.0}]
