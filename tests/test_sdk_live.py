"""The SDK against a live server: the reference document's samples as written (with
``from runs.sdk import ...``), metrics round trips, scripts that exit or die, and the
flusher's resilience behind a proxy that refuses connections and drops responses."""

import math
import socket
import subprocess
import sys
import textwrap
import threading
import time
from urllib.parse import urlsplit

import pytest

from runs.sdk import Conflict, Experiment, NotFound, Run, Workspace
from runs.sdk import flusher as sdk_flusher
from runs.sdk.client import Client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ws(sdk_server):
    return Workspace.get(sdk_server.workspace)


@pytest.fixture
def exp(ws):
    return Experiment(workspace=ws, name="explore-runs")


def _history(client: Client, run_id: str, name: str) -> dict:
    """Every point of a series, following the history pages."""
    steps, values, after = [], [], -1
    while True:
        page = client.get(
            f"/runs/{run_id}/metrics/history",
            params={"name": name, "after_seq": after, "limit": 100_000},
        )
        steps += page["points"]["step"]
        values += page["points"]["value"]
        if page["next_after_seq"] is None:
            return {"steps": steps, "values": values}
        after = page["next_after_seq"]


# --- the reference document, sample by sample ----------------------------------------------


def test_start_logging_log_status_details_and_complete(exp, capsys):
    notebook_run = exp.start_logging()
    notebook_run.log(name="message", value="Hello from run!")
    print(notebook_run.get_status())
    print(notebook_run.get_details())
    notebook_run.complete()
    print(notebook_run.get_status())

    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Running"
    assert f"'runId': '{notebook_run.id}'" in out[1] and "'startTimeUtc'" in out[1]
    assert out[2] == "Completed"
    assert notebook_run.get_metrics() == {"message": ["Hello from run!"]}


def test_with_block_completes_the_run(exp, capsys):
    with exp.start_logging() as notebook_run:
        notebook_run.log(name="message", value="Hello from run!")
        print(notebook_run.get_status())

    print(notebook_run.get_status())
    assert capsys.readouterr().out.splitlines() == ["Running", "Completed"]


def test_with_block_fails_the_run_with_the_exception_and_reraises(exp):
    with pytest.raises(ZeroDivisionError), exp.start_logging() as run:
        run.log("x", 1)
        1 / 0  # noqa: B018
    details = run.get_details()
    assert details["status"] == "Failed"
    assert details["error"]["code"] == "UserError"
    assert details["error"]["message"].startswith("ZeroDivisionError: division by zero")


def test_properties_tags_and_queries_as_in_the_reference(exp, capsys):
    local_run = exp.start_logging()
    local_run.add_properties({"author": "azureml-user"})
    print(local_run.get_properties())

    try:
        local_run.add_properties({"author": "different-user"})
    except Exception as e:
        print(e)

    local_run.tag("quality", "great run")
    print(local_run.get_tags())

    local_run.tag("quality", "fantastic run")
    print(local_run.get_tags())

    local_run.tag("worth another look")
    print(local_run.get_tags())

    other = exp.start_logging()
    other.add_properties({"author": "azureml-user"})
    other.tag("quality", "great run")

    by_tag_value = list(
        exp.get_runs(properties={"author": "azureml-user"}, tags={"quality": "fantastic run"})
    )
    by_bare_tag = list(
        exp.get_runs(properties={"author": "azureml-user"}, tags="worth another look")
    )

    out = capsys.readouterr().out.splitlines()
    assert out[0] == "{'author': 'azureml-user'}"
    assert "author" in out[1] and "azureml-user" in out[1] and "different-user" in out[1]
    assert out[2:] == [
        "{'quality': 'great run'}",
        "{'quality': 'fantastic run'}",
        "{'quality': 'fantastic run', 'worth another look': None}",
    ]
    assert [r.id for r in by_tag_value] == [local_run.id]
    assert [r.id for r in by_bare_tag] == [local_run.id]
    with pytest.raises(Conflict) as refused:
        local_run.add_properties({"author": "different-user"})
    assert refused.value.status == 409
    assert local_run.get_properties() == {"author": "azureml-user"}
    local_run.remove_tag("quality")
    assert local_run.get_tags() == {"worth another look": None}


def test_child_runs_as_in_the_reference(exp):
    with exp.start_logging() as parent_run:
        for c, count in enumerate(range(5)):  # noqa: B007 - the reference's own loop
            with parent_run.child_run() as child:
                child.log(name="Hello from child run", value=c)

    children = list(parent_run.get_children())
    assert len(children) == 5
    assert {c.get_status() for c in children} == {"Completed"}
    values = sorted(c.get_metrics()["Hello from child run"][0] for c in children)
    assert values == [0, 1, 2, 3, 4]
    assert children[0].parent.id == parent_run.id
    assert parent_run.parent is None
    assert parent_run.get_status() == "Completed"


def test_create_children_in_one_call_and_query_the_tree(exp):
    parent_run = exp.start_logging()
    children = parent_run.create_children(count=3)
    tagged = parent_run.create_children(tag_key="fruit", tag_values=["Apple", "Banana"])
    grandchild = children[0].child_run("grandchild")
    grandchild.complete()

    assert [c.get_status() for c in children] == ["NotStarted"] * 3
    assert [c.get_tags() for c in tagged] == [{"fruit": "Apple"}, {"fruit": "Banana"}]
    direct = list(parent_run.get_children())
    everything = list(parent_run.get_children(recursive=True))
    assert len(direct) == 5
    assert len(everything) == 6 and grandchild.id in {r.id for r in everything}
    assert [r.id for r in parent_run.get_children(tags={"fruit": "Banana"})] == [tagged[1].id]

    def root_run(self: Run) -> Run:
        if self.parent is None:
            return self
        return root_run(self.parent)

    again = Run(exp, grandchild.id)
    assert root_run(again).id == parent_run.id
    root_run(again).log("MyMetric", f"Data from child run {again.id}")
    assert parent_run.get_metrics("MyMetric") == {"MyMetric": [f"Data from child run {again.id}"]}
    parent_run.complete()


def test_a_started_child_is_heartbeated_so_the_reaper_watches_it(exp):
    parent = exp.start_logging()
    [child] = parent.create_children(count=1)
    child.start()
    details = child.get_details()
    assert details["status"] == "Running"
    assert details["lastHeartbeatUtc"] > details["startTimeUtc"]  # the reaper's rule


def test_display_name_description_and_portal_url(exp):
    run = exp.start_logging(display_name="first")
    assert run.display_name == "first"
    run.display_name = "renamed"
    run.description = "A **markdown** description"
    fresh = Run(exp, run.id)
    assert (fresh.display_name, fresh.description) == ("renamed", "A **markdown** description")
    assert run.id in run.get_portal_url()
    assert run.get_details()["displayName"] == "renamed"
    assert f"Id: {run.id}" in repr(run) and "Status: Running" in repr(run)
    run.complete()


def test_cancel_is_final_and_a_late_complete_warns_instead_of_reviving(exp, capsys):
    run = exp.start_logging()
    run.cancel()
    assert run.get_status() == "Canceled"
    run.complete()
    assert run.get_status() == "Canceled"
    [line] = capsys.readouterr().err.splitlines()  # one warning, nothing spooled
    assert "Canceled" in line and "spool" not in line


def test_fail_records_the_error(exp):
    run = exp.start_logging()
    run.fail(error_details="the data was wrong", error_code="BadData")
    details = run.get_details()
    assert details["status"] == "Failed"
    assert details["error"] == {"code": "BadData", "message": "the data was wrong"}


def test_unknown_run_is_not_found(exp):
    with pytest.raises(NotFound):
        Run(exp, "no-such-run")


def test_workspace_from_config_and_experiments(sdk_server, ws, exp, monkeypatch, tmp_path):
    ws.write_config()
    monkeypatch.delenv("RUNSTUDIO_WORKSPACE")
    (tmp_path / "work" / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "work" / "sub")
    assert Workspace.from_config().name == sdk_server.workspace
    exp.start_logging().complete()
    assert "explore-runs" in ws.experiments


def test_a_live_run_sends_heartbeats(exp, monkeypatch):
    monkeypatch.setattr(sdk_flusher, "HEARTBEAT_INTERVAL", 0.2)
    run = exp.start_logging()
    first = run.get_details()["lastHeartbeatUtc"]
    deadline = time.monotonic() + 10
    while run.get_details()["lastHeartbeatUtc"] == first:
        assert time.monotonic() < deadline, "no heartbeat arrived"
        time.sleep(0.2)
    run.complete()


# --- metrics ---------------------------------------------------------------------------------


def test_metrics_round_trip_in_order_with_nan_and_infinities(exp):
    run = exp.start_logging()
    for i in range(1000):
        run.log("loss", 1.0 / (i + 1), step=i * 10)
    run.log("odd", math.nan)
    run.log("odd", math.inf)
    run.log("odd", -math.inf)
    run.log("odd", 2.5)
    run.log("flag", True)
    run.log("message", "NaN")  # a string that looks like a number stays a string
    run.log_list("accuracies", [0.1, 0.2])
    run.log_list("accuracies", [0.3])
    run.log_row("table", x=1, y=2)
    run.log_table("table", {"x": [3, 4], "y": [5, 6]})
    metrics = run.get_metrics()

    assert metrics["loss"] == [1.0 / (i + 1) for i in range(1000)]
    odd = metrics["odd"]
    assert math.isnan(odd[0]) and odd[1:] == [math.inf, -math.inf, 2.5]
    assert metrics["flag"] == [1]
    assert metrics["message"] == ["NaN"]
    assert metrics["accuracies"] == [0.1, 0.2, 0.3]
    assert metrics["table"] == {"x": [1, 3, 4], "y": [2, 5, 6]}
    history = _history(
        Client(run.experiment.workspace.url, exp.workspace._client.token), run.id, "loss"
    )
    assert history["steps"] == [i * 10 for i in range(1000)]
    run.complete()


def test_steps_default_to_the_sequence_where_none_is_given(exp):
    run = exp.start_logging()
    run.log("m", 1.0)
    run.log("m", 2.0, step=100)
    run.log("m", 3.0)
    run.flush()
    history = _history(exp.workspace._client, run.id, "m")
    assert history == {"steps": [0, 100, 2], "values": [1.0, 2.0, 3.0]}
    run.complete()


def test_large_logs_split_into_batches_and_arrive_complete(exp):
    run = exp.start_logging()
    for i in range(150_000):
        run.log("big", float(i))
    run.complete()
    history = _history(exp.workspace._client, run.id, "big")
    assert history["values"] == [float(i) for i in range(150_000)]


def test_many_series_sent_on_parallel_lanes_arrive_complete_and_in_order(exp, monkeypatch):
    # Small batches: dozens of requests, two at a time, for the server to store concurrently.
    monkeypatch.setattr(sdk_flusher, "BATCH_POINTS", 2_000)
    run = exp.start_logging()
    names = [f"m{k}" for k in range(5)]
    for i in range(12_000):
        for k, name in enumerate(names):
            run.log(name, i + k / 10, step=2 * i)
    run.complete()
    client = exp.workspace._client
    for k, name in enumerate(names):
        history = _history(client, run.id, name)
        assert history["values"] == [i + k / 10 for i in range(12_000)], name
        assert history["steps"] == [2 * i for i in range(12_000)], name


def test_images_and_files(exp, tmp_path):
    run = exp.start_logging()
    image = tmp_path / "sample.png"
    image.write_bytes(b"\x89PNG fake image")
    run.log_image("sample", path=str(image))

    class Figure:
        def savefig(self, stream, format):
            stream.write(b"\x89PNG plot")

    run.log_image("sample", plot=Figure())
    folder = tmp_path / "outdir"
    (folder / "nested").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "nested" / "b.txt").write_text("b")
    run.upload_file("outputs/model.bin", str(image))
    run.upload_folder("outputs/dir", str(folder))

    assert run.get_metrics("sample") == {
        "sample": ["outputs/images/sample/0_sample.png", "outputs/images/sample/1_plot.png"]
    }
    names = run.get_file_names()
    assert {
        "outputs/images/sample/0_sample.png",
        "outputs/model.bin",
        "outputs/dir/a.txt",
        "outputs/dir/nested/b.txt",
    } <= set(names)
    local = run.download_file("outputs/model.bin", str(tmp_path / "model.bin"))
    assert open(local, "rb").read() == b"\x89PNG fake image"
    written = run.download_files(prefix="outputs/dir", output_directory=str(tmp_path / "dl"))
    assert sorted(written) == sorted(
        [str(tmp_path / "dl/outputs/dir/a.txt"), str(tmp_path / "dl/outputs/dir/nested/b.txt")]
    )
    stripped = run.download_files(
        prefix="outputs/dir", output_directory=str(tmp_path / "dl2"), append_prefix=False
    )
    assert str(tmp_path / "dl2/nested/b.txt") in stripped
    run.complete()


def test_logging_into_a_canceled_run_warns_once_and_never_raises(exp, capsys):
    run = exp.start_logging()
    Client(exp.workspace.url, exp.workspace._client.token).post(
        f"/runs/{run.id}/status", {"status": "Canceled"}
    )
    for i in range(10):
        run.log("after_cancel", float(i))
    run.flush()
    run.log("after_cancel", 99.0)
    run.flush()
    run.complete()
    err = capsys.readouterr().err
    assert err.count("the server refused") == 1 and run.id in err and "Canceled" in err
    assert "11 metric points could not be stored" in err
    assert run.get_status() == "Canceled"


# --- scripts: exit hooks ----------------------------------------------------------------------


def _script(tmp_path, body: str, env: dict, extra_env: dict | None = None):
    path = tmp_path / "train.py"
    path.write_text(textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, str(path)],
        env={**env, **(extra_env or {}), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


SCRIPT_HEAD = """
    from runs.sdk import Workspace, Experiment, Run
    ws = Workspace.get("lab")
    exp = Experiment(workspace=ws, name="scripts")
    run = exp.start_logging()
    print(run.id, flush=True)
    for i in range(1000):
        run.log("loss", 1.0 / (i + 1))
"""


def test_a_script_that_ends_normally_leaves_its_run_completed(sdk_server, tmp_path, ws):
    done = _script(tmp_path, SCRIPT_HEAD, sdk_server.env)
    assert done.returncode == 0, done.stderr
    run = ws.get_run(done.stdout.split()[0])
    assert run.get_status() == "Completed"
    assert len(run.get_metrics()["loss"]) == 1000


def test_a_script_that_dies_leaves_its_run_failed_with_the_exception(sdk_server, tmp_path, ws):
    done = _script(
        tmp_path, SCRIPT_HEAD + '    raise RuntimeError("diverged at step 3")\n', sdk_server.env
    )
    assert done.returncode == 1
    assert "RuntimeError: diverged at step 3" in done.stderr  # the previous excepthook still ran
    run = ws.get_run(done.stdout.split()[0])
    details = run.get_details()
    assert details["status"] == "Failed"
    assert details["error"] == {"code": "UserError", "message": "RuntimeError: diverged at step 3"}
    assert len(run.get_metrics()["loss"]) == 1000


def test_get_context_in_a_submitted_run_logs_to_it_and_leaves_its_status(sdk_server, tmp_path, exp):
    submitted = exp.start_logging()
    body = """
        from runs.sdk import Run
        run = Run.get_context()
        assert Run.get_context() is run
        for i in range(500):
            run.log("acc", i / 500)
        print(run.id, run.parent)
    """
    done = _script(tmp_path, body, sdk_server.env, {"RUNSTUDIO_RUN_ID": submitted.id})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [submitted.id, "None"]
    assert submitted.get_status() == "Running"  # the worker, not the script, finishes it
    assert len(submitted.get_metrics()["acc"]) == 500
    submitted.complete()


def test_a_script_without_a_server_run_logs_offline(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", "from runs.sdk import Run; Run.get_context().log('loss', 0.5)"],
        env={"PATH": "/usr/bin:/bin", "RUNSTUDIO_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Attempted to log scalar metric loss:\n0.5\n"


# --- resilience: a proxy that refuses connections and drops responses ---------------------------


class FlakyProxy:
    """A TCP proxy on 127.0.0.1 in front of the live server.

    mode "forward" passes bytes both ways; "refuse" closes every connection (new ones at
    accept, open ones before forwarding anything); "drop_response" forwards the request and
    then closes the client's socket as soon as the server starts answering, so the server
    did the work but the client never hears of it.
    """

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self.target = (parts.hostname, parts.port)
        self.mode = "forward"
        self.refused = 0
        self.dropped_responses = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._server.close()

    def _count(self, attr: str) -> None:
        with self._lock:
            setattr(self, attr, getattr(self, attr) + 1)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            if self.mode == "refuse":
                self._count("refused")
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            client.close()
            return

        def close_both() -> None:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

        def client_to_server() -> None:
            try:
                while data := client.recv(65536):
                    if self.mode == "refuse":
                        self._count("refused")
                        break
                    upstream.sendall(data)
            except OSError:
                pass
            close_both()

        threading.Thread(target=client_to_server, daemon=True).start()
        try:
            while data := upstream.recv(65536):
                if self.mode != "forward":
                    self._count("dropped_responses")
                    break
                client.sendall(data)
        except OSError:
            pass
        close_both()


def test_every_point_arrives_exactly_once_in_order_through_refusals_and_lost_responses(
    sdk_server, monkeypatch
):
    monkeypatch.setattr(sdk_flusher, "BACKOFF_MAX", 0.8)  # keep the test short
    proxy = FlakyProxy(sdk_server.url)
    try:
        ws = Workspace.get(sdk_server.workspace, url=proxy.url, token=sdk_server.token)
        run = Experiment(ws, "resilience").start_logging()
        names = ("loss", "accuracy", "lr")
        n = 20_000
        phases = ["forward", "refuse", "forward", "drop_response", "forward", "refuse"]
        per_phase = n // len(phases) + 1
        i = 0
        for mode in phases:
            proxy.mode = mode
            for _ in range(per_phase):
                if i == n:
                    break
                for name in names:
                    run.log(name, float(i), step=i)
                i += 1
            run._wake.set()
            time.sleep(1.5)  # let the flusher try (and fail) in this mode
        proxy.mode = "forward"
        run.complete()
        assert run.get_status() == "Completed"
    finally:
        proxy.close()

    assert proxy.refused > 0 and proxy.dropped_responses > 0
    direct = Client(sdk_server.url, sdk_server.token)
    for name in names:
        history = _history(direct, run.id, name)
        assert history["values"] == [float(k) for k in range(n)], name
        assert history["steps"] == list(range(n)), name


def test_tags_properties_and_files_set_while_the_server_is_away_arrive_when_it_is_back(
    sdk_server, monkeypatch, tmp_path, capsys
):
    from runs.sdk import spool

    monkeypatch.setattr(sdk_flusher, "BACKOFF_MAX", 0.5)
    monkeypatch.setattr(spool, "_down_since", {})
    proxy = FlakyProxy(sdk_server.url)
    try:
        ws = Workspace.get(sdk_server.workspace, url=proxy.url, token=sdk_server.token)
        run = Experiment(ws, "away").start_logging()
        proxy.mode = "refuse"
        run.log("loss", 1.0)
        run.tag("phase", "away")  # queued, not raised
        run.add_properties({"seed": "7"})
        note = tmp_path / "note.txt"
        note.write_text("first")
        assert run.upload_file("outputs/note.txt", note) is None  # copied aside
        note.write_text("changed afterwards")  # the upload keeps what it was given
        run.log("loss", 2.0)
        proxy.mode = "forward"
        run.complete()
    finally:
        proxy.close()
    direct = Run.get(Workspace.get(sdk_server.workspace), run.id)
    assert direct.get_status() == "Completed"
    assert direct.get_tags() == {"phase": "away"}
    assert direct.get_properties() == {"seed": "7"}
    assert direct.get_metrics() == {"loss": [1.0, 2.0]}
    direct.download_file("outputs/note.txt", tmp_path / "back.txt")
    assert (tmp_path / "back.txt").read_text() == "first"
    err = capsys.readouterr().err.splitlines()
    # down, (waiting at complete(), if it came first,) back again: nothing else
    assert len(err) <= 3 and "cannot reach" in err[0] and "again" in err[-1], err
    assert not list((tmp_path.parent / "home").glob("spool/*"))  # nothing was spooled
