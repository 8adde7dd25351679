"""A submitted snapshot never carries a studio's data directory or a credentials folder.

Found by following the README literally: the quick start serves from the repository root
(`./runstudio-data`), attaches that same folder and submits `source_directory="."`, and the
run's `snapshot/` then held `runstudio-data/db.sqlite3` (every user's password hash, every
workspace's runs), `runstudio-data/secret_key` and every run file of every workspace — readable
by anyone who may read the run. A RUNSTUDIO_HOME inside the folder sent `credentials.json`
(the CLI's API token) the same way."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from runs.sdk import Experiment, ScriptRunConfig, Workspace
from runs.sdk.submit import pack_snapshot, snapshot_files
from tests.processes import ROOT


def _tree(root: Path, names: list[str]) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")


def _a_real_data_dir(path: Path) -> None:
    """What studio/settings.py and a migrate leave in a data directory."""
    subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", "migrate", "-v", "0"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "RUNSTUDIO_DATA_DIR": str(path)},
        check=True,
        timeout=120,
    )
    assert (path / "secret_key").is_file() and (path / "db.sqlite3").is_file()


def test_the_studio_data_directory_in_the_source_folder_stays_out_of_the_snapshot(tmp_path):
    _tree(tmp_path, ["train.py", "runstudio-data/files/runs/other_1_x/outputs/secret.txt"])
    _a_real_data_dir(tmp_path / "runstudio-data")
    _a_real_data_dir(tmp_path / "state")  # any name: it is known by what it holds

    assert [rel for _, rel in snapshot_files(tmp_path)] == ["train.py"]
    with zipfile.ZipFile(pack_snapshot(tmp_path)) as zf:
        assert zf.namelist() == ["train.py"]


def test_the_folders_runstudio_home_and_data_dir_name_stay_out(tmp_path, monkeypatch):
    _tree(tmp_path, ["train.py", "home/credentials.json", "data/notes.txt", "pkg/m.py"])
    monkeypatch.setenv("RUNSTUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RUNSTUDIO_DATA_DIR", str(tmp_path / "data"))

    assert [rel for _, rel in snapshot_files(tmp_path)] == ["train.py", "pkg/m.py"]


def test_a_project_file_named_like_a_marker_is_still_sent(tmp_path):
    # Only a folder with a secret_key next to a database, files or static counts.
    _tree(tmp_path, ["train.py", "conf/secret_key", "static/app.css", "files/a.csv"])

    assert sorted(rel for _, rel in snapshot_files(tmp_path)) == [
        "conf/secret_key",
        "files/a.csv",
        "static/app.css",
        "train.py",
    ]


@pytest.mark.django_db(transaction=True)
def test_a_submitted_run_from_the_quick_start_folder_holds_no_studio_data(sdk_server, tmp_path):
    _tree(tmp_path, ["train.py"])
    _a_real_data_dir(tmp_path / "runstudio-data")
    exp = Experiment(Workspace(sdk_server.workspace), "sweep")

    run = exp.submit(ScriptRunConfig(source_directory=tmp_path, script="train.py"))

    assert run.get_file_names() == ["snapshot/train.py"], json.dumps(run.get_file_names())
