"""RunDetails, the notebook widget, against a live server: show() returns at once, a
background thread renders status, metrics (table + SVG chart), the driver log tail and the
children's best values, keeps updating while the run runs and stops when it ends; without
ipywidgets it prints plain text."""

import subprocess
import sys
import time
from io import BytesIO

import pytest

from runs.sdk import Experiment, Workspace
from runs.sdk.client import quote_path
from runs.sdk.widgets import DRIVER_LOG, LOG_TAIL_BYTES, RunDetails, lower_is_better, svg_chart

pytestmark = pytest.mark.django_db(transaction=True)

FAST = 0.2  # seconds between updates in these tests (10 s in notebooks)


@pytest.fixture
def exp(sdk_server):
    return Experiment(workspace=Workspace.get(sdk_server.workspace), name="sweep")


@pytest.fixture
def watch():
    """watch(run, **options) → a RunDetails that is stopped (and joined) at teardown, so no
    update thread outlives the live server."""
    made = []

    def make(run, **options):
        details = RunDetails(run, **options)
        made.append(details)
        return details

    yield make
    for details in made:
        details.stop()
        details.wait(timeout=10)


def until(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def append_log(run, text: str) -> None:
    run._client.call(
        "POST",
        f"{run._path}/files/{quote_path(DRIVER_LOG)}",
        params={"append": 1},
        data=text.encode(),
        headers={"Content-Type": "application/octet-stream"},
    )


@pytest.fixture
def parent(exp):
    """A running parent with metrics, a driver log and two finished children."""
    run = exp.start_logging(display_name="sweep-parent")
    for step in range(20):
        run.log("loss", 1.0 / (step + 1))
        run.log("accuracy", step / 20)
    for lr, losses in (("0.1", [0.9, 0.5, 0.42]), ("0.01", [0.8, 0.3, 0.35])):
        child = run.child_run(name=f"lr={lr}")
        for value in losses:
            child.log("loss", value)
        child.complete()
    run.flush()
    run.upload_file(DRIVER_LOG, BytesIO(b"epoch 1\nepoch 2\n"))
    return run


def test_show_returns_at_once_and_renders_status_metrics_log_and_children(parent, watch):
    import ipywidgets  # noqa: F401  (imported up front: the timing is about the run, not imports)

    details = watch(parent, interval=FAST)
    started = time.monotonic()
    details.show()
    elapsed = time.monotonic() - started

    assert elapsed < 0.5, f"show() blocked for {elapsed:.2f} s"
    assert details.is_updating
    until(lambda: details.updates >= 1)
    html = details.widget.value
    assert "sweep-parent" in html and ">Running</span>" in html
    assert ">loss</td>" in html and ">accuracy</td>" in html
    assert html.count("<svg") == 2 and "<polyline" in html  # a chart per scalar metric
    assert "epoch 1\nepoch 2" in html
    # Children with their best values: loss goes down, so its best is the minimum.
    assert "lr=0.1" in html and "lr=0.01" in html and "loss (min)" in html
    assert ">0.42</td>" in html and ">0.3</td>" in html
    assert "/w/lab/runs/" in html  # the studio link

    # While it runs, new log lines and metrics appear without anyone asking.
    append_log(parent, "epoch 3: loss 0.01\n")
    parent.log("loss", 0.01)
    parent.flush()
    until(lambda: "epoch 3: loss 0.01" in details.widget.value)
    assert ">21</td>" in details.widget.value  # loss's count

    parent.complete()

    assert details.wait(timeout=10), "the updates did not stop when the run ended"
    final = details.widget.value
    assert ">Completed</span>" in final and "final" in final
    count = details.updates
    time.sleep(4 * FAST)
    assert details.updates == count and not details.is_updating


def test_without_ipywidgets_it_prints_a_summary_then_status_changes(
    exp, monkeypatch, capsys, watch
):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # `import ipywidgets` fails
    run = exp.start_logging(display_name="plain")
    run.log("loss", 0.5)
    run.flush()
    run.upload_file(DRIVER_LOG, BytesIO(b"hello from the script\n"))

    details = watch(run, interval=FAST).show()

    assert details.widget is None and details.is_updating
    until(lambda: details.updates >= 1)
    run.fail(error_details="diverged", error_code="NaNLoss")
    assert details.wait(timeout=10)
    out = capsys.readouterr().out
    assert f"Watching run {run.id}" in out
    assert f"Run {run.id} (plain) — Running" in out
    assert "loss: 0.5 / 0.5 / 0.5" in out and "| hello from the script" in out
    assert f"{run.id}: Running → Failed" in out
    assert "error: NaNLoss: diverged" in out


def test_the_log_tail_of_a_big_log_reads_only_its_end(exp):
    run = exp.start_logging()
    lines = [f"line {n:06d}" for n in range(30_000)]  # ~360 KB
    run.upload_file(DRIVER_LOG, BytesIO(("\n".join(lines) + "\n").encode()))

    details = RunDetails(run, log_lines=5)
    snapshot = details.refresh()

    assert snapshot.log_lines == lines[-5:]
    assert details._log_offset == len(("\n".join(lines) + "\n").encode())
    assert LOG_TAIL_BYTES < details._log_offset
    run.complete()


def test_a_run_without_a_driver_log_or_metrics_still_renders(exp):
    run = exp.start_logging(display_name="empty")
    details = RunDetails(run)

    snapshot = details.refresh()

    assert not snapshot.has_log and snapshot.metrics == [] and snapshot.children == []
    assert "No metrics logged yet." in details.get_html()
    assert "Driver log" not in details.get_html()
    run.complete()


def test_a_finished_run_renders_once_and_stops(exp, watch):
    run = exp.start_logging()
    run.complete()

    details = watch(run, interval=FAST).show()

    assert details.wait(timeout=10)
    assert details.updates == 1


def test_the_widget_module_imports_no_django():
    code = (
        "import runs.sdk.widgets, sys; "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'django'], 'django imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_svg_chart_skips_non_finite_points_and_escapes_names():
    svg = svg_chart("<loss>", {"x": [0, 1, 2, 3], "y": [1.0, None, float("nan"), 0.5]})

    assert "&lt;loss&gt;" in svg and "<loss>" not in svg
    assert svg.count(",") >= 2 and "<polyline" in svg
    assert "no points yet" in svg_chart("empty", {"x": [], "y": []})


def test_loss_like_metrics_are_lower_is_better():
    assert lower_is_better("val_loss") and lower_is_better("RMSE")
    assert not lower_is_better("accuracy") and not lower_is_better("auc")
