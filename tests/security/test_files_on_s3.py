"""Attacks on run files in an S3 bucket (a real SeaweedFS, tests/seaweed.py): paths that try to
leave the run's keys, a body cut off through gunicorn, appends racing each other and arriving
after the run ended, and a run whose objects pass one listing page."""

import http.client
import os
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from runs import services
from runs.models import RunFile, RunFilePart, RunStatus
from runs.storage import storage_name
from tests.conftest import use_s3_files
from tests.processes import ROOT, database_env, free_port, gunicorn_command, wait_until_served

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def bucket(settings, seaweedfs, request):
    """Run files in the test bucket under this test's own prefix; yields the prefix."""
    prefix = f"attack/{os.getpid()}/{request.node.name}"
    use_s3_files(settings, seaweedfs, prefix)
    return prefix


@pytest.fixture
def run(make_run):
    return make_run()


def all_keys(seaweedfs) -> set[str]:
    """Every key in the whole bucket, whatever prefix."""
    pages = seaweedfs.client().get_paginator("list_objects_v2")
    return {
        item["Key"]
        for page in pages.paginate(Bucket="runstudio-test")
        for item in page.get("Contents", [])
    }


def read(live_server, cast, run, path: str) -> bytes:
    response = requests.get(
        f"{live_server.url}/api/v1/runs/{run.run_id}/files/{path}",
        headers={"Authorization": f"Token {cast.reader.token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.content


def raw(live_server, cast, method: str, url_path: str, body: bytes) -> int:
    """Sends the request line as given (no client-side clean-up of `..`)."""
    host, port = live_server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest(method, url_path, skip_accept_encoding=True)
    conn.putheader("Authorization", f"Token {cast.contributor.token}")
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    status = conn.getresponse().status
    conn.close()
    return status


@pytest.mark.parametrize(
    "path",
    [
        "a/../../../other",
        "../escape",
        "a/%2e%2e/%2e%2e/%2e%2e/b",
        "%2e%2e/%2e%2e/%2e%2e/%2e%2e/x",
        "/etc/passwd",
        "//absolute-key",
    ],
)
def test_a_path_with_dotdot_or_an_absolute_key_writes_no_object_anywhere(
    live_server, cast, run, bucket, seaweedfs, path
):
    before = all_keys(seaweedfs)
    base = f"/api/v1/runs/{run.run_id}/files/"

    statuses = {
        raw(live_server, cast, "PUT", base + path, b"planted"),
        raw(live_server, cast, "POST", base + path + "?append=1", b"planted"),
    }

    assert statuses <= {400, 404}  # refused; 404 where the router already rejects the URL
    assert all_keys(seaweedfs) == before
    assert not RunFile.objects.filter(run=run).exists()


def test_a_path_naming_the_parts_folder_stays_inside_the_runs_own_keys(
    live_server, cast, run, make_run, bucket, seaweedfs
):
    victim = make_run("other")
    services.run_file_write(run=victim, path="logs/out.txt", stream=[b"victim\n"], append=True)
    part = RunFilePart.objects.get(file__run=victim)
    base = f"/api/v1/runs/{run.run_id}/files/"

    status = raw(live_server, cast, "PUT", base + part.key, b"overwrite?")

    assert status == 201
    assert read(live_server, cast, victim, "logs/out.txt") == b"victim\n"
    assert f"{bucket}/{storage_name(run, part.key)}" in all_keys(seaweedfs)


def test_a_body_cut_off_through_gunicorn_leaves_the_bucket_as_it_was(
    cast, run, bucket, seaweedfs, settings, tmp_path
):
    services.run_file_write(run=run, path="model.bin", stream=[b"original model"])
    services.run_file_write(run=run, path="logs/out.txt", stream=[b"line 1\n"], append=True)
    before = all_keys(seaweedfs)
    port = free_port()
    env = database_env(tmp_path / "data") | seaweedfs.env(f"s3://runstudio-test/{bucket}")
    log = tmp_path / "gunicorn.log"
    command = gunicorn_command(port, "--workers", "1", "--threads", "4", "--worker-class")
    command += ["gthread", "--no-control-socket"]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=-2)
    try:
        wait_until_served(f"http://127.0.0.1:{port}", server, log=log)
        for method, path in [("PUT", "model.bin"), ("POST", "logs/out.txt?append=1")]:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(
                    f"{method} /api/v1/runs/{run.run_id}/files/{path} HTTP/1.1\r\n"
                    f"Host: 127.0.0.1\r\nAuthorization: Token {cast.contributor.token}\r\n"
                    "Content-Type: application/octet-stream\r\n"
                    "Content-Length: 1000000\r\n\r\n".encode()
                    + b"x" * 700
                )
        time.sleep(1.5)  # the server notices the hang-ups and cleans up
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:  # a worker still waiting on a hung-up body
            server.kill()
            server.wait(timeout=15)

    assert all_keys(seaweedfs) == before  # no object written, not even a part
    files = dict(RunFile.objects.filter(run=run).values_list("path", "size"))
    assert files == {"model.bin": 14, "logs/out.txt": 7}
    assert RunFilePart.objects.filter(file__run=run).count() == 1


def test_appends_racing_from_many_clients_lose_nothing(live_server, cast, run, bucket):
    url = f"{live_server.url}/api/v1/runs/{run.run_id}/files/logs/out.txt"
    headers = {"Authorization": f"Token {cast.contributor.token}"}
    lines = [f"writer {w} line {i}\n".encode() for w in range(6) for i in range(8)]
    barrier = threading.Barrier(6)
    # One answer first, from this thread: tests/conformance.py builds the API schema on the
    # first answer it checks, and drf-spectacular's build is not safe from several threads.
    assert requests.get(url, headers=headers, timeout=30).status_code == 404

    def writer(w: int) -> None:
        with requests.Session() as session:
            barrier.wait()
            for line in lines[w * 8 : (w + 1) * 8]:
                response = session.post(url, params={"append": 1}, data=line, headers=headers)
                assert response.status_code == 200, response.text

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(writer, range(6)))
    stored = read(live_server, cast, run, "logs/out.txt")

    # Read-modify-write lost appends here; each append is now its own part in commit order.
    assert sorted(stored.splitlines(keepends=True)) == sorted(lines)
    assert RunFile.objects.get(run=run, path="logs/out.txt").size == len(b"".join(lines))


def test_an_append_after_the_run_ended_and_was_compacted_lands_after_it_intact(
    live_server, cast, run, bucket
):
    for i in range(5):
        services.run_file_write(
            run=run, path="logs/out.txt", stream=[f"{i}\n".encode()], append=True
        )
    services.run_set_status(run=run, status=RunStatus.RUNNING)
    services.run_set_status(run=run, status=RunStatus.COMPLETED)
    services.run_files_compact(run=run)

    late = requests.post(
        f"{live_server.url}/api/v1/runs/{run.run_id}/files/logs/out.txt",
        params={"append": 1},
        data=b"late\n",
        headers={"Authorization": f"Token {cast.contributor.token}"},
        timeout=30,
    )
    services.run_files_compact(run=run)

    assert late.status_code == 200
    assert read(live_server, cast, run, "logs/out.txt") == b"0\n1\n2\n3\n4\nlate\n"
    assert RunFilePart.objects.filter(file__run=run).count() == 1


def test_a_log_appended_through_the_api_is_joined_by_a_task_once_the_run_ends(
    live_server, cast, run, bucket, seaweedfs
):
    from django_tasks_db.models import DBTaskResult

    def api(method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(
            method,
            f"{live_server.url}/api/v1/runs/{run.run_id}/{path}",
            headers={"Authorization": f"Token {cast.contributor.token}"},
            timeout=30,
            **kwargs,
        )

    for i in range(4):
        assert api("POST", "files/logs/client.txt", params={"append": 1}, data=b"%d\n" % i).ok
    assert RunFilePart.objects.filter(file__run=run).count() == 4
    parts = set(RunFilePart.objects.filter(file__run=run).values_list("key", flat=True))
    assert DBTaskResult.objects.count() == 0  # nothing while the run goes on
    assert api("POST", "status", json={"status": "Completed"}).ok

    [queued] = DBTaskResult.objects.all()
    assert queued.queue_name == "_alerts"  # the app hosts' own queue: every serve works it
    assert queued.task_path == "runs.services.files.run_files_compact_task"
    assert queued.run_after > queued.enqueued_at  # after a worker's own compaction
    assert services.run_files_compact_task.call(*queued.args_kwargs["args"]) == 1

    assert RunFilePart.objects.filter(file__run=run).count() == 1
    assert read(live_server, cast, run, "logs/client.txt") == b"0\n1\n2\n3\n"
    assert not parts & all_keys(seaweedfs)  # the joined parts' objects are gone
    # A run ending with nothing appended (or already joined) queues nothing.
    other = services.run_create(
        experiment=run.experiment,
        spec=services.RunSpec.from_input({}),
        submitter=cast.contributor.user,
    )
    services.run_file_write(run=other, path="whole.txt", stream=[b"x"])
    services.run_set_status(run=other, status=RunStatus.FAILED)
    assert DBTaskResult.objects.count() == 1


def test_objects_past_one_listing_page_are_never_listed_and_all_go_with_the_run(
    live_server, cast, run, bucket, seaweedfs
):
    services.run_file_write(run=run, path="outputs/real.txt", stream=[b"real"])
    client = seaweedfs.client()
    # Strays the index never knew (an interrupted append's parts, objects put by hand):
    # more than one ListObjects page of 1,000.
    strays = [f"{bucket}/{storage_name(run, f'outputs/stray/{i}')}" for i in range(1200)]
    strays += [f"{bucket}/.appends/{run.run_id}/orphan-{i}" for i in range(300)]
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda key: client.put_object(Bucket="runstudio-test", Key=key, Body=b"s"), strays
            )
        )

    listed = requests.get(
        f"{live_server.url}/api/v1/runs/{run.run_id}/files",
        headers={"Authorization": f"Token {cast.reader.token}"},
        timeout=30,
    ).json()
    services.run_files_delete_all(run=run)

    assert [f["path"] for f in listed["files"]] == ["outputs/real.txt"]
    assert not [k for k in all_keys(seaweedfs) if k.startswith(f"{bucket}/")]


def test_replaces_racing_from_many_clients_leave_one_whole_body_and_its_size(
    live_server, cast, run, bucket
):
    url = f"{live_server.url}/api/v1/runs/{run.run_id}/files/outputs/model.bin"
    headers = {"Authorization": f"Token {cast.contributor.token}"}
    bodies = [bytes([65 + w]) * (100_000 + 7_919 * w) for w in range(6)]
    barrier = threading.Barrier(6)
    assert requests.get(url, headers=headers, timeout=30).status_code == 404  # as above

    def writer(w: int) -> None:
        with requests.Session() as session:
            barrier.wait()
            for _ in range(3):
                response = session.put(url, data=bodies[w], headers=headers)
                assert response.status_code == 201, response.text

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(writer, range(6)))
    stored = read(live_server, cast, run, "outputs/model.bin")

    # The object and the index agree: one writer's whole body, at its own size.
    assert stored in bodies
    assert RunFile.objects.get(run=run, path="outputs/model.bin").size == len(stored)
