"""Attacks on what issue 11 added (run files in a bucket, workers with no shared disk, the
chart pyramid, run lists at scale), against a real SeaweedFS (tests/seaweed.py), real workers
in real bubblewrap and the real API. Attempts that found nothing stay here: they guard the door.

The first attack is the one that found a hole: a submitted script shares the worker host's
network (the sandbox keeps it so the script reaches the studio), and SeaweedFS serves far more
than its S3 gateway on that network. Its filer answered `GET /buckets/<bucket>/<key>` with any
run's file, listed the bucket and took PUT and DELETE, all without a key, while the gateway
itself refused anonymous requests. tests/seaweed.py now starts SeaweedFS as a team must run
it (README, "A team on several machines"): a security.toml whose JWT keys make the filer and
volume servers refuse requests that are not signed by the gateway.
"""

import json
import os
import time
from pathlib import Path

import pytest

from runs import sandbox, services
from runs.models import Run
from runs.sdk import Experiment, ScriptRunConfig, Workspace
from runs.storage import storage_name
from tests.conftest import use_s3_files
from tests.processes import Workers, wait_for
from tests.seaweed import weed_binary

pytestmark = pytest.mark.django_db(transaction=True)

BUCKET = "runstudio-test"


def seaweed_ports(seaweedfs) -> dict[str, int]:
    """The ports `weed server` was started with: s3, master, volume, filer."""
    ports = {}
    for arg in seaweedfs.process.args:
        name, _, value = arg.lstrip("-").partition("=")
        if name.endswith(".port") and value.isdigit():
            ports[name.removesuffix(".port")] = int(value)
    return ports


BUCKET_ATTACK = r"""
import json, os, sys, urllib.request, urllib.error
t = json.loads(open("targets.json").read())

def http(method, url, body=None, headers=None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(1 << 20)
    except urllib.error.HTTPError as e:
        return e.code, e.read(4096)

def probe(name, method, url, body=None, headers=None):
    try:
        status, data = http(method, url, body, headers)
    except BaseException as e:
        print(f"PROBE {name}: unreachable ({type(e).__name__})", flush=True)
        return
    print(f"PROBE {name}: {status} {data[:300]!r}", flush=True)

s3, filer = t["s3"], t["filer"]
key = t["victim_key"]
# The gateway, with no key and with a made-up one.
probe("s3-anonymous-get", "GET", f"{s3}/{t['bucket']}/{key}")
probe("s3-anonymous-list", "GET", f"{s3}/{t['bucket']}?list-type=2")
probe("s3-made-up-key", "GET", f"{s3}/{t['bucket']}/{key}", headers={
    "Authorization": "AWS4-HMAC-SHA256 Credential=runstudio-test/20260101/us-east-1/s3/"
    "aws4_request, SignedHeaders=host, Signature=" + "0" * 64})
# The filer: SeaweedFS keeps every bucket under /buckets/<name>/.
probe("filer-get", "GET", f"{filer}/buckets/{t['bucket']}/{key}")
probe("filer-list", "GET", f"{filer}/buckets/{t['bucket']}/{t['victim_dir']}/",
      headers={"Accept": "application/json"})
probe("filer-metadata", "GET", f"{filer}/buckets/{t['bucket']}/{key}?metadata=true",
      headers={"Accept": "application/json"})
probe("filer-appends", "GET", f"{filer}/buckets/{t['bucket']}/{t['victim_appends']}/",
      headers={"Accept": "application/json"})
probe("filer-put", "PUT", f"{filer}/buckets/{t['bucket']}/{t['planted_key']}", body=b"planted")
probe("filer-delete", "DELETE", f"{filer}/buckets/{t['bucket']}/{key}")
# The volume server holds the bytes by file id; the file ids come only from the filer.
probe("volume-status", "GET", f"{t['volume']}/status")
probe("master-status", "GET", f"{t['master']}/dir/status")
# gRPC (each port + 10000), spoken by SeaweedFS's own shell (a script can bring the binary).
import subprocess
try:
    shell = subprocess.run(
        [t["weed"], "shell", f"-master={t['master'][7:]}", f"-filer={t['filer'][7:]}"],
        input=f"fs.ls -l /buckets/{t['bucket']}/{t['victim_dir']}\n"
        f"fs.rm /buckets/{t['bucket']}/{key}\nexit\n",
        capture_output=True, text=True, timeout=15,
    )
    said = shell.stdout + shell.stderr
    listed = any(l.startswith("-") and l.endswith("secret.txt") for l in said.splitlines())
    verdict = "LISTED" if listed else "no"
    print(f"PROBE grpc-shell: {verdict} {said[-200:]!r}", flush=True)
except subprocess.TimeoutExpired:
    print("PROBE grpc-shell: no (no answer without the client certificate)", flush=True)
except OSError as e:
    print(f"PROBE grpc-shell: no ({type(e).__name__})", flush=True)
leaked_env = sorted(k for k in os.environ if k.startswith("AWS_"))
print("ENV " + json.dumps(leaked_env), flush=True)
# The worker holds the bucket's keys in its environment: any process's environ that shows one.
found = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                found += [v for v in f.read().split(b"\0") if v.startswith(b"AWS_")]
        except OSError:
            pass
print("PROC " + json.dumps(len(found)), flush=True)
"""


@pytest.fixture
def bucket_worker(sdk_server, settings, seaweedfs, tmp_path):
    """A sandboxed worker whose run files are in the bucket, with its own data directory."""
    status = sandbox.sandbox_status()
    assert status.isolated, f"this test needs a working bubblewrap: {status.reason}"
    prefix = f"scale-attack/{os.getpid()}-{time.monotonic_ns()}"
    use_s3_files(settings, seaweedfs, prefix)
    (tmp_path / "worker-data").mkdir()
    (tmp_path / "worker-logs").mkdir()
    workers = Workers(sdk_server.url, tmp_path / "worker-data", tmp_path / "worker-logs")
    workers.start("--queue-name", "local", **seaweedfs.env(f"s3://{BUCKET}/{prefix}"))
    yield prefix, workers
    workers.stop()


def test_a_sandboxed_script_cannot_read_list_write_or_delete_run_files_through_seaweedfs(
    sdk_server, bucket_worker, seaweedfs, make_run, cast, tmp_path
):
    prefix, workers = bucket_worker
    victim = make_run(experiment="private")
    services.run_file_write(run=victim, path="outputs/secret.txt", stream=[b"victim secret"])
    services.run_file_write(run=victim, path="logs/out.txt", stream=[b"victim log"], append=True)
    victim_key = f"{prefix}/{storage_name(victim, 'outputs/secret.txt')}"
    ports = seaweed_ports(seaweedfs)
    targets = {
        "bucket": BUCKET,
        "s3": seaweedfs.endpoint_url,
        "filer": f"http://127.0.0.1:{ports['filer']}",
        "volume": f"http://127.0.0.1:{ports['volume']}",
        "master": f"http://127.0.0.1:{ports['master']}",
        "victim_key": victim_key,
        "victim_dir": victim_key.rsplit("/", 1)[0],
        "victim_appends": f"{prefix}/.appends/{victim.run_id}",
        "planted_key": f"{prefix}/{storage_name(victim, 'outputs/planted.txt')}",
        "weed": weed_binary(),
    }
    source = tmp_path / "src"
    source.mkdir()
    (source / "attack.py").write_text(BUCKET_ATTACK)
    (source / "targets.json").write_text(json.dumps(targets))
    exp = Experiment(Workspace(sdk_server.workspace), "jobs")

    submitted = exp.submit(ScriptRunConfig(source_directory=source, script="attack.py"))
    run = wait_for(
        lambda: (r := Run.objects.get(run_id=submitted.id)).is_terminal and r,
        what="the attack run",
        timeout=120,
    )
    log = b"".join(
        cast.owner.client.get(
            f"/api/v1/runs/{run.run_id}/files/logs/70_driver_log.txt"
        ).streaming_content
    ).decode()

    assert run.status == "Completed", (run.error_message, log, workers.logs())
    probes = dict(
        line.removeprefix("PROBE ").split(": ", 1)
        for line in log.splitlines()
        if line.startswith("PROBE ")
    )
    assert len(probes) == 12, log
    assert "victim" not in log  # no byte of the other run's files, nor its log's parts
    for name in ("s3-anonymous-get", "s3-anonymous-list", "s3-made-up-key"):
        assert probes[name].startswith(("400 ", "403 ")), (name, probes[name])
    for name in ("filer-get", "filer-list", "filer-metadata", "filer-appends", "filer-put"):
        assert probes[name].startswith(("401 ", "403 ")), (name, probes[name])
    assert probes["filer-delete"].startswith(("401 ", "403 ")), probes["filer-delete"]
    assert probes["grpc-shell"].startswith("no "), probes["grpc-shell"]
    assert "ENV []" in log  # the worker's AWS_* keys are not in the script's environment
    assert "PROC 0" in log  # nor in any process it can see
    assert seaweedfs.secret_key not in log
    client = seaweedfs.client()
    assert client.get_object(Bucket=BUCKET, Key=victim_key)["Body"].read() == b"victim secret"
    planted = client.list_objects_v2(Bucket=BUCKET, Prefix=targets["planted_key"])
    assert planted.get("KeyCount", 0) == 0
    assert not any((Path(workers.data_dir)).rglob("*.txt"))


# --- Run files on S3: reads of many parts, edges of offsets, folders and races -------------


@pytest.fixture
def bucket(settings, seaweedfs, request):
    """Run files in the test bucket under this test's own prefix; yields the prefix."""
    prefix = f"scale-attack/{os.getpid()}-{time.monotonic_ns()}"
    use_s3_files(settings, seaweedfs, prefix)
    return prefix


def test_a_log_of_many_tiny_appends_is_joined_while_the_run_goes_on(bucket, make_run, cast):
    """A script printing a line a second leaves a part a second (3,600 an hour), and every
    read read each part it covered with its own GET: a 64 KiB tail page of 74-byte parts was
    800 GETs (1.2 s), its line count every part before it, and one 8 MiB API read of such a
    log ~110,000 GETs, again on every request by any reader. The parts are now joined on the
    app hosts' queue each time a file gathers APPEND_PARTS_BEFORE_JOIN of them."""
    from django_tasks_db.models import DBTaskResult

    from runs import limits
    from runs.models import RunFilePart

    run = make_run()
    services.run_set_status(run=run, status="Running")
    count = limits.APPEND_PARTS_BEFORE_JOIN + 3
    lines = [b"line %05d of a script's output, printed once a second\n" % i for i in range(count)]
    for line in lines:
        services.run_file_write(run=run, path="logs/out.txt", stream=[line], append=True)

    [queued] = DBTaskResult.objects.filter(
        task_path="runs.services.files.run_files_join_tails_task"
    )
    assert queued.queue_name == "_alerts"  # the app hosts' own queue
    assert services.run_files_join_tails_task.call(*queued.args_kwargs["args"]) == 1

    parts = RunFilePart.objects.filter(file__run=run, file__path="logs/out.txt")
    assert parts.count() <= 4  # one joined object, and the appends that came after it
    read = cast.reader.client.get(f"/api/v1/runs/{run.run_id}/files/logs/out.txt")
    assert b"".join(read.streaming_content) == b"".join(lines)
    services.run_file_write(run=run, path="logs/out.txt", stream=[b"one more\n"], append=True)
    page = cast.reader.client.get(
        f"/api/v1/runs/{run.run_id}/files/logs/out.txt", {"offset": 0, "length": 1 << 20}
    )
    assert page.content == b"".join(lines) + b"one more\n"
    assert Run.objects.get(pk=run.pk).status == "Running"  # joining never ends the run


def api_read(cast, run, path: str, **params):
    return cast.reader.client.get(f"/api/v1/runs/{run.run_id}/files/{path}", params)


@pytest.mark.parametrize(
    ("offset", "length", "field"),
    [
        ("-1", "10", "offset"),
        ("1e3", "10", "offset"),
        ("0x10", "10", "offset"),
        ("9" * 5000, "10", "offset"),  # past Python's int-from-text digit limit
        ("0", "-1", "length"),
        ("0", str(8 * 1024 * 1024 + 1), "length"),
        ("0", "9" * 40, "length"),
    ],
)
def test_offsets_and_lengths_out_of_range_on_the_bucket_are_a_400_naming_the_field(
    bucket, cast, make_run, offset, length, field
):
    run = make_run()
    services.run_file_write(run=run, path="logs/out.txt", stream=[b"abc\n"], append=True)
    services.run_file_write(run=run, path="logs/out.txt", stream=[b"def\n"], append=True)

    response = api_read(cast, run, "logs/out.txt", offset=offset, length=length)

    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field


@pytest.mark.parametrize(
    ("offset", "length", "body"),
    [
        (0, 0, b""),  # nothing asked, nothing read
        (3, 2, b"\nd"),  # across the boundary of two parts
        (4, 100, b"def\n"),  # exactly at a part's start
        (8, 10, b""),  # at the end: a tail that is up to date
        (9, 10, b""),  # past the end
        (10**30, 10, b""),  # far past the end: no seek overflows
    ],
)
def test_reads_at_the_edges_of_parts_and_past_the_end_answer_what_is_there(
    bucket, cast, make_run, offset, length, body
):
    run = make_run()
    services.run_file_write(run=run, path="logs/out.txt", stream=[b"abc\n"], append=True)
    services.run_file_write(run=run, path="logs/out.txt", stream=[b"def\n"], append=True)

    response = api_read(cast, run, "logs/out.txt", offset=offset, length=length)

    assert response.status_code == 200, response.content
    assert response.content == body
    assert response["X-File-Size"] == "8"
    assert response["X-Next-Offset"] == str(offset + len(body))


@pytest.mark.parametrize(
    "query",
    [
        {"offset": "-5"},
        {"offset": str(10**30)},
        {"offset": "9" * 5000},
        {"before": str(10**30)},
        {"before": "-1"},
        {"tail": "1", "line": str(10**30)},
        {"offset": "3", "line": str(10**30)},
        {"find": "line", "from": str(10**30)},
        {"find": "line", "from": "-3"},
        {"find": "%" * 200},
    ],
)
def test_the_file_viewer_on_the_bucket_takes_any_offset_without_a_5xx(
    bucket, cast, make_run, client, query
):
    run = make_run()
    for i in range(5):
        services.run_file_write(
            run=run, path="logs/out.txt", stream=[b"line %d\n" % i], append=True
        )
    client.force_login(cast.reader.user)
    page = f"/w/lab/runs/{run.run_id}/"

    viewer = client.get(page, {"tab": "outputs", "file": "logs/out.txt", **query})
    fragment = client.get(page, {"fragment": "log", "file": "logs/out.txt", **query})

    assert viewer.status_code == 200
    assert fragment.status_code == 200


def test_a_file_replaced_while_download_all_streams_is_whole_in_the_zip_or_left_out(
    bucket, cast, make_run
):
    """The zip loads every file's index row when it starts; a file replaced by a bigger one
    before the zip reaches it was read by the old size from the new object: the zip held the
    new body's first bytes under the file's name, a file that never existed. A read now checks
    each object's size against the index and the zip reads a replaced file again."""
    import io
    import zipfile

    from runs import storage

    run = make_run()
    first = os.urandom(3 * 1024 * 1024)  # stored, several chunks: the zip is mid-stream
    services.run_file_write(run=run, path="a/weights.bin", stream=[first])
    services.run_file_write(run=run, path="b/config.txt", stream=[b"lr=0.1\n"])
    files = list(Run.objects.get(pk=run.pk).files.order_by("path"))
    stream = storage.run_files_zip(run=run, files=files)
    head = next(stream)

    services.run_file_write(run=run, path="b/config.txt", stream=[b"lr=0.2\nepochs=90\n"])
    body = head + b"".join(stream)

    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert archive.read("a/weights.bin") == first
        assert names == ["a/weights.bin", "b/config.txt"]
        assert archive.read("b/config.txt") == b"lr=0.2\nepochs=90\n"  # read as it is now


@pytest.mark.parametrize("new_size", [1024, 5 * 1024 * 1024])
def test_a_file_replaced_while_it_streams_is_never_served_as_a_mix_of_two_bodies(
    bucket, make_run, new_size
):
    from runs import storage

    run = make_run()
    old = b"o" * (3 * 1024 * 1024)
    new = b"n" * new_size
    services.run_file_write(run=run, path="outputs/model.bin", stream=[old])
    chunks = storage.run_file_iter(run=run, path="outputs/model.bin")
    got = next(chunks)

    services.run_file_write(run=run, path="outputs/model.bin", stream=[new])
    try:
        got += b"".join(chunks)
    except FileNotFoundError:  # the stream breaks, visibly: the client sees a short body
        assert len(got) < len(old)
        return

    assert got in (old, new)


def test_a_read_by_offset_of_a_file_replaced_since_its_row_was_read_is_not_a_5xx(bucket, make_run):
    """The row says 3 MiB; the object under it is now 1 KiB: a ranged GET past its end is a
    416 from the store, which must not surface as a server error."""
    from runs.models import RunFile
    from runs.storage import objects

    run = make_run()
    services.run_file_write(run=run, path="outputs/model.bin", stream=[b"o" * (3 << 20)])
    stale = RunFile.objects.get(run=run, path="outputs/model.bin")
    services.run_file_write(run=run, path="outputs/model.bin", stream=[b"n" * 1024])
    segments = objects.file_segments(name=storage_name(run, stale.path), size=stale.size, parts=[])

    for offset in (0, 2 << 20):
        reader = objects.JoinedReader(segments, size=stale.size)
        reader.seek(offset)
        with pytest.raises(FileNotFoundError):
            reader.read(100)


# --- Charts on the pyramid: bounds, buckets, unsorted steps, a series growing under a read ----


def series_of(cast, run, **params):
    return cast.reader.client.get(
        f"/api/v1/runs/{run.run_id}/metrics/series", {"name": "loss", **params}
    )


def figure_of(cast, client, run, **params):
    client.force_login(cast.reader.user)
    return client.get("/charts/metric/", {"run": run.run_id, "metric": "loss", **params})


@pytest.fixture
def long_series(make_run):
    """20,000 points (several pyramid levels), steps 0..19,999, a spike each way and a NaN."""
    run = make_run()
    values = [float(i % 97) for i in range(20_000)]
    values[12_345] = 1e9
    values[12_346] = -1e9
    values[7_000] = float("nan")
    services.run_log_batch(run=run, metrics=[{"name": "loss", "values": values}])
    return run


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("x_min", "nan"),
        ("x_max", "inf"),
        ("x_min", "-inf"),
        ("x_max", "1e309"),  # parses to inf
        ("x_min", "-Infinity"),
        ("x_max", "0x10"),
        ("buckets", "0"),
        ("buckets", "-1"),
        ("buckets", "5001"),
        ("buckets", "nan"),
        ("buckets", "1e300"),
        ("x", "seq"),
    ],
)
def test_chart_bounds_and_buckets_that_are_not_numbers_in_range_are_a_400_naming_them(
    cast, client, long_series, param, value
):
    api = series_of(cast, long_series, **{param: value})
    studio = figure_of(cast, client, long_series, **{param: value})

    assert api.status_code == 400, api.content
    assert api.json()["error"]["field"] == param
    assert studio.status_code == 400, studio.content
    assert studio.json()["error"]["field"] == param


def test_a_window_with_x_min_past_x_max_is_empty_not_an_error(cast, client, long_series):
    api = series_of(cast, long_series, x_min=500, x_max=100)
    studio = figure_of(cast, client, long_series, x_min=500, x_max=100)

    assert api.status_code == 200, api.content
    assert api.json()["in_range"] == 0 and api.json()["points"]["x"] == []
    assert studio.status_code == 200


@pytest.mark.parametrize("buckets", [1, 2, 4_999, 5_000])
def test_buckets_at_the_limits_keep_every_spike_and_mark_the_nan(cast, long_series, buckets):
    body = series_of(cast, long_series, buckets=buckets).json()
    ys = [y for y in body["points"]["y"] if y is not None]

    assert max(ys) == 1e9 and min(ys) == -1e9  # the spikes survive any bucket count
    assert sum(body["nan"]["count"]) == 1  # the NaN: marked, not drawn
    assert body["count"] == 20_000 and body["in_range"] == 20_000
    assert len(body["points"]["x"]) <= 4 * buckets


@pytest.mark.parametrize("buckets", [1, 1_000])
def test_an_infinity_in_a_bucket_neither_hides_its_spike_nor_goes_unmarked(cast, make_run, buckets):
    run = make_run()
    values = [float(i % 97) for i in range(20_000)]
    values[12_345] = 1e9
    values[12_346] = float("inf")
    services.run_log_batch(run=run, metrics=[{"name": "loss", "values": values}])

    body = series_of(cast, run, buckets=buckets).json()
    ys = [y for y in body["points"]["y"] if y is not None]

    assert max(ys) == 1e9
    assert sum(body["nan"]["count"]) == 1


@pytest.mark.parametrize("x", [0, 12_345, 19_999])
def test_a_window_of_one_point_answers_that_point(cast, long_series, x):
    body = series_of(cast, long_series, x_min=x, x_max=x).json()

    assert body["in_range"] == 1
    assert body["points"]["x"] == [x]
    assert body["points"]["y"] == [1e9 if x == 12_345 else float(x % 97)]


def test_a_zoom_on_a_series_whose_steps_go_back_counts_and_keeps_its_points(cast, make_run):
    """Steps logged out of order (a resumed run that starts again at step 0) take the path that
    filters by value instead of the sorted seq range: the window still holds exactly the points
    whose steps are in it, and their extremes."""
    run = make_run()
    first = [float(i) for i in range(3_000)]
    again = [-float(i) for i in range(3_000)]
    services.run_log_batch(
        run=run,
        metrics=[{"name": "loss", "values": first + again, "steps": list(range(3_000)) * 2}],
    )

    body = series_of(cast, run, x_min=1_000, x_max=1_999, buckets=10).json()
    ys = [y for y in body["points"]["y"] if y is not None]

    assert body["count"] == 6_000 and body["in_range"] == 2_000
    assert max(ys) == 1_999.0 and min(ys) == -1_999.0
    assert all(1_000 <= x <= 1_999 for x in body["points"]["x"])


def test_a_series_read_between_batches_always_shows_its_true_extremes(cast, make_run):
    """The pyramid is kept at ingest: a block a level is continued by each batch. Read after
    every batch (block boundaries in the middle of batches, levels appearing as it grows), the
    chart's extremes are the series' own, and its count is every point stored."""
    run = make_run()
    stored: list[float] = []
    for batch in range(12):
        size = 37 + batch * 331  # never a multiple of a block
        values = [float((len(stored) + i) * 7919 % 10_007) for i in range(size)]
        values[size // 2] = 50_000.0 + batch
        stored += values
        services.run_log_batch(run=run, metrics=[{"name": "loss", "values": values}])

        body = series_of(cast, run, buckets=50).json()
        ys = [y for y in body["points"]["y"] if y is not None]
        assert body["count"] == len(stored)
        assert max(ys) == max(stored) and min(ys) == min(stored), batch


# --- Run lists: the pager's total and searches that make the database work -----------------

RUNS = "/api/v1/workspaces/lab/runs"


def bulk_runs(workspace, experiment, count: int, tags: dict[str, str], prefix: str) -> None:
    """`count` runs tagged `tags`, inserted in bulk (the list reads rows, however they came)."""
    from runs.models import RunTag

    made = Run.objects.bulk_create(
        Run(run_id=f"{prefix}-{i}", workspace=workspace, experiment=experiment)
        for i in range(count)
    )
    RunTag.objects.bulk_create(
        RunTag(run=run, key=key, value=value) for run in made for key, value in tags.items()
    )


def analyze() -> None:
    from django.db import connection

    if connection.vendor == "postgresql":  # estimates come from statistics
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE runs_run, runs_runtag, runs_metricseries")


def test_the_pagers_estimate_says_nothing_about_other_workspaces_runs(cast, monkeypatch):
    """Past LIST_TOTAL_MAX the total is PostgreSQL's planner estimate, and the planner's
    statistics are the whole table's. A contributor plants LIST_TOTAL_MAX + 5 runs tagged
    with a value they guess another workspace uses and reads the estimate: it answered
    "about 3,000" for a workspace of 20 runs, because the other workspace had 3,000 such runs
    — an oracle on tags it cannot see, and more runs than the workspace holds."""
    from runs.models import Workspace

    monkeypatch.setattr("runs.limits.LIST_TOTAL_MAX", 10)
    lab = cast.workspace
    elsewhere = Workspace.objects.get(name="elsewhere")
    lab_exp, _ = services.experiment_get_or_create(workspace=lab, name="exp")
    other_exp, _ = services.experiment_get_or_create(workspace=elsewhere, name="exp")
    bulk_runs(lab, lab_exp, 15, {"project": "apollo"}, "lab-apollo")
    bulk_runs(lab, lab_exp, 15, {"project": "zeus"}, "lab-zeus")
    bulk_runs(elsewhere, other_exp, 3_000, {"project": "apollo"}, "hidden")
    analyze()

    guessed = cast.reader.client.get(RUNS, {"tag": "project=apollo"}).json()
    control = cast.reader.client.get(RUNS, {"tag": "project=zeus"}).json()
    everything = cast.reader.client.get(RUNS).json()

    assert guessed["count_is_estimate"] and control["count_is_estimate"]
    assert guessed["count"] <= 30 and everything["count"] <= 30  # never past the workspace
    assert (guessed["count"], guessed["count_relation"]) == (
        control["count"],
        control["count_relation"],
    )


@pytest.fixture
def walked_runs(make_run, monkeypatch):
    """Runs whose `loss` max is every awkward float, and some without `loss`; small walking
    windows so every page walks the sort order and the tail of missing values."""
    from runs.selectors import run_pages

    monkeypatch.setattr("runs.limits.LIST_TOTAL_MAX", 3)
    monkeypatch.setattr(run_pages, "WALK_FIRST", 2)
    monkeypatch.setattr(run_pages, "WALK_WINDOW_MAX", 4)
    values = [float("inf"), float("-inf"), 1e308, -1e308, 0.0, -0.0, 5e-324, float("nan")]
    made = []
    for i, value in enumerate(values):
        run = make_run(display_name=f"valued {i}", tags={"team": "a" if i % 2 else "b"})
        services.run_log_batch(run=run, metrics=[{"name": "loss", "values": [value]}])
        made.append(run)
    for i in range(5):
        made.append(make_run(display_name=f"missing {i}", tags={"team": "a" if i % 2 else "b"}))
    return made


def pages(cast, **params) -> list[str]:
    """Every run id of the list, a page at a time through its cursors."""
    seen, cursor = [], None
    for _ in range(100):
        query = {"page_size": 1, **params, **({"cursor": cursor} if cursor else {})}
        response = cast.reader.client.get(RUNS, query)
        assert response.status_code == 200, response.content
        body = response.json()
        seen += [r["run_id"] for r in body["results"]]
        cursor = body.get("next_cursor")
        if not cursor:
            return seen
    raise AssertionError("the cursors never ended")


@pytest.mark.parametrize("sort", ["-metrics.loss.max", "metrics.loss.max", "metrics.loss.min"])
@pytest.mark.parametrize("tag", [None, "team=a"])
def test_paging_by_a_metric_of_infinities_and_nans_lists_each_run_once(
    cast, walked_runs, sort, tag
):
    params = {"sort": sort, **({"tag": tag} if tag else {})}
    expected = {r.run_id for r in walked_runs if tag is None or r.tags.get(key="team").value == "a"}

    listed = pages(cast, **params)

    assert sorted(listed) == sorted(expected)  # each once: no cursor skips or repeats one


def test_sorting_by_a_metric_no_run_has_lists_every_run_once_newest_first(cast, walked_runs):
    listed = pages(cast, sort="-metrics.never_logged.max")
    total = cast.reader.client.get(RUNS, {"sort": "-metrics.never_logged.max"}).json()

    assert sorted(listed) == sorted(r.run_id for r in walked_runs)
    assert (total["count"], total["count_relation"]) == (4, "gte")


@pytest.mark.parametrize("sort", ["-metrics.loss.max", "metrics.never_logged.min", "tags.team"])
def test_a_sorted_filtered_list_over_the_time_budget_is_a_400_not_a_5xx(
    cast, make_run, settings, monkeypatch, sort
):
    """The walk of the sort order and the bounded count are more queries than the plain
    list: each runs under the request's budget (the plain list's case is in test_no_5xx)."""
    from runs.models import Run as RunModel
    from runs.selectors import run_pages

    monkeypatch.setattr(run_pages, "WALK_FIRST", 5)
    for i in range(100):
        run = make_run(display_name=f"run {i}", tags={"team": "vision"})
        services.run_log_batch(run=run, metrics=[{"name": "loss", "values": [i * 0.1]}])
    RunModel.objects.filter(display_name="run 0").update(description="a" * 1_000_000)
    settings.QUERY_TIME_BUDGET_SECONDS = 1e-9

    response = cast.reader.client.get(
        RUNS,
        {
            "sort": sort,
            "tag": "team=vision",
            "q": "description LIKE '%x%y_z' OR tags.team LIKE 'v_s%'",
        },
    )

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "query_too_expensive"


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("post", "outputs/a", {"append": 1}),  # a folder, appended to
        ("put", "outputs/a", {}),  # a folder, replaced by a file
        ("post", "outputs/a/b.txt/c", {"append": 1}),  # a file, used as a folder
        ("put", "outputs/a/b.txt/c", {}),
        ("post", "outputs/a/", {"append": 1}),  # the folder with its slash
        ("put", "outputs//a", {}),
        ("put", "outputs/./a/b.txt", {}),
    ],
    # The files_backend fixture puts the test's name in the bucket prefix: no `./` in ids.
    ids=[
        "append-folder",
        "put-folder",
        "append-under-file",
        "put-under-file",
        "slash",
        "double-slash",
        "dot",
    ],
)
def test_a_file_and_a_folder_never_share_a_name_on_either_backend(
    files_backend, cast, make_run, method, path, params
):
    """On a bucket `runs/<id>/outputs/a` and `runs/<id>/outputs/a/b.txt` can both be keys;
    the files folder cannot hold both. The index refuses what the folder would, so Download
    all never holds a file and a folder of one name."""
    from runs.models import RunFile

    run = make_run()
    services.run_file_write(run=run, path="outputs/a/b.txt", stream=[b"weights"])
    url = f"/api/v1/runs/{run.run_id}/files/{path}"
    if params:
        url += "?append=1"

    response = getattr(cast.contributor.client, method)(
        url, data=b"x", content_type="application/octet-stream"
    )

    assert response.status_code in (400, 404, 409), response.content
    assert list(RunFile.objects.filter(run=run).values_list("path", flat=True)) == [
        "outputs/a/b.txt"
    ]


def test_names_that_differ_only_in_unicode_form_are_one_file_on_either_backend(
    files_backend, cast, make_run
):
    import unicodedata

    run = make_run()
    nfd = unicodedata.normalize("NFD", "outputs/résumé.txt")
    nfc = unicodedata.normalize("NFC", "outputs/résumé.txt")
    assert nfd != nfc
    base = f"/api/v1/runs/{run.run_id}/files/"

    first = cast.contributor.client.put(
        base + nfd, data=b"decomposed", content_type="application/octet-stream"
    )
    second = cast.contributor.client.post(
        base + nfc + "?append=1", data=b" then composed", content_type="application/octet-stream"
    )
    listed = cast.reader.client.get(f"/api/v1/runs/{run.run_id}/files").json()["files"]
    read = cast.reader.client.get(base + nfd)

    assert (first.status_code, second.status_code) == (201, 200)
    assert [f["path"] for f in listed] == [nfc]
    assert b"".join(read.streaming_content) == b"decomposed then composed"


def test_a_window_of_a_series_whose_steps_go_back_runs_under_the_budget(
    cast, client, make_run, settings
):
    """Such a window scans the series' points (0.6–0.9 s of CPU at 10M points, against 7–9 ms
    in order; docs/architecture.md), any reader can repeat it with new bounds and a compare
    chart asks for 50 runs at once. It now runs under QUERY_TIME_BUDGET_SECONDS, as searches
    do; windows of series in order, and whole series, never scan and are not refused."""
    run = make_run()
    # Long enough to outlast PostgreSQL's smallest statement_timeout (1 ms).
    back = [float(i) for i in range(50_000)] + [-float(i) for i in range(50_000)]
    for name, steps in [("loss", list(range(50_000)) * 2), ("acc", list(range(100_000)))]:
        services.run_log_batch(run=run, metrics=[{"name": name, "values": back, "steps": steps}])
    settings.QUERY_TIME_BUDGET_SECONDS = 1e-9  # every scan overruns it

    api = series_of(cast, run, x_min=1_000, x_max=40_000)
    studio = figure_of(cast, client, run, x_max=40_000)
    in_order = cast.reader.client.get(
        f"/api/v1/runs/{run.run_id}/metrics/series", {"name": "acc", "x_min": 10, "x_max": 5_000}
    )
    whole = series_of(cast, run)

    assert api.status_code == 400, api.content
    assert api.json()["error"]["code"] == "query_too_expensive"
    assert api.json()["error"]["field"] == "x_min"
    assert "QUERY_TIME_BUDGET_SECONDS" in api.json()["error"]["message"]
    assert studio.status_code == 400 and studio.json()["error"]["field"] == "x_max"
    assert in_order.status_code == 200 and in_order.json()["in_range"] == 4_991
    assert whole.status_code == 200 and whole.json()["in_range"] == 100_000


def test_a_join_while_the_run_goes_on_leaves_big_parts_and_the_head_alone(bucket, make_run, cast):
    """Joining the whole file each time would copy a 1 GiB log every 256 appends; only the
    small parts at the end are joined, so a join costs about what was appended since."""
    from runs import limits
    from runs.models import RunFilePart

    run = make_run()
    services.run_set_status(run=run, status="Running")
    head = b"h" * 1000
    big = os.urandom(limits.APPEND_JOINED_PART_BYTES)
    services.run_file_write(run=run, path="logs/out.txt", stream=[head])
    services.run_file_write(run=run, path="logs/out.txt", stream=[big], append=True)
    big_key = RunFilePart.objects.get(file__run=run).key
    small = [b"%d\n" % i for i in range(40)]
    for piece in small:
        services.run_file_write(run=run, path="logs/out.txt", stream=[piece], append=True)

    assert services.run_files_join_tails(run=run) == 1
    assert services.run_files_join_tails(run=run) == 0  # nothing left to join

    parts = list(RunFilePart.objects.filter(file__run=run).order_by("start"))
    assert [(p.start, p.size) for p in parts] == [
        (len(head), len(big)),
        (len(head) + len(big), len(b"".join(small))),
    ]
    assert parts[0].key == big_key  # the big part was not copied
    read = cast.reader.client.get(f"/api/v1/runs/{run.run_id}/files/logs/out.txt")
    assert b"".join(read.streaming_content) == head + big + b"".join(small)
    tail = cast.reader.client.get(
        f"/api/v1/runs/{run.run_id}/files/logs/out.txt",
        {"offset": len(head) + len(big) - 3, "length": 10},
    )
    assert tail.content == big[-3:] + b"".join(small)[:7]
    services.run_set_status(run=run, status="Completed")
    services.run_files_compact(run=run)  # the run's end still joins it all into one
    assert list(RunFilePart.objects.filter(file__run=run).values_list("start", flat=True)) == [0]


def test_download_all_of_a_run_with_more_files_than_a_query_takes_parameters(
    bucket, cast, make_run
):
    """The zip loads every file's parts in one query, `file IN (…)` with a parameter a file:
    past 65,535 files PostgreSQL's protocol refuses the query (a 500 before any byte)."""
    from runs import storage
    from runs.models import RunFile

    run = make_run()
    services.run_file_write(run=run, path="a/first.txt", stream=[b"first"])
    RunFile.objects.bulk_create(
        (RunFile(run=run, path=f"z/{i:05d}.png", size=1) for i in range(70_000)),
        batch_size=5_000,
    )
    files = list(Run.objects.get(pk=run.pk).files.order_by("path"))

    stream = storage.run_files_zip(run=run, files=files)

    assert b"first" in next(stream) + next(stream)  # the first entry, whatever the count
