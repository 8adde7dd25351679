"""Run files are complete or untouched, and symlinks are never followed (issue 7, item 4).

The attacks that reach the server's body reader (chunked bodies, bodies cut off mid-way,
a large upload next to metric ingest) go through a real gunicorn started the way
`runstudio serve` starts it, with raw http.client and socket requests; the rest use the
Django test client, the live test server (Django's own WSGI server) and the storage."""

import contextlib
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import threading
import time
import unicodedata
import zipfile
from pathlib import Path

import pytest
import requests
from django.core.files.storage import default_storage

from runs import limits, services, snapshot, storage
from runs.errors import InvalidInput, TooLarge
from runs.models import RunFile
from runs.storage import storage_name
from tests.processes import ROOT, database_env, free_port, gunicorn_command, wait_until_served

SECRET = b"the server's secret key\n"


@pytest.fixture
def run(make_run):
    return make_run()


def files_url(run, path: str = "") -> str:
    return f"/api/v1/runs/{run.run_id}/files" + (f"/{path}" if path else "")


def put(client, run, path, data: bytes):
    return client.put(files_url(run, path), data=data, content_type="application/octet-stream")


def append(client, run, path, data: bytes):
    return client.post(
        files_url(run, path) + "?append=1", data=data, content_type="application/octet-stream"
    )


def on_disk(run, path: str) -> Path:
    return Path(default_storage.path(storage_name(run, path)))


def stored(run, path: str) -> bytes:
    return on_disk(run, path).read_bytes()


# --- Symlinks and special files in the files folder -----------------------------------------


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "outside" / "secret_key"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


def plant_file_symlink(cast, run, secret: Path, path: str = "outputs/model.bin") -> None:
    """An indexed file whose bytes on disk are swapped for a symlink to a secret."""
    assert put(cast.contributor.client, run, path, b"honest bytes").status_code == 201
    target = on_disk(run, path)
    target.unlink()
    target.symlink_to(secret)


def test_a_symlinked_file_is_not_served_by_the_file_api(cast, run, secret):
    plant_file_symlink(cast, run, secret)

    whole = cast.reader.client.get(files_url(run, "outputs/model.bin"))
    part = cast.reader.client.get(files_url(run, "outputs/model.bin"), {"offset": 0})

    assert (whole.status_code, part.status_code) == (404, 404)
    assert whole.json()["error"]["field"] == "path"
    assert SECRET not in part.content


def test_a_symlinked_folder_is_not_followed_by_the_file_api(cast, run, secret):
    assert put(cast.contributor.client, run, "outputs/secret_key", b"x").status_code == 201
    folder = on_disk(run, "outputs")
    (folder / "secret_key").unlink()
    folder.rmdir()
    folder.symlink_to(secret.parent, target_is_directory=True)

    response = cast.reader.client.get(files_url(run, "outputs/secret_key"), {"offset": 0})

    assert response.status_code == 404
    assert SECRET not in response.content


def test_symlinks_are_left_out_of_the_list_the_zip_and_the_studio_views(cast, run, secret):
    put(cast.contributor.client, run, "outputs/ok.txt", b"fine")
    plant_file_symlink(cast, run, secret, "outputs/model.bin")
    cast.reader.client.force_login(cast.reader.user)
    page = f"/w/{cast.workspace.name}/runs/{run.run_id}/"

    listed = cast.reader.client.get(files_url(run)).json()["files"]
    archive = cast.reader.client.get(f"{page}download/")
    viewer = cast.reader.client.get(page, {"tab": "outputs", "file": "outputs/model.bin"})
    raw = cast.reader.client.get(f"{page}files/outputs/model.bin")
    tree = cast.reader.client.get(page, {"tab": "outputs"})

    assert [f["path"] for f in listed] == ["outputs/ok.txt"]
    with zipfile.ZipFile(io.BytesIO(b"".join(archive.streaming_content))) as zf:
        assert zf.namelist() == ["outputs/ok.txt"]
        assert SECRET not in zf.read("outputs/ok.txt")
    assert SECRET.decode().strip() not in viewer.content.decode()
    assert raw.status_code == 404
    assert b"model.bin" not in tree.content


def test_a_fifo_in_the_files_folder_is_neither_read_nor_waited_on(cast, run):
    put(cast.contributor.client, run, "logs/pipe", b"x")
    target = on_disk(run, "logs/pipe")
    target.unlink()
    os.mkfifo(target)

    def hung(signum, frame):
        raise AssertionError("the server blocked opening a fifo")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    try:
        response = cast.reader.client.get(files_url(run, "logs/pipe"), {"offset": 0})
        whole = cast.reader.client.get(files_url(run, "logs/pipe"))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

    assert (response.status_code, whole.status_code) == (404, 404)


def test_a_write_never_follows_a_symlinked_folder_out_of_the_tree(cast, run, secret):
    put(cast.contributor.client, run, "outputs/a.txt", b"x")
    folder = on_disk(run, "outputs")
    (folder / "a.txt").unlink()
    folder.rmdir()
    folder.symlink_to(secret.parent, target_is_directory=True)

    written = put(cast.contributor.client, run, "outputs/secret_key", b"overwritten")
    appended = append(cast.contributor.client, run, "outputs/secret_key", b"junk")

    assert (written.status_code, appended.status_code) == (409, 409)
    assert written.json()["error"]["field"] == "path"
    assert secret.read_bytes() == SECRET


def test_a_put_over_a_planted_file_symlink_replaces_the_link_not_its_target(cast, run, secret):
    plant_file_symlink(cast, run, secret)

    response = put(cast.contributor.client, run, "outputs/model.bin", b"new")

    assert response.status_code == 201
    assert secret.read_bytes() == SECRET
    assert not on_disk(run, "outputs/model.bin").is_symlink()
    assert stored(run, "outputs/model.bin") == b"new"


def test_deleting_all_files_of_a_run_removes_its_tree_and_never_follows_a_link(
    cast, run, make_run, secret
):
    other = make_run()
    put(cast.contributor.client, other, "keep.txt", b"other run")
    put(cast.contributor.client, run, "logs/a.txt", b"a")
    plant_file_symlink(cast, run, secret, "outputs/model.bin")
    on_disk(run, "linked").symlink_to(secret.parent, target_is_directory=True)

    deleted = services.run_files_delete_all(run=run)

    assert deleted == 2
    assert not RunFile.objects.filter(run=run).exists()
    assert not on_disk(run, "logs").parent.exists()
    assert secret.read_bytes() == SECRET
    assert stored(other, "keep.txt") == b"other run"


def test_the_worker_uploads_no_symlink_a_script_left_in_its_outputs(run, secret, tmp_path):
    from runs import execution

    outputs = tmp_path / "work" / "outputs"
    (outputs / "sub").mkdir(parents=True)
    (outputs / "sub" / "result.txt").write_bytes(b"result")
    (outputs / "key").symlink_to(secret)
    (outputs / "linked").symlink_to(secret.parent, target_is_directory=True)
    os.mkfifo(outputs / "pipe")
    worker = execution._Execution(run, worker_id="w-1", queue_name="local")
    worker.workdir = outputs.parent

    worker._upload_outputs()

    uploaded = RunFile.objects.filter(run=run, path__startswith="outputs/")
    assert list(uploaded.values_list("path", flat=True)) == ["outputs/sub/result.txt"]
    assert not any(SECRET in p.read_bytes() for p in on_disk(run, "").rglob("*") if p.is_file())


# --- Paths ------------------------------------------------------------------------------------


def test_paths_are_nfc_normalised_so_both_spellings_are_one_file(cast, run):
    decomposed = unicodedata.normalize("NFD", "café/résumé.txt")
    composed = unicodedata.normalize("NFC", "café/résumé.txt")

    first = put(cast.contributor.client, run, decomposed, b"one")
    second = put(cast.contributor.client, run, composed, b"two")

    assert first.json()["path"] == composed
    assert second.status_code == 201
    assert list(RunFile.objects.filter(run=run).values_list("path", flat=True)) == [composed]
    download = cast.reader.client.get(files_url(run, decomposed))
    assert b"".join(download.streaming_content) == b"two"
    listed = cast.reader.client.get(files_url(run), {"prefix": decomposed[:5]}).json()["files"]
    assert [f["path"] for f in listed] == [composed]


def test_a_name_over_255_bytes_is_a_400_naming_the_path(cast, run):
    name = "é" * 128  # 128 characters, 256 bytes in UTF-8

    response = put(cast.contributor.client, run, f"outputs/{name}", b"x")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "path"
    assert "255 bytes" in error["message"] and name in error["message"]
    assert not RunFile.objects.exists()


@pytest.mark.parametrize(
    ("first", "second", "write"),
    [
        ("a", "a/b", put),
        ("a", "a/b/c", append),
        ("a/b", "a", put),
        ("x/y/z", "x/y", append),
    ],
)
def test_a_file_where_a_folder_is_or_a_folder_where_a_file_is_is_a_409(
    cast, run, first, second, write
):
    put(cast.contributor.client, run, first, b"first")

    response = write(cast.contributor.client, run, second, b"second")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["field"] == "path" and repr(second) in error["message"]
    assert list(RunFile.objects.filter(run=run).values_list("path", flat=True)) == [first]
    assert stored(run, first) == b"first"


def test_a_read_far_past_the_end_is_empty_not_a_5xx(cast, run):
    put(cast.contributor.client, run, "log.txt", b"0123456789")

    response = cast.reader.client.get(files_url(run, "log.txt"), {"offset": 10**30})

    assert response.status_code == 200
    assert response.content == b""
    assert response["X-File-Size"] == "10"


# --- Limits, in the storage service every door calls -----------------------------------------


def test_an_oversized_stream_changes_nothing_for_put_and_append(cast, run, monkeypatch):
    put(cast.contributor.client, run, "model.bin", b"A" * 17_000)
    append(cast.contributor.client, run, "log.txt", b"line 1\n")
    monkeypatch.setattr(limits, "MAX_FILE_UPLOAD_BYTES", 20_000)

    def body():  # no length known up front: the limit is checked while it streams
        for _ in range(30):
            yield b"B" * 1_000

    with pytest.raises(TooLarge):
        services.run_file_write(run=run, path="model.bin", stream=body())
    with pytest.raises(TooLarge):
        services.run_file_write(run=run, path="log.txt", stream=body(), append=True)

    assert stored(run, "model.bin") == b"A" * 17_000
    assert stored(run, "log.txt") == b"line 1\n"
    assert RunFile.objects.get(run=run, path="model.bin").size == 17_000
    assert not list(Path(default_storage.path(storage.INCOMING)).iterdir())


def test_an_announced_size_over_the_limit_is_a_413_that_changes_nothing(cast, run, monkeypatch):
    put(cast.contributor.client, run, "model.bin", b"A" * 17_000)
    monkeypatch.setattr(limits, "MAX_FILE_UPLOAD_BYTES", 20_000)

    replaced = put(cast.contributor.client, run, "model.bin", b"B" * 20_001)
    appended = append(cast.contributor.client, run, "model.bin", b"B" * 20_001)

    assert (replaced.status_code, appended.status_code) == (413, 413)
    assert "20000" in replaced.json()["error"]["message"]
    assert stored(run, "model.bin") == b"A" * 17_000


def test_a_body_shorter_than_announced_changes_nothing(cast, run):
    put(cast.contributor.client, run, "model.bin", b"A" * 17_000)

    with pytest.raises(InvalidInput, match="700 of the 1000000 bytes"):
        services.run_file_write(
            run=run, path="model.bin", stream=io.BytesIO(b"B" * 700), size=1_000_000
        )

    assert stored(run, "model.bin") == b"A" * 17_000


def test_a_stored_file_has_the_storages_usual_mode_not_the_temporary_files_0600(cast, run):
    put(cast.contributor.client, run, "outputs/model.bin", b"x")

    assert on_disk(run, "outputs/model.bin").stat().st_mode & 0o777 == 0o644


def test_an_append_never_lands_on_a_stray_file_the_index_does_not_know(cast, run):
    stray = on_disk(run, "logs/out.txt")
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"left over from elsewhere\n")

    response = append(cast.contributor.client, run, "logs/out.txt", b"line 1\n")

    assert response.json() == {"path": "logs/out.txt", "size": 7}
    assert stored(run, "logs/out.txt") == b"line 1\n"


def test_temporary_files_a_killed_upload_left_behind_are_swept(cast, run):
    put(cast.contributor.client, run, "first.txt", b"x")
    incoming = Path(default_storage.path(storage.INCOMING))
    stale, fresh = incoming / "upload-stale", incoming / "upload-fresh"
    stale.write_bytes(b"half of a body")
    fresh.write_bytes(b"an upload in flight")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(stale, (two_days_ago, two_days_ago))

    put(cast.contributor.client, run, "second.txt", b"y")

    assert sorted(p.name for p in incoming.iterdir()) == ["upload-fresh"]


# --- Snapshots --------------------------------------------------------------------------------


def zip_of(*members: tuple[str, bytes, int]) -> io.BytesIO:
    """(name, data, unix mode) members; mode 0o120777 makes a symlink whose target is data."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = mode << 16
            zf.writestr(info, data)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize(
    ("members", "words"),
    [
        ((("train.py", b"print(1)", 0o100644), ("key", b"/etc/passwd", 0o120777)), "symlink"),
        ((("train.py", b"print(1)", 0o100644), ("fifo", b"", 0o010644)), "special file"),
        ((("a", b"file", 0o100644), ("a/b.py", b"x", 0o100644)), "both a file and a folder"),
        ((("../escape.py", b"x", 0o100644),), "'..'"),
    ],
)
def test_a_snapshot_with_a_symlink_a_special_file_a_clash_or_dotdot_is_refused(members, words):
    with pytest.raises(InvalidInput) as refused:
        snapshot.snapshot_check(archive=zip_of(*members))

    assert words in refused.value.message
    assert refused.value.field == "snapshot"


def test_a_snapshot_member_with_a_bad_crc_stores_nothing(settings):
    archive = zip_of(
        ("train.py", b"print('hello')\n", 0o100644), ("data.txt", b"A" * 500, 0o100644)
    )
    damaged = bytearray(archive.getvalue())
    at = damaged.index(b"A" * 500)
    damaged[at + 100] = ord("B")  # stored uncompressed: the size holds, the CRC does not

    with pytest.raises(InvalidInput) as refused:
        with snapshot.snapshot_staged(archive=io.BytesIO(bytes(damaged))):
            pass

    assert refused.value.field == "snapshot" and "data.txt" in refused.value.message
    incoming = Path(settings.STORAGES["default"]["OPTIONS"]["location"]) / storage.INCOMING
    assert not list(incoming.iterdir())


# --- The SDK ----------------------------------------------------------------------------------


def test_the_sdk_uploads_every_byte_of_a_stream_that_cannot_seek(sdk_server, run):
    from runs.sdk import Run as SdkRun
    from runs.sdk import Workspace

    content = bytes(range(256)) * 4_000
    read_end, write_end = os.pipe()

    def feed():  # a pipe holds 64 KiB: write from a thread, which owns the write end
        with os.fdopen(write_end, "wb") as w, contextlib.suppress(BrokenPipeError):
            w.write(content)

    threading.Thread(target=feed, daemon=True).start()
    sdk_run = SdkRun.get(Workspace.from_config(), run.run_id)
    with os.fdopen(read_end, "rb") as pipe:  # closed on failure too, so the writer stops
        from_pipe = sdk_run.upload_file("outputs/piped.bin", pipe)
    from_generator = sdk_run.upload_file("outputs/gen.bin", iter([b"ab", b"", b"cd"]))
    empty = sdk_run.upload_file("outputs/empty.bin", io.BytesIO(b""))
    half_read = io.BytesIO(b"0123456789")
    half_read.read(4)
    tail = sdk_run.upload_file("outputs/tail.bin", half_read)

    assert from_pipe["size"] == len(content) and stored(run, "outputs/piped.bin") == content
    assert from_generator["size"] == 4 and stored(run, "outputs/gen.bin") == b"abcd"
    assert empty["size"] == 0
    assert tail["size"] == 6 and stored(run, "outputs/tail.bin") == b"456789"


def test_a_spooled_empty_file_is_sent_with_a_length_and_stored(sdk_server, run, tmp_path):
    from runs.sdk import spool
    from runs.sdk.client import Client

    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    client = Client(sdk_server.url, sdk_server.token)

    answer = spool.send_op(client, run.run_id, {"op": "file", "path": "e.txt", "staged": empty})

    assert answer == {"path": "e.txt", "size": 0}
    assert RunFile.objects.get(run=run, path="e.txt").size == 0


def test_a_chunked_body_on_a_server_that_cannot_decode_it_is_a_411(live_server, cast, run):
    put(cast.contributor.client, run, "notes.txt", b"keep me")
    host, port = live_server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=20)

    conn.request(
        "PUT",
        files_url(run, "notes.txt"),
        body=iter([b"new ", b"content"]),
        headers={"Authorization": f"Token {cast.contributor.token}"},
        encode_chunked=True,
    )
    response = conn.getresponse()
    error = json.loads(response.read())["error"]

    assert response.status == 411
    assert error["field"] == "body" and "Content-Length" in error["message"]
    assert stored(run, "notes.txt") == b"keep me"


# --- Through a real gunicorn, as `runstudio serve` runs it ------------------------------------


class Gunicorn:
    def __init__(self, data_dir: Path, log: Path) -> None:
        self.port = free_port()
        # Its run files land where this test's storage is (tests/conftest.py: tmp_path/files).
        env = database_env(data_dir)
        command = gunicorn_command(self.port, "--workers", "2", "--threads", "4")
        command += ["--worker-class", "gthread", "--no-control-socket"]
        self.log = log
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until_served(self.url, self.process, log=log)

    def connect(self, timeout: float = 30) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def gunicorn(transactional_db, settings, tmp_path):
    files = Path(settings.STORAGES["default"]["OPTIONS"]["location"])
    server = Gunicorn(files.parent, tmp_path / "gunicorn.log")
    yield server
    server.stop()


def auth(cast) -> dict:
    return {"Authorization": f"Token {cast.contributor.token}"}


def send_cut_off(server: Gunicorn, cast, method: str, url: str, announced: int, sent: bytes):
    """Announces `announced` bytes, sends `sent`, and hangs up."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        head = (
            f"{method} {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Token {cast.contributor.token}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {announced}\r\n\r\n"
        )
        s.sendall(head.encode() + sent)
    time.sleep(1)  # let the server notice the hang-up and clean up


def test_a_chunked_put_through_gunicorn_stores_the_whole_body(gunicorn, cast, run):
    put(cast.contributor.client, run, "notes.txt", b"old content that must be replaced")
    content = [os.urandom(50_000) for _ in range(20)]
    conn = gunicorn.connect()

    conn.request(
        "PUT",
        files_url(run, "notes.txt"),
        body=iter(content),
        headers=auth(cast),
        encode_chunked=True,
    )
    response = conn.getresponse()
    answer = json.loads(response.read())

    assert response.status == 201, answer
    assert answer["size"] == 1_000_000
    assert stored(run, "notes.txt") == b"".join(content)
    assert RunFile.objects.get(run=run, path="notes.txt").size == 1_000_000


def test_a_chunked_append_through_gunicorn_appends_the_whole_body(gunicorn, cast, run):
    append(cast.contributor.client, run, "logs/out.txt", b"line 1\n")
    conn = gunicorn.connect()

    conn.request(
        "POST",
        files_url(run, "logs/out.txt") + "?append=1",
        body=iter([b"line 2\n", b"line 3\n"]),
        headers=auth(cast),
        encode_chunked=True,
    )
    response = conn.getresponse()

    assert response.status == 200
    assert json.loads(response.read())["size"] == 21
    assert stored(run, "logs/out.txt") == b"line 1\nline 2\nline 3\n"


def test_a_body_cut_off_mid_way_through_gunicorn_changes_nothing(gunicorn, cast, run):
    original = os.urandom(17_000)
    put(cast.contributor.client, run, "model.bin", original)
    append(cast.contributor.client, run, "logs/out.txt", b"line 1\n")

    send_cut_off(gunicorn, cast, "PUT", files_url(run, "model.bin"), 1_000_000, b"x" * 700)
    send_cut_off(
        gunicorn,
        cast,
        "POST",
        files_url(run, "logs/out.txt") + "?append=1",
        1_000_000,
        b"junk" * 175,
    )

    assert stored(run, "model.bin") == original
    assert RunFile.objects.get(run=run, path="model.bin").size == 17_000
    assert stored(run, "logs/out.txt") == b"line 1\n"
    assert RunFile.objects.get(run=run, path="logs/out.txt").size == 7
    assert not list(Path(default_storage.path(storage.INCOMING)).iterdir())


def test_a_chunked_body_cut_off_mid_way_through_gunicorn_changes_nothing(gunicorn, cast, run):
    original = os.urandom(17_000)
    put(cast.contributor.client, run, "model.bin", original)

    with socket.create_connection(("127.0.0.1", gunicorn.port), timeout=10) as s:
        s.sendall(
            f"PUT {files_url(run, 'model.bin')} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Token {cast.contributor.token}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
            "2bc\r\n".encode()
            + b"y" * 700
            + b"\r\n"  # one chunk of 700, then no last chunk
        )
    time.sleep(1)

    assert stored(run, "model.bin") == original
    assert RunFile.objects.get(run=run, path="model.bin").size == 17_000


def _metric_batches(server: Gunicorn, cast, run, *, count: int, results: list) -> None:
    session = requests.Session()
    for i in range(count):
        started = time.monotonic()
        response = session.post(
            f"{server.url}/api/v1/runs/{run.run_id}/metrics/batch",
            json={"metrics": [{"name": "loss", "values": [float(i)] * 100}]},
            headers=auth(cast),
            timeout=25,
        )
        results.append((response.status_code, time.monotonic() - started, time.monotonic()))


def test_metric_batches_are_stored_while_a_large_upload_is_still_streaming(gunicorn, cast, run):
    """The upload pauses half way until the batches are done: a server that held the
    database's write lock while the body streams could never answer them."""
    half = os.urandom(1024 * 1024) * 25
    batches_done = threading.Event()
    upload: dict = {}

    def upload_in_two_halves():
        conn = gunicorn.connect(timeout=60)
        conn.putrequest("PUT", files_url(run, "outputs/big.bin"))
        conn.putheader("Authorization", f"Token {cast.contributor.token}")
        conn.putheader("Content-Length", str(2 * len(half)))
        conn.endheaders()
        conn.send(half)
        batches_done.wait(timeout=40)
        conn.send(half)
        response = conn.getresponse()
        upload.update(status=response.status, body=json.loads(response.read()))

    uploader = threading.Thread(target=upload_in_two_halves, daemon=True)
    uploader.start()
    time.sleep(1)  # the first half is on its way
    results: list = []
    try:
        _metric_batches(gunicorn, cast, run, count=5, results=results)
    finally:
        batches_done.set()
    uploader.join(timeout=60)

    assert [status for status, _, _ in results] == [200] * 5
    assert upload["status"] == 201 and upload["body"]["size"] == 2 * len(half)
    assert on_disk(run, "outputs/big.bin").stat().st_size == 2 * len(half)


def test_a_100_mb_upload_alongside_metric_ingest_loses_no_batch(gunicorn, cast, run):
    content = os.urandom(1024 * 1024) * 100
    results: list = []
    stop = threading.Event()

    def ingest():
        while not stop.is_set():
            _metric_batches(gunicorn, cast, run, count=1, results=results)

    ingester = threading.Thread(target=ingest, daemon=True)
    ingester.start()
    started = time.monotonic()
    conn = gunicorn.connect(timeout=120)
    conn.request("PUT", files_url(run, "outputs/100mb.bin"), body=content, headers=auth(cast))
    response = conn.getresponse()
    answer = json.loads(response.read())
    elapsed = time.monotonic() - started
    stop.set()
    ingester.join(timeout=30)

    assert response.status == 201 and answer["size"] == len(content)
    assert results and all(status == 200 for status, _, _ in results)
    slowest = max(seconds for _, seconds, _ in results)
    print(
        f"\n100 MB upload with ingest alongside: {elapsed:.2f} s; {len(results)} metric "
        f"batches meanwhile, slowest {slowest:.3f} s; load {os.getloadavg()[0]:.2f}"
    )


def test_concurrent_appends_through_gunicorn_keep_every_line_and_the_right_size(
    gunicorn, cast, run
):
    def writer(n: int) -> None:
        session = requests.Session()
        for i in range(10):
            response = session.post(
                f"{gunicorn.url}{files_url(run, 'logs/out.txt')}?append=1",
                data=f"writer {n} line {i}\n".encode(),
                headers=auth(cast),
                timeout=30,
            )
            assert response.status_code == 200, response.text

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    lines = stored(run, "logs/out.txt").decode().splitlines()
    assert sorted(lines) == sorted(f"writer {n} line {i}" for n in range(6) for i in range(10))
    assert RunFile.objects.get(run=run, path="logs/out.txt").size == len(
        stored(run, "logs/out.txt")
    )
