"""scripts/system-packages, the first step of scripts/test (and of scripts/bootstrap, for
bubblewrap): on a machine without chromium, the PostgreSQL server or bubblewrap it installs them
as root, or stops at once with the one command that does.

The machine is made to look fresh by a PATH without those programs and RUNSTUDIO_PG_ROOT
pointing at an empty folder; the real install is not run here (it would change the machine):
as root, the dry run says what it would install."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "system-packages"
ALL = ["chromium", "postgresql", "bubblewrap"]


@pytest.fixture
def tmp_path():
    """A folder the unprivileged user can read too (pytest's own is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="runstudio-packages-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def _fresh_machine(tmp_path: Path, *, keep: tuple[str, ...] = ()) -> dict[str, str]:
    """A PATH with the basics (and apt-get, when the machine has it) but none of the packages,
    except the programs named in ``keep``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sed", "apt-get", *keep):
        found = shutil.which(name)
        if found:
            (bin_dir / name).symlink_to(found)
    (tmp_path / "no-postgresql").mkdir()
    return {"PATH": str(bin_dir), "RUNSTUDIO_PG_ROOT": str(tmp_path / "no-postgresql")}


def _run(args: list[str], env: dict[str, str], *, as_nobody: bool = False):
    command = ["/bin/bash", str(SCRIPT), *args]
    if as_nobody and os.getuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("needs setpriv to drop root")
        command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)


def test_without_root_a_missing_package_stops_at_once_with_the_one_command_to_run(tmp_path):
    env = _fresh_machine(tmp_path)
    done = _run(ALL, env, as_nobody=True)
    assert done.returncode == 1
    if shutil.which("apt-get"):
        assert "sudo apt-get install -y chromium postgresql bubblewrap" in done.stderr
    else:
        assert "chromium postgresql bubblewrap" in done.stderr


def test_bootstraps_optional_check_warns_and_goes_on(tmp_path):
    done = _run(["--optional", "bubblewrap"], _fresh_machine(tmp_path), as_nobody=True)
    assert done.returncode == 0
    assert "bubblewrap" in done.stderr and "recommended" in done.stderr


@pytest.mark.skipif(os.getuid() != 0 or not shutil.which("apt-get"), reason="root with apt-get")
def test_as_root_it_installs_every_missing_package_with_one_apt_get(tmp_path):
    done = _run(["--dry-run", *ALL], _fresh_machine(tmp_path))
    assert done.returncode == 0
    assert "would run: apt-get install -y chromium postgresql bubblewrap" in done.stderr


def test_only_the_missing_packages_are_named(tmp_path):
    if not shutil.which("bwrap"):
        pytest.skip("needs bubblewrap on this machine")
    done = _run(ALL, _fresh_machine(tmp_path, keep=("bwrap",)), as_nobody=True)
    assert done.returncode == 1
    assert "chromium postgresql." in done.stderr and "bubblewrap" not in done.stderr


def test_a_machine_with_everything_says_nothing(tmp_path):
    if not (
        shutil.which("chromium") and shutil.which("bwrap") and Path("/usr/lib/postgresql").is_dir()
    ):
        pytest.skip("needs chromium, bubblewrap and PostgreSQL installed")
    env = _fresh_machine(tmp_path, keep=("chromium", "bwrap"))
    env["RUNSTUDIO_PG_ROOT"] = "/usr/lib/postgresql"
    done = _run(ALL, env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_an_unknown_package_name_is_a_usage_error(tmp_path):
    done = _run(["chromium-browser"], _fresh_machine(tmp_path))
    assert done.returncode == 2 and "unknown package 'chromium-browser'" in done.stderr
