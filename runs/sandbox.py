"""The sandbox a worker runs submitted scripts in: bubblewrap (`bwrap`, Debian's `bubblewrap`).

A script is untrusted code. Inside the sandbox it sees:

- read-only: /usr (and the /bin, /lib… links into it), a few files of /etc that name
  resolution, TLS and the dynamic linker need, the Python it runs on (the venv and its base
  installation) and the `runs` package (so `from runs.sdk import Run` works) — never the
  repository around it, the data directory, the database or the secret key;
- read-write: its own working directory (the run's snapshot, at WORKDIR) and a private /tmp;
- its own /proc (a new PID namespace: only its own processes), /dev (the harmless nodes),
  IPC and UTS namespaces, a new session (no terminal to inject into);
- the network, shared with the host, so the studio's URL on 127.0.0.1 works;
- an allow-listed environment (sandbox_environment): the run's RUNSTUDIO_* variables with a
  token scoped to the run, PATH, HOME, TMPDIR, LANG — nothing inherited from the worker.

When the worker runs as root, the script runs as an unprivileged user with no capabilities:
the `runstudio-run` account when it exists (scripts/bootstrap creates it), else `nobody`.
bwrap sets up the mounts as root, then `setpriv` drops to that user before Python starts, and
the working directory is handed to that user. A worker that is not root runs scripts as
itself, in a user namespace bwrap makes.

RUNSTUDIO_SANDBOX picks what happens when bwrap cannot be used (sandbox_refusal):
`auto` (the default) sandboxes when it can; without bwrap it runs scripts unsandboxed on a
single-user server only, loudly, and fails runs once the server has a second active user.
`required` refuses to start a worker (and fails runs) without bwrap. `off` never sandboxes,
loudly. docs/architecture.md, "The sandbox", says why.
"""

import functools
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured

AUTO, REQUIRED, OFF = "auto", "required", "off"
MODES = (AUTO, REQUIRED, OFF)

WORKDIR = "/workdir"  # where the run's working directory appears inside the sandbox
SCRATCH = "/tmp"  # private to the run: a fresh tmpfs
RUN_USER = "runstudio-run"  # the account scripts run as when the worker is root
NOBODY = 65534  # Debian's nobody / nogroup: the fallback when RUN_USER does not exist
INSTALL_HINT = "install bubblewrap: `apt-get install -y bubblewrap` (Debian/Ubuntu)"

# The pieces of /etc a Python script needs (DNS, TLS roots, the linker's cache, time zone).
# Everything else there — machine-id, the host's accounts, ssh keys, service configs — stays out.
_ETC = (
    "resolv.conf",
    "hosts",
    "host.conf",
    "nsswitch.conf",
    "gai.conf",
    "localtime",
    "timezone",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "alternatives",
    "protocols",
    "services",
    "mime.types",
)
_TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# The only variables a script inherits from the worker's environment (all harmless).
_PASS_ENV = ("LANG", "LC_ALL", "TZ")
_PATH = "/usr/local/bin:/usr/bin:/bin"


class SandboxStatus(NamedTuple):
    isolated: bool
    reason: str


def sandbox_mode() -> str:
    mode = (getattr(settings, "RUNSTUDIO_SANDBOX", "") or AUTO).strip().lower()
    if mode not in MODES:
        raise ImproperlyConfigured(
            f"RUNSTUDIO_SANDBOX={mode!r}: must be one of {', '.join(MODES)}."
        )
    return mode


def _bwrap() -> str | None:
    name = getattr(settings, "RUNSTUDIO_BWRAP", "") or "bwrap"
    return shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + "/usr/bin")


def run_as() -> tuple[int, int]:
    """The (uid, gid) a sandboxed script runs as."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    try:
        account = pwd.getpwnam(RUN_USER)
    except KeyError:
        return NOBODY, NOBODY
    return account.pw_uid, account.pw_gid


@functools.cache
def _probe(bwrap: str, euid: int) -> SandboxStatus:
    """Runs the interpreter through the real sandbox once: bwrap may be installed but unusable
    (no user namespaces, a container that forbids mounts)."""
    command = SandboxedCommand.build(
        command=[sys.executable, "-S", "-c", "import os; print(os.getuid())"],
        workdir=Path(tempfile.mkdtemp(prefix="runstudio-probe-")),
        env={"PATH": _PATH},
        bwrap=bwrap,
    )
    try:
        done = subprocess.run(  # noqa: S603 - our own fixed command
            command.argv,
            env=command.env,
            pass_fds=command.pass_fds,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return SandboxStatus(False, f"{bwrap} could not start: {e}")
    finally:
        command.close()
        shutil.rmtree(command.workdir, ignore_errors=True)
    if done.returncode != 0:
        error = (done.stderr.strip().splitlines() or ["no error output"])[-1]
        return SandboxStatus(False, f"{bwrap} is installed but does not work here: {error}")
    uid = done.stdout.strip()
    who = f"uid {uid}" + (f" ({RUN_USER})" if euid == 0 and _has_run_user() else "")
    return SandboxStatus(True, f"bubblewrap ({bwrap}); scripts run as {who}")


def _has_run_user() -> bool:
    try:
        pwd.getpwnam(RUN_USER)
    except KeyError:
        return False
    return True


def sandbox_status() -> SandboxStatus:
    """Whether this process can run scripts isolated, and why (or why not)."""
    if sandbox_mode() == OFF:
        return SandboxStatus(False, "RUNSTUDIO_SANDBOX=off: scripts run unsandboxed")
    if not sys.platform.startswith("linux"):
        return SandboxStatus(False, f"bubblewrap needs Linux, this is {sys.platform}")
    bwrap = _bwrap()
    if bwrap is None:
        return SandboxStatus(False, f"bubblewrap (bwrap) is not installed; {INSTALL_HINT}")
    if os.geteuid() == 0 and shutil.which("setpriv", path=_PATH) is None:
        return SandboxStatus(False, "setpriv (util-linux) is missing: cannot drop root")
    return _probe(bwrap, os.geteuid())


def _multi_user() -> bool:
    return get_user_model().objects.filter(is_active=True).count() > 1


def sandbox_refusal() -> str | None:
    """Why a run must not execute here, or None when it may (sandboxed, or allowed not to be).

    Asked for every run, not once at start: a server may gain its second user while a
    worker is up."""
    mode = sandbox_mode()
    if mode == OFF:
        return None
    status = sandbox_status()
    if status.isolated:
        return None
    if mode == REQUIRED:
        return f"RUNSTUDIO_SANDBOX=required, but {status.reason}."
    if _multi_user():
        return (
            f"This server has more than one user and {status.reason}: submitted scripts "
            "are not run unsandboxed here. Install bubblewrap on the worker's machine, or set "
            "RUNSTUDIO_SANDBOX=off to run them with the worker's rights anyway."
        )
    return None


def sandbox_banner() -> str:
    """What a worker prints at start."""
    mode = sandbox_mode()
    status = sandbox_status()
    if status.isolated:
        return f"sandbox: on — {status.reason} (RUNSTUDIO_SANDBOX={mode})"
    rule = "!" * 78
    if mode == OFF:
        what = "Submitted scripts run UNSANDBOXED with this worker's rights, files and network."
    elif mode == REQUIRED:
        what = "RUNSTUDIO_SANDBOX=required: this worker will not start."
    elif _multi_user():
        what = (
            "This server has more than one user: submitted runs FAIL here until bubblewrap "
            "is installed (or RUNSTUDIO_SANDBOX=off runs them unsandboxed)."
        )
    else:
        what = (
            "Submitted scripts run UNSANDBOXED while this server has a single user; runs "
            "fail once it has more."
        )
    return f"{rule}\nsandbox: OFF — NOT ISOLATED: {status.reason}.\n{what}\n{rule}"


def sandbox_environment(
    *, run_vars: dict[str, str], home: str, tmpdir: str | None
) -> dict[str, str]:
    """The script's whole environment: an allow-list, not the worker's minus a deny-list."""
    env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
    env.setdefault("LANG", "C.UTF-8")
    env.update(
        PATH=str(Path(sys.executable).parent) + os.pathsep + _PATH,
        HOME=home,
        USER="runstudio",
        LOGNAME="runstudio",
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",  # the code it imports is read-only
    )
    if tmpdir:
        env["TMPDIR"] = tmpdir
    env.update(run_vars)
    return env


def sandbox_prepare_workdir(*, workdir: Path) -> None:
    """Hands the working directory to the user the script runs as (when that is not us)."""
    uid, gid = run_as()
    if uid == os.geteuid():
        return
    os.chown(workdir, uid, gid)
    for root, dirs, files in os.walk(workdir):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


def _inside(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _secrets() -> list[Path]:
    """What must never be visible, even through a bound parent (say a data directory inside
    the checkout, or under the same /tmp as the venv): the data directory, the database file's
    folder, the run files, the secret key, and where other runs' working directories live."""
    found = [Path(settings.DATA_DIR)]
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3") and str(database["NAME"]) != ":memory:":
        found.append(Path(database["NAME"]).parent)
        test_name = database.get("TEST", {}).get("NAME")
        if test_name:
            found.append(Path(test_name).parent)
    # The run files' folder. Not the storage's `location` option as such: on object storage it
    # is a key prefix (s3://bucket/runs), which taken as ./runs covered the `runs` package.
    from runs.storage.local import storage_root

    root = storage_root()
    found.append(Path(root) if root is not None else Path(settings.FILES_DIR))
    found.append(Path(settings.DATA_DIR) / "secret_key")
    found.append(Path(settings.RUNSTUDIO_WORK_DIR or tempfile.gettempdir()))
    return [Path(os.path.realpath(p)) for p in found]


@dataclass
class SandboxedCommand:
    """A command wrapped in bwrap: argv, its environment and the fds bwrap reads."""

    argv: list[str]
    env: dict[str, str]
    workdir: Path
    pass_fds: tuple[int, ...] = ()
    _fds: list[int] = field(default_factory=list)

    @classmethod
    def build(
        cls, *, command: list[str], workdir: Path, env: dict[str, str], bwrap: str
    ) -> "SandboxedCommand":
        uid, gid = run_as()
        root = os.geteuid() == 0
        args = [bwrap, "--die-with-parent", "--new-session"]
        args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        args += ["--hostname", "runstudio-run"]
        # /tmp first: a bound source that lives under /tmp (a venv, say) is mounted over it.
        args += ["--perms", "1777", "--tmpfs", SCRATCH]
        made: set[str] = {"/", SCRATCH}

        def parents(dest: str) -> list[str]:
            out = []
            for parent in reversed(Path(dest).parents):
                p = str(parent)
                if p not in made and not any(_inside(parent, Path(m)) for m in bound):
                    made.add(p)
                    out += ["--perms", "0755", "--dir", p]
            return out

        bound: list[str] = []
        sources = ["/usr", sys.base_prefix, sys.prefix, str(Path(__file__).resolve().parent)]
        sources.append(str(Path(os.path.realpath(sys.executable)).parent.parent))
        for top in _TOP_LEVEL:
            path = Path("/", top)
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                sources.append(str(path))
        binds = []
        for source in sorted({os.path.abspath(s) for s in sources}, key=len):
            if any(_inside(Path(source), Path(b)) for b in binds) or not Path(source).exists():
                continue
            binds.append(source)
        for source in binds:
            args += parents(source)
            args += ["--ro-bind", source, source]
            bound.append(source)
        for name in _ETC:
            path = Path("/etc", name)
            if path.exists():
                args += parents(str(path)) + ["--ro-bind", str(path), str(path)]
        fds: list[int] = []
        for name, text in _accounts(uid, gid).items():
            read, write = os.pipe()
            os.write(write, text.encode())
            os.close(write)
            fds.append(read)
            args += ["--perms", "0644", "--ro-bind-data", str(read), f"/etc/{name}"]
        real_binds = [Path(os.path.realpath(b)) for b in binds]
        for secret in _secrets():
            if any(_inside(secret, b) for b in real_binds):
                # Hidden by an empty, read-only tmpfs (a file: /dev/null over it).
                if secret.is_dir():
                    args += ["--perms", "0000", "--tmpfs", str(secret), "--remount-ro", str(secret)]
                elif secret.exists():
                    args += ["--ro-bind", "/dev/null", str(secret)]
        args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm"]
        args += ["--bind", str(workdir), WORKDIR, "--chdir", WORKDIR]
        if root:
            # bwrap mounts as root; setpriv then drops to the run user with no capabilities
            # and no way back (no-new-privs) before the script starts.
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--"]
            args += [shutil.which("setpriv", path=_PATH) or "/usr/bin/setpriv"]
            args += [f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
            args += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
        else:
            args += ["--"]
        # The environment goes to bwrap as its own environment, not as --setenv arguments:
        # a command line is readable by every user of the machine (ps), an environment not.
        return cls(argv=args + command, env=env, workdir=workdir, pass_fds=tuple(fds), _fds=fds)

    def close(self) -> None:
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()


def _accounts(uid: int, gid: int) -> dict[str, str]:
    """A passwd and group naming only the script's user: the host's accounts stay out."""
    passwd = f"runstudio:x:{uid}:{gid}:Runstudio run:{SCRATCH}:/usr/sbin/nologin\n"
    group = f"runstudio:x:{gid}:\n"
    if uid != 0:
        passwd = "root:x:0:0:root:/root:/usr/sbin/nologin\n" + passwd
        group = "root:x:0:\n" + group
    return {"passwd": passwd, "group": group}


def sandbox_command(*, command: list[str], workdir: Path, env: dict[str, str]) -> SandboxedCommand:
    """`command` wrapped to run in the sandbox with `workdir` as its working directory. The
    caller passes argv, env and pass_fds to Popen, then calls close()."""
    bwrap = _bwrap()
    if bwrap is None:
        raise RuntimeError(f"bubblewrap is not installed; {INSTALL_HINT}")
    return SandboxedCommand.build(command=command, workdir=workdir, env=env, bwrap=bwrap)


def sandbox_signal(*, pid: int, sig: int) -> bool:
    """Sends `sig` to every process inside the sandbox whose bwrap is `pid`, wherever the
    script moved them (their own session or group): all members of its PID namespace but the
    namespace's init. bwrap itself would die of a SIGTERM and take the script down without
    its grace period. False when the sandbox is already gone."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        init = int(children[0])
        namespace = os.readlink(f"/proc/{init}/ns/pid")
    except (OSError, IndexError, ValueError):
        return False
    sent = False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in (pid, init):
            continue
        try:
            if os.readlink(entry / "ns" / "pid") == namespace:
                os.kill(int(entry.name), sig)
                sent = True
        except (OSError, ProcessLookupError):
            continue
    return sent


def exit_signal(code: int, *, sandboxed: bool) -> int | None:
    """The signal that ended the script: bwrap reports a signal N inside as exit 128 + N."""
    if code < 0:
        return -code
    if sandboxed and 128 < code < 128 + signal.NSIG:
        return code - 128
    return None
