"""A real worker process with run files in a real SeaweedFS bucket: it fetches the snapshot from
the bucket, appends the script's output as parts while it runs, uploads its outputs, and joins
each log into one object when the run ends. Its data directory is its own (no shared disk)."""

import os
import textwrap
import time

import pytest

from runs.models import Run, RunFile, RunFilePart
from runs.sdk import Experiment, ScriptRunConfig, Workspace
from tests.conftest import use_s3_files
from tests.processes import Workers, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_worker_on_the_bucket_streams_the_log_as_parts_and_joins_it_at_the_end(
    sdk_server, settings, seaweedfs, cast, tmp_path
):
    prefix = f"worker/{os.getpid()}-{time.monotonic_ns()}"
    use_s3_files(settings, seaweedfs, prefix)
    settings.RUNSTUDIO_HEARTBEAT_INTERVAL = 1
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(
        textwrap.dedent(
            """
            import time
            for i in range(4):
                print(f"epoch {i}", flush=True)
                time.sleep(1.2)  # the worker appends the output about every second
            with open("outputs/model.txt", "w") as f:
                f.write("weights")
            """
        )
    )
    (tmp_path / "worker-data").mkdir()
    (tmp_path / "logs").mkdir()
    workers = Workers(sdk_server.url, tmp_path / "worker-data", tmp_path / "logs", heartbeat=1)
    exp = Experiment(Workspace(sdk_server.workspace), "jobs")
    run = exp.submit(ScriptRunConfig(source_directory=source, script="train.py"))
    parts_seen = 0
    try:
        workers.start("--queue-name", "local", **seaweedfs.env(f"s3://runstudio-test/{prefix}"))
        deadline = time.monotonic() + 120
        while Run.objects.get(run_id=run.id).status not in ("Completed", "Failed"):
            parts_seen = max(
                parts_seen,
                RunFilePart.objects.filter(
                    file__run__run_id=run.id, file__path="logs/70_driver_log.txt"
                ).count(),
            )
            assert time.monotonic() < deadline, workers.logs()
            time.sleep(0.2)
        # The release note and the compaction come just after the status.
        wait_for(
            lambda: (
                list(
                    RunFilePart.objects.filter(
                        file__run__run_id=run.id, file__path="logs/70_driver_log.txt"
                    ).values_list("start", flat=True)
                )
                == [0]
            ),
            timeout=30,
            what="the driver log joined into one object",
        )
    finally:
        workers.stop()

    record = RunFile.objects.get(run__run_id=run.id, path="logs/70_driver_log.txt")
    log = cast.reader.client.get(f"/api/v1/runs/{run.id}/files/logs/70_driver_log.txt")
    model = cast.reader.client.get(f"/api/v1/runs/{run.id}/files/outputs/model.txt")
    assert Run.objects.get(run_id=run.id).status == "Completed", workers.logs()
    text = b"".join(log.streaming_content).decode()
    assert all(f"epoch {i}" in text for i in range(4))
    assert b"".join(model.streaming_content) == b"weights"
    assert parts_seen >= 2  # while it ran, the log grew by parts
    assert [p.start for p in record.parts.all()] == [0]  # and ends as one object
    assert not any((tmp_path / "worker-data").rglob("*.txt"))  # nothing of the run on its disk
