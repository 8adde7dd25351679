"""Run files over real HTTP on both backends: the local files folder and a real SeaweedFS bucket
(RUNSTUDIO_FILES_URL=s3://…, tests/seaweed.py). Uploads, appends as parts, offset reads, the
studio's text pages, live tail, line numbers and Find, Download all, compaction, deletion.
docs/architecture.md, "Run files on S3", has the design these check."""

import io
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import requests
from django.test import Client

from runs import services, snapshot
from runs.models import RunFile, RunFilePart
from runs.storage import objects

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("files_backend")]


@pytest.fixture
def run(make_run):
    return make_run()


@pytest.fixture
def api(live_server, cast):
    session = requests.Session()
    session.headers["Authorization"] = f"Token {cast.contributor.token}"
    return session


def url(live_server, run, path: str) -> str:
    return f"{live_server.url}/api/v1/runs/{run.run_id}/files/{path}"


def append(api, live_server, run, path: str, data: bytes) -> requests.Response:
    response = api.post(url(live_server, run, path), params={"append": 1}, data=data)
    assert response.status_code == 200, response.text
    return response


def bucket_keys(seaweedfs, settings) -> dict[str, int]:
    """Every object under this test's prefix in the bucket, key → size."""
    options = settings.STORAGES["default"]["OPTIONS"]
    pages = seaweedfs.client().get_paginator("list_objects_v2")
    found = {}
    for page in pages.paginate(Bucket=options["bucket_name"], Prefix=options["location"] + "/"):
        for item in page.get("Contents", []):
            found[item["Key"].removeprefix(options["location"] + "/")] = item["Size"]
    return found


def studio(cast) -> Client:
    client = Client()
    client.force_login(cast.reader.user)
    return client


def test_an_upload_reads_back_whole_and_by_offset(api, live_server, run, files_backend):
    body = os.urandom(3 * 1024 * 1024 + 17)

    written = api.put(url(live_server, run, "outputs/model.bin"), data=body)
    whole = api.get(url(live_server, run, "outputs/model.bin"))
    middle = api.get(
        url(live_server, run, "outputs/model.bin"), params={"offset": 1_000_000, "length": 5000}
    )

    assert written.status_code == 201, written.text
    assert whole.content == body
    assert middle.content == body[1_000_000:1_005_000]
    assert middle.headers["X-Next-Offset"] == "1005000"


def test_on_s3_every_file_is_in_the_bucket_and_none_on_the_local_disk(
    api, live_server, run, files_backend, settings, seaweedfs, tmp_path
):
    if files_backend != "s3":
        pytest.skip("the bucket only")
    api.put(url(live_server, run, "outputs/a.txt"), data=b"hello")
    append(api, live_server, run, "logs/driver.txt", b"line 1\n")

    keys = bucket_keys(seaweedfs, settings)

    assert keys[f"runs/{run.run_id}/outputs/a.txt"] == 5
    assert any(k.startswith(f".appends/{run.run_id}/") for k in keys)
    assert not (tmp_path / "files").exists()  # the folder storage's place stays untouched


def test_appends_store_each_piece_once_never_rewriting_what_came_before(
    api, live_server, run, files_backend, settings, seaweedfs
):
    pieces = [f"step {i}: loss {1 / (i + 1):.4f}\n".encode() * 20 for i in range(30)]

    sizes = [append(api, live_server, run, "logs/train.log", p).json()["size"] for p in pieces]
    read = api.get(url(live_server, run, "logs/train.log"))

    assert read.content == b"".join(pieces)
    assert sizes[-1] == sum(map(len, pieces))
    if files_backend == "s3":
        parts = RunFilePart.objects.filter(file__run=run).order_by("start")
        assert [p.size for p in parts] == [len(p) for p in pieces]
        stored = bucket_keys(seaweedfs, settings)
        # The bucket holds each byte once: the total is the log's size, not the sum of
        # ever-longer rewrites (30 appends would have written ~15× the log before).
        assert sum(stored.values()) == sizes[-1]
        assert f"runs/{run.run_id}/logs/train.log" not in stored


def test_the_studio_pages_tails_counts_lines_and_finds_in_a_log(
    api, live_server, run, cast, files_backend
):
    lines = [f"line {i:05d} {'x' * 60}\n".encode() for i in range(3000)]  # ~200 KB
    for start in range(0, 3000, 500):
        append(api, live_server, run, "logs/out.txt", b"".join(lines[start : start + 500]))
    client = studio(cast)
    page = f"/w/{cast.workspace.name}/runs/{run.run_id}/"

    tail = client.get(page, {"tab": "outputs", "file": "logs/out.txt", "tail": 1})
    found = client.get(page, {"tab": "outputs", "file": "logs/out.txt", "find": "line 01234"})
    middle = client.get(page, {"tab": "outputs", "file": "logs/out.txt", "offset": 100_000})

    assert tail.status_code == found.status_code == middle.status_code == 200
    assert b"line 02999" in tail.content and b"line 00000 " not in tail.content
    assert b"line 01234" in found.content
    # The page's first line number is counted by streaming the file up to the offset.
    offset = 100_000 + (-100_000 % len(lines[0]))
    first = offset // len(lines[0])
    assert f"line {first:05d}".encode() in middle.content


def test_download_all_streams_a_zip_of_every_file_including_appended_logs(
    api, live_server, run, cast, files_backend
):
    model = os.urandom(2 * 1024 * 1024)
    api.put(url(live_server, run, "outputs/model.bin"), data=model)
    for i in range(5):
        append(api, live_server, run, "logs/out.txt", f"line {i}\n".encode())
    client = studio(cast)

    response = client.get(f"/w/{cast.workspace.name}/runs/{run.run_id}/download/")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))

    assert response.streaming
    assert archive.read("outputs/model.bin") == model
    assert archive.read("logs/out.txt") == b"".join(f"line {i}\n".encode() for i in range(5))


def test_compaction_joins_a_log_into_one_object_and_appends_go_on_after_it(
    api, live_server, run, files_backend, settings, seaweedfs
):
    # A head written whole, then pieces either side of S3's 5 MiB part floor: the join copies
    # the large stretches inside the store and sends the small ones.
    head = os.urandom(6 * 1024 * 1024)
    api.put(url(live_server, run, "logs/big.log"), data=head)
    pieces = [b"small\n", os.urandom(6 * 1024 * 1024), b"tail\n" * 1000]
    for piece in pieces:
        append(api, live_server, run, "logs/big.log", piece)
    append(api, live_server, run, "logs/small.log", b"a\n")
    append(api, live_server, run, "logs/small.log", b"b\n")

    compacted = services.run_files_compact(run=run)
    after = append(api, live_server, run, "logs/big.log", b"after the end\n")

    expected = head + b"".join(pieces) + b"after the end\n"
    assert api.get(url(live_server, run, "logs/big.log")).content == expected
    assert api.get(url(live_server, run, "logs/small.log")).content == b"a\nb\n"
    assert after.json()["size"] == len(expected)
    if files_backend == "s3":
        assert compacted == 2
        big = RunFile.objects.get(run=run, path="logs/big.log")
        assert [(p.start, p.size) for p in big.parts.all()] == [
            (0, len(expected) - 14),
            (len(expected) - 14, 14),
        ]
        stored = bucket_keys(seaweedfs, settings)
        live_keys = set(RunFilePart.objects.filter(file__run=run).values_list("key", flat=True))
        appended = {k for k in stored if k.startswith(".appends/")}
        assert appended == live_keys  # the joined parts' objects are gone
    else:
        assert compacted == 0


def test_deleting_a_run_removes_every_object_of_it(
    api, live_server, run, files_backend, settings, seaweedfs
):
    api.put(url(live_server, run, "outputs/a.txt"), data=b"a")
    append(api, live_server, run, "logs/out.txt", b"x\n")
    append(api, live_server, run, "logs/out.txt", b"y\n")

    removed = services.run_files_delete_all(run=run)

    assert removed == 2
    assert not RunFile.objects.filter(run=run).exists()
    if files_backend == "s3":
        assert bucket_keys(seaweedfs, settings) == {}


def test_a_snapshot_is_stored_and_unpacked_for_the_worker(run, files_backend, tmp_path):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("train.py", "print('hello')\n")
        z.writestr("data/config.json", '{"lr": 0.1}')
        z.writestr("data/naïve name + 50%.txt", "odd")  # the key is exactly the path
    archive.seek(0)

    snapshot.snapshot_store(run=run, archive=archive)
    count = snapshot.snapshot_unpack(run=run, destination=tmp_path / "work")

    assert count == 3
    assert (tmp_path / "work" / "data" / "naïve name + 50%.txt").read_text() == "odd"
    assert (tmp_path / "work" / "train.py").read_text() == "print('hello')\n"
    assert (tmp_path / "work" / "data" / "config.json").read_text() == '{"lr": 0.1}'
    assert Path(tmp_path / "work").is_dir()
    if files_backend == "s3":
        assert objects.is_object_storage()


def test_download_all_stores_incompressible_files_and_deflates_text(
    api, live_server, run, cast, files_backend, tmp_path
):
    weights, log = os.urandom(3 * 1024 * 1024), b"epoch 1 loss 0.5\n" * 100_000
    api.put(url(live_server, run, "outputs/weights.bin"), data=weights)
    api.put(url(live_server, run, "logs/train.log"), data=log)

    response = studio(cast).get(f"/w/{cast.workspace.name}/runs/{run.run_id}/download/")
    (tmp_path / "all.zip").write_bytes(b"".join(response.streaming_content))
    archive = zipfile.ZipFile(tmp_path / "all.zip")

    # Deflating random bytes costs the CPU ~15 MB/s and saves nothing: stored as they are.
    assert archive.getinfo("outputs/weights.bin").compress_type == zipfile.ZIP_STORED
    assert archive.getinfo("logs/train.log").compress_type == zipfile.ZIP_DEFLATED
    assert archive.read("outputs/weights.bin") == weights and archive.read("logs/train.log") == log
    if shutil.which("unzip"):  # Info-ZIP, as users open it, reads the stored entries too
        checked = subprocess.run(["unzip", "-t", tmp_path / "all.zip"], capture_output=True)
        assert checked.returncode == 0, checked.stdout


def test_any_window_of_a_log_of_many_parts_reads_right_with_the_same_queries(run, files_backend):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from runs import storage

    services.run_file_write(run=run, path="logs/out.txt", stream=[b"head line\n"])
    pieces = [f"piece {i:03d} ".encode() * (i % 7 + 1) + b"\n" for i in range(150)]
    for piece in pieces:
        services.run_file_write(run=run, path="logs/out.txt", stream=[piece], append=True)
    whole = b"head line\n" + b"".join(pieces)
    windows = [(0, 5), (3, 40), (10, 1), (777, 300), (len(whole) - 20, 100), (0, len(whole))]

    counts = []
    for offset, length in windows:
        with CaptureQueriesContext(connection) as queries:
            data, size = storage.run_file_read(
                run=run, path="logs/out.txt", offset=offset, length=length
            )
        assert (data, size) == (whole[offset : offset + length], len(whole))
        counts.append(len(queries))

    # One read is a handful of indexed queries however many parts the log has.
    assert max(counts) <= 5
