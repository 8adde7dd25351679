"""`runstudio serve` and `runstudio worker` say at start when run files cannot be written to
the bucket. Found by following the README's team setup with a bucket not made yet (or keys
without write access): `serve` started quietly and the first file upload answered 500, which
the SDK reported as "The server failed; the error is logged."."""

import os
import subprocess
import sys

import pytest

from runs import serving
from tests.conftest import use_s3_files
from tests.processes import ROOT, database_env

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_writable_bucket_needs_no_warning_and_keeps_no_probe(settings, seaweedfs):
    prefix = f"probe/{os.getpid()}"
    use_s3_files(settings, seaweedfs, prefix)

    assert serving.bucket_warning() is None
    listed = seaweedfs.client().list_objects_v2(Bucket="runstudio-test", Prefix=prefix)
    assert listed.get("KeyCount", 0) == 0


def test_keys_the_bucket_refuses_are_named_at_start(settings, seaweedfs):
    use_s3_files(settings, seaweedfs, f"probe/{os.getpid()}")
    settings.STORAGES["default"]["OPTIONS"]["secret_key"] = "not-the-secret"

    warning = serving.bucket_warning()

    assert warning is not None and warning.startswith("WARNING: run files cannot be written")
    assert "Make the bucket" in warning and "AWS_ACCESS_KEY_ID" in warning


def test_files_in_a_folder_need_no_bucket_check():
    assert serving.bucket_warning() is None


def test_a_worker_with_keys_the_bucket_refuses_says_so(seaweedfs, tmp_path):
    env = database_env(tmp_path)
    env.update(seaweedfs.env(f"s3://runstudio-test/probe/{os.getpid()}"))
    env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"

    done = subprocess.run(  # noqa: S603 - our own management command
        [sys.executable, "-m", "django", "runstudio_worker", "--queue-name", "local"]
        + ["--no-reload", "--batch", "--no-startup-delay"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    said = done.stdout + done.stderr
    assert f"run files cannot be written to s3://runstudio-test/probe/{os.getpid()}" in said


def test_an_upload_the_bucket_refuses_is_a_503_json_error_not_a_crash(
    settings, seaweedfs, cast, make_run
):
    use_s3_files(settings, seaweedfs, f"probe/{os.getpid()}")
    settings.STORAGES["default"]["OPTIONS"]["secret_key"] = "not-the-secret"
    run = make_run()

    response = cast.contributor.client.put(
        f"/api/v1/runs/{run.run_id}/files/notes.txt",
        data=b"hello",
        content_type="application/octet-stream",
    )

    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "storage_unavailable"
    assert "not-the-secret" not in response.content.decode()
