"""Runstudio ingest benchmark: SDK end to end vs. MLflow ``log_batch`` vs. raw SQLite.

Run from the repository root with the project's venv::

    .venv/bin/python bench/ingest.py [--points-per-metric 100000] [--metrics 10]
                                     [--skip-mlflow] [--json out.json]

Phases, one after another so that none competes with another for the CPU:

1. **Runstudio, end to end.** ``runstudio serve`` on the embedded default (SQLite) in a fresh
   temp data dir, a superuser made with ``manage.py createsuperuser --noinput``, a token from
   ``POST /api/v1/auth/token``, a workspace from ``POST /api/v1/workspaces``. Then the SDK
   logs ``metrics × points-per-metric`` scalars the way a training loop does, timed per
   ``run.log()`` call and end to end (first ``log`` until ``complete()`` returns). Every series
   is checked through ``GET /api/v1/runs/{id}/metrics``: a lost point fails the benchmark.
   The server's peak RSS is read from ``/proc/<pid>/status`` (VmHWM) for every process in its
   tree before it is stopped.
2. **The floor.** Python's ``sqlite3.executemany`` of the same rows into a fresh copy of the
   studio's own ``runs_metricpoint`` table (DDL read from the migrated studio db), with the
   project's pragmas, one transaction per 20,000 rows (the SDK's batch size).
3. **PostgreSQL** (unless ``--skip-postgres``): a throwaway server started here as
   ``scripts/test`` starts one (or ``--database-url``), the same SDK workload into
   ``runstudio serve`` on it, then the floor there: psycopg's binary ``COPY`` of the same rows
   into a copy of the studio's ``runs_metricpoint`` (``LIKE … INCLUDING ALL``), one
   transaction per 20,000 rows.
4. **MLflow** (if importable, unless ``--skip-mlflow``). ``mlflow server`` on a SQLite backend
   (MLflow's default server and worker count), ``MlflowClient.log_batch`` with 1,000 metrics
   per request, and ``mlflow.log_metric(..., synchronous=False)`` per-call cost.

The benchmark is the only place the performance budgets of DESIGN.md are measured; no test
times anything.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Goals (docs/architecture.md, DESIGN.md "Performance budgets").
GOAL_LOG_US = 10.0  # run.log() per call, microseconds
GOAL_VS_MLFLOW = 25.0  # Runstudio end-to-end points/s ÷ MLflow log_batch points/s
GOAL_VS_FLOOR = 0.8  # Runstudio end-to-end points/s ÷ raw executemany points/s (SQLite)
GOAL_VS_COPY = 0.8  # the same on PostgreSQL ÷ raw binary COPY points/s

# The studio's SQLite pragmas (studio/settings.py, DATABASES OPTIONS init_command).
PROJECT_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA cache_size=-65536",
    "PRAGMA temp_store=MEMORY",
)
FLOOR_CHUNK = 20_000  # rows per transaction (the SDK batch size when the floor was set)
MLFLOW_BATCH = 1_000  # MLflow's limit of metrics per log_batch request

USERNAME = "bench"
PASSWORD = "bench-password-123"  # a throwaway user in a throwaway data dir
WORKSPACE = "bench"
EXPERIMENT = "ingest"


class BenchmarkError(RuntimeError):
    """The benchmark could not run or its results are wrong (e.g. points were lost)."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_process(cmd: list[str], *, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start ``cmd`` in its own session (so its whole tree can be stopped by group id)."""
    out = open(log_path, "wb")  # noqa: SIM115 - closed by stop_process
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    proc._bench_log = out  # type: ignore[attr-defined]
    return proc


def stop_process(proc: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """SIGTERM the process group we started, then SIGKILL whatever is left of it."""
    if proc is None:
        return
    tree = [proc.pid, *descendants(proc.pid)]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    # Children that left the group or outlived the leader.
    deadline = time.monotonic() + 5
    for pid in tree[1:]:
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if Path(f"/proc/{pid}").exists():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc._bench_log.close()  # type: ignore[attr-defined]


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def wait_http(url: str, proc: subprocess.Popen, timeout: float, log_path: Path) -> float:
    """Wait until ``url`` answers with any HTTP status; seconds it took."""
    start = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise BenchmarkError(
                f"server exited with code {proc.returncode} before answering {url}:\n"
                + tail(log_path)
            )
        try:
            with urllib.request.urlopen(url, timeout=2):
                pass
            return time.monotonic() - start
        except urllib.error.HTTPError:
            return time.monotonic() - start  # 401/404: it answers
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() - start > timeout:
            raise BenchmarkError(f"no answer from {url} after {timeout:.0f} s:\n" + tail(log_path))
        time.sleep(0.25)


def wait_idle(
    pid: int, *, timeout: float = 120.0, busy_cpu_s: float = 0.1, quiet_windows: int = 3
) -> float:
    """Wait until ``pid``'s process tree is quiet: for ``quiet_windows`` seconds in a row
    it used under ``busy_cpu_s`` of CPU a second and started no process.

    A server answers its first request before it has finished starting (workers still
    importing; MLflow's job runner launching its Huey consumers). Measuring then would
    charge it for its own startup.
    """
    start = time.monotonic()

    def snapshot() -> tuple[float, int]:
        pids = [pid, *descendants(pid)]
        return sum(proc_cpu_seconds(p) for p in pids), len(pids)

    before, count = snapshot()
    quiet = 0
    while time.monotonic() - start < timeout and quiet < quiet_windows:
        time.sleep(1.0)
        now, now_count = snapshot()
        quiet = quiet + 1 if now - before < busy_cpu_s and now_count == count else 0
        before, count = now, now_count
    return time.monotonic() - start


# --- /proc ------------------------------------------------------------------------------


def _ppid_map() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # comm may contain spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
    return parents


def descendants(pid: int) -> list[int]:
    parents = _ppid_map()
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def proc_status_kb(pid: int, *keys: str) -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in keys:
                values[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return values


def proc_cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)[:120]


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (children it reaped not included)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_memory(pid: int) -> dict[str, Any]:
    """VmHWM (peak RSS) of every process in ``pid``'s tree, MiB."""
    processes = []
    for p in [pid, *descendants(pid)]:
        status = proc_status_kb(p, "VmHWM", "VmRSS")
        if "VmHWM" not in status:
            continue  # exited, or a kernel thread
        processes.append(
            {
                "pid": p,
                "cmd": proc_cmdline(p),
                "peak_rss_mib": round(status["VmHWM"] / 1024, 1),
                "rss_mib": round(status.get("VmRSS", 0) / 1024, 1),
                "cpu_s": round(proc_cpu_seconds(p), 2),
            }
        )
    return {
        "processes": processes,
        "sum_peak_rss_mib": round(sum(p["peak_rss_mib"] for p in processes), 1),
        "max_peak_rss_mib": max((p["peak_rss_mib"] for p in processes), default=0.0),
        "cpu_s": round(sum(p["cpu_s"] for p in processes), 2),
    }


def tree_rss_mib(pid: int) -> dict[str, Any]:
    """VmRSS (now) of every process in ``pid``'s tree, summed, MiB: the idle footprint."""
    pids = [pid, *descendants(pid)]
    total_kb = sum(proc_status_kb(p, "VmRSS").get("VmRSS", 0) for p in pids)
    return {"sum_rss_mib": round(total_kb / 1024, 1), "processes": len(pids)}


def time_to_login_page(base: str, proc: subprocess.Popen, timeout: float, log_path: Path) -> float:
    """Seconds from now until ``GET /accounts/login/`` answers 200 (the sign-in page: a page
    rendered from the database with its static files), as a person opening the studio sees it."""
    start = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise BenchmarkError(f"server exited with code {proc.returncode}:\n" + tail(log_path))
        try:
            with urllib.request.urlopen(base + "/accounts/login/", timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() - start > timeout:
            raise BenchmarkError(f"no 200 from {base}/accounts/login/ after {timeout:.0f} s")
        time.sleep(0.02)


def restart_times(
    args: argparse.Namespace, env: dict[str, str], tmp: Path, count: int
) -> list[float]:
    """``runstudio serve`` again on the data dir it has already set up: seconds to the first
    200, each time."""
    times = []
    for i in range(count):
        port = free_port()
        log_path = tmp / f"studio-restart-{i}.log"
        server = start_process(server_command(args, port), env=env, log_path=log_path)
        try:
            times.append(
                round(time_to_login_page(f"http://127.0.0.1:{port}", server, 60, log_path), 2)
            )
        finally:
            stop_process(server)
    return times


class RssSampler:
    """Samples the summed VmRSS of a process tree once a second (peak of the sum)."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = sum(
                proc_status_kb(p, "VmRSS").get("VmRSS", 0)
                for p in [self.pid, *descendants(self.pid)]
            )
            self.peak_kb = max(self.peak_kb, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- HTTP to the studio -----------------------------------------------------------------


def api(
    base: str, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + "/api/v1" + path, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        payload = e.read()
        try:
            return e.code, json.loads(payload)
        except ValueError:
            return e.code, payload.decode(errors="replace")[:500]


def api_ok(base: str, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    status, payload = api(base, method, path, body, token)
    if status >= 300:
        raise BenchmarkError(f"{method} /api/v1{path} answered {status}: {payload}")
    return payload


# --- phase 1: Runstudio end to end --------------------------------------------------------


def sdk_ready() -> tuple[bool, str]:
    cli = REPO / "runs" / "sdk" / "cli.py"
    if not cli.exists() or "serve" not in cli.read_text():
        return False, "runs/sdk/cli.py has no `serve` command yet"
    try:
        from runs.sdk import Workspace  # noqa: F401
    except ImportError as e:
        return False, f"`from runs.sdk import Workspace` fails: {e}"
    return True, ""


def server_command(args: argparse.Namespace, port: int) -> list[str]:
    if args.server == "serve":
        exe = BIN / "runstudio"
        base = [str(exe)] if exe.exists() else [sys.executable, "-m", "runs.sdk.cli"]
        return [*base, "serve", "--port", str(port)]
    # Development fallback: the WSGI app under plain gunicorn (migrate is run first).
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "studio.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(args.gunicorn_workers),
    ]


def studio_phase(
    args: argparse.Namespace, tmp: Path, result: dict[str, Any], database_url: str | None = None
) -> None:
    """Fills ``result`` as it goes, so a failure still reports what was measured. With
    ``database_url`` the studio runs on that PostgreSQL database instead of SQLite."""
    data_dir = tmp / ("studio-data-pg" if database_url else "studio-data")
    data_dir.mkdir()
    env = dict(os.environ)
    env.update(
        RUNSTUDIO_DATA_DIR=str(data_dir),
        RUNSTUDIO_HOME=str(tmp / "runstudio-home"),  # keep ~/.runstudio untouched
        DJANGO_SUPERUSER_USERNAME=USERNAME,
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
        DJANGO_SUPERUSER_EMAIL="bench@example.invalid",
        PYTHONUNBUFFERED="1",
    )
    env.pop("DATABASE_URL", None)  # the embedded default
    if database_url:
        env["DATABASE_URL"] = database_url
    env.pop("RUNSTUDIO_URL", None)
    env.pop("RUNSTUDIO_TOKEN", None)
    manage = [sys.executable, str(REPO / "manage.py")]
    if args.server != "serve":
        subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=REPO, env=env, check=True)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp / ("studio-server-pg.log" if database_url else "studio-server.log")
    cmd = server_command(args, port)
    log(f"starting the studio: {' '.join(cmd)} (RUNSTUDIO_DATA_DIR={data_dir})")
    server = start_process(cmd, env=env, log_path=log_path)
    result["server_command"] = " ".join([Path(cmd[0]).name, *cmd[1:]])
    try:
        result["startup_s"] = round(time_to_login_page(base, server, 120, log_path), 2)
        log(f"studio answers on {base} after {result['startup_s']} s (fresh data dir)")
        result["settle_s"] = round(wait_idle(server.pid), 1)
        result["idle_memory"] = tree_rss_mib(server.pid)
        log(f"studio idle: {result['idle_memory']['sum_rss_mib']} MiB")

        created = subprocess.run(
            [*manage, "createsuperuser", "--noinput"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        if created.returncode != 0:
            raise BenchmarkError(f"createsuperuser failed:\n{created.stdout}{created.stderr}")
        token = api_ok(
            base, "POST", "/auth/token", {"username": USERNAME, "password": PASSWORD, "name": "b"}
        )["token"]
        api_ok(base, "POST", "/workspaces", {"name": WORKSPACE}, token)

        # The DDL of the points table, as Django made it, for the floor phase.
        db_uri = f"file:{data_dir / 'db.sqlite3'}?mode=ro"
        if not database_url:
            with contextlib.closing(sqlite3.connect(db_uri, uri=True)) as db:
                result["points_ddl"] = [
                    sql
                    for (sql,) in db.execute(
                        "SELECT sql FROM sqlite_master WHERE tbl_name = 'runs_metricpoint' "
                        "AND sql IS NOT NULL ORDER BY type DESC, name"
                    )
                ]
            if not result["points_ddl"]:
                raise BenchmarkError("the studio's db has no runs_metricpoint table")

        with RssSampler(server.pid) as sampler:
            result.update(sdk_workload(args, base, token))
            mem = tree_memory(server.pid)
        mem["sampled_peak_sum_rss_mib"] = round(sampler.peak_kb / 1024, 1)
        result["server_memory"] = mem
        log(
            f"studio: run.log {result['log_call_us']:.2f} us/call, end to end "
            f"{result['end_to_end_points_per_s']:,} points/s, server peak RSS "
            f"{mem['sum_peak_rss_mib']} MiB"
        )
        result["verified"] = False
        verify_studio(args, base, token, result["run_id"])
        result["verified"] = True
    finally:
        log("stopping the studio")
        stop_process(server)
        result["server_log_tail"] = tail(log_path, 15)
    if args.server == "serve" and args.restarts and not database_url:
        result["restart_s"] = restart_times(args, env, tmp, args.restarts)
        log(f"studio restarts: first 200 after {result['restart_s']} s")


def sdk_workload(args: argparse.Namespace, base: str, token: str) -> dict[str, Any]:
    from runs.sdk import Experiment, Workspace

    n, m = args.points_per_metric, args.metrics
    names = [f"metric_{i:02d}" for i in range(m)]

    # The loop with a no-op in place of run.log: what the loop itself costs per call.
    def noop(name: str, value: float, step: int | None = None) -> None:
        return None

    t = time.perf_counter()
    for step in range(n):
        value = step * 1e-3
        for name in names:
            noop(name, value, step=step)
    loop_overhead_us = (time.perf_counter() - t) / (n * m) * 1e6

    ws = Workspace.get(WORKSPACE, url=base, token=token)
    exp = Experiment(ws, EXPERIMENT)
    run = exp.start_logging(display_name=f"ingest {m}x{n}")
    run_id = getattr(run, "id", None) or run.run_id
    log(f"run {run_id}: logging {m} metrics x {n:,} steps = {n * m:,} points")

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    for step in range(n):
        value = step * 1e-3
        for name in names:
            run.log(name, value, step=step)
    t1 = time.perf_counter()
    run.complete()
    t2 = time.perf_counter()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)

    points = n * m
    log_us = (t1 - t0) / points * 1e6
    return {
        "run_id": run_id,
        "points": points,
        "loop_s": round(t1 - t0, 3),
        "complete_s": round(t2 - t1, 3),
        "end_to_end_s": round(t2 - t0, 3),
        "log_call_us": round(log_us, 3),
        "loop_overhead_us": round(loop_overhead_us, 3),
        "log_call_net_us": round(log_us - loop_overhead_us, 3),
        "end_to_end_points_per_s": round(points / (t2 - t0)),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "sdk_process_cpu_s": round(
            (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime), 2
        ),
        "sdk_process_peak_rss_mib": round(cpu1.ru_maxrss / 1024, 1),
    }


def verify_studio(args: argparse.Namespace, base: str, token: str, run_id: str) -> None:
    n, m = args.points_per_metric, args.metrics
    details = api_ok(base, "GET", f"/runs/{run_id}", token=token)
    metrics = api_ok(base, "GET", f"/runs/{run_id}/metrics", token=token)["metrics"]
    by_name = {s["name"]: s for s in metrics}
    problems = []
    if details.get("status") != "Completed":
        problems.append(f"run status is {details.get('status')!r}, not 'Completed'")
    for i in range(m):
        name = f"metric_{i:02d}"
        series = by_name.get(name)
        if series is None:
            problems.append(f"{name}: missing")
        elif series["count"] != n or series.get("last_step") != n - 1:
            problems.append(
                f"{name}: count={series['count']} last_step={series.get('last_step')} "
                f"(expected {n} and {n - 1})"
            )
    if problems:
        raise BenchmarkError("POINTS LOST OR WRONG on the studio:\n  " + "\n  ".join(problems))
    log(f"verified: {m} series x {n:,} points, run Completed")


# --- phase 2: the raw sqlite floor ----------------------------------------------------------


def floor_rows(args: argparse.Namespace) -> list[list[tuple[int, int, int, float, float]]]:
    """The rows the server writes: per batch of FLOOR_CHUNK points (FLOOR_CHUNK / m steps of
    every metric), grouped by series, seq = step, time = a float timestamp."""
    n, m = args.points_per_metric, args.metrics
    steps_per_chunk = max(1, FLOOR_CHUNK // m)
    now = time.time()
    chunks: list[list[tuple[int, int, int, float, float]]] = []
    for start in range(0, n, steps_per_chunk):
        stop = min(n, start + steps_per_chunk)
        chunk = []
        for sid in range(1, m + 1):
            chunk.extend(
                (sid, step, step, step * 1e-3, now + step * 1e-3) for step in range(start, stop)
            )
        chunks.append(chunk)
    return chunks


def floor_phase(args: argparse.Namespace, tmp: Path, ddl: list[str]) -> dict[str, Any]:
    n, m = args.points_per_metric, args.metrics
    path = tmp / "floor.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)  # explicit BEGIN/COMMIT below
    try:
        for pragma in PROJECT_PRAGMAS:
            db.execute(pragma)
        for sql in ddl:
            db.execute(sql)
        steps_per_chunk = max(1, FLOOR_CHUNK // m)
        chunks = floor_rows(args)
        insert = (
            'INSERT INTO "runs_metricpoint" ("series_id", "seq", "step", "value", "time") '
            "VALUES (?, ?, ?, ?, ?)"
        )
        t0 = time.perf_counter()
        for chunk in chunks:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(insert, chunk)
            db.execute("COMMIT")
        elapsed = time.perf_counter() - t0
        (count,) = db.execute('SELECT count(*) FROM "runs_metricpoint"').fetchone()
    finally:
        db.close()
    # For reference, not the goal's floor: what the server does (runs/services/metrics.py), 100
    # rows an INSERT statement, into a fresh copy of the table, the rows flattened in the timed
    # part as the server must.
    db = sqlite3.connect(tmp / "floor-multirow.sqlite3", isolation_level=None)
    try:
        for sql in [*PROJECT_PRAGMAS, *ddl]:
            db.execute(sql)
        width = 5 * 100
        many = (
            'INSERT INTO "runs_metricpoint" ("series_id", "seq", "step", "value", "time") '
            "VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * 100)
        )
        t0 = time.perf_counter()
        for chunk in chunks:
            flat = tuple(itertools.chain.from_iterable(chunk))
            full = len(flat) - len(flat) % width
            db.execute("BEGIN IMMEDIATE")
            db.executemany(many, [flat[i : i + width] for i in range(0, full, width)])
            db.executemany(
                'INSERT INTO "runs_metricpoint" ("series_id", "seq", "step", "value", "time") '
                "VALUES (?, ?, ?, ?, ?)",
                [flat[i : i + 5] for i in range(full, len(flat), 5)],
            )
            db.execute("COMMIT")
        multirow = time.perf_counter() - t0
    finally:
        db.close()
    if count != n * m:
        raise BenchmarkError(f"floor: {count} rows in the table, expected {n * m}")
    return {
        "points": n * m,
        "chunk_rows": steps_per_chunk * m,
        "transactions": len(chunks),
        "seconds": round(elapsed, 3),
        "points_per_s": round(n * m / elapsed),
        "multirow_seconds": round(multirow, 3),
        "multirow_points_per_s": round(n * m / multirow),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "pragmas": list(PROJECT_PRAGMAS),
        "sqlite_version": sqlite3.sqlite_version,
    }


# --- phase 3: PostgreSQL: the studio on it, and the raw COPY floor -----------------------------


def postgres_bindir() -> Path | None:
    """initdb and pg_ctl, found as scripts/test finds them."""
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            return d
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class ThrowawayPostgres:
    """A PostgreSQL server in a temp dir on 127.0.0.1 and a free port, as scripts/test starts
    one: run as the postgres user when we are root (initdb refuses root), a password, fsync
    and synchronous commit off (a benchmark database, thrown away after)."""

    def __init__(self, tmp: Path) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise BenchmarkError(
                "PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql, "
                "pass --database-url, or --skip-postgres"
            )
        self.pg_ctl = bindir / "pg_ctl"
        self.work = Path(tempfile.mkdtemp(prefix="pg-", dir=tmp))
        self.data = self.work / "data"
        self.port = free_port()
        self.root = os.geteuid() == 0
        if self.root:
            shutil.chown(tmp, "postgres")
            shutil.chown(self.work, "postgres")
        password = os.urandom(16).hex()
        pwfile = self.work / "pwfile"
        pwfile.write_text(password + "\n")
        if self.root:
            shutil.chown(pwfile, "postgres")
        self._run(
            bindir / "initdb", "-D", self.data, "-U", "runstudio", "--auth=scram-sha-256",
            f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.data} -F "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            self.pg_ctl, "-D", self.data, "-l", self.work / "postgres.log", "-w", "-t", "60",
            "-o", options, "start",
        )  # fmt: skip
        self.url = f"postgres://runstudio:{password}@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: Any) -> None:
        argv = [str(c) for c in cmd]
        if self.root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode:
            raise BenchmarkError(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}")

    def stop(self) -> None:
        with contextlib.suppress(BenchmarkError):
            self._run(self.pg_ctl, "-D", self.data, "-m", "immediate", "stop")


def fresh_database(url: str, name: str) -> str:
    """A new database on the server `url` names (dropped first if left over); its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def copy_floor_phase(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    """psycopg's binary COPY of the floor's rows, one transaction per FLOOR_CHUNK rows, into a
    copy of the studio's runs_metricpoint (same columns, key and indexes) in its database."""
    import psycopg

    n, m = args.points_per_metric, args.metrics
    chunks = floor_rows(args)
    with psycopg.connect(database_url) as db:
        db.execute("DROP TABLE IF EXISTS floor_points")
        db.execute("CREATE TABLE floor_points (LIKE runs_metricpoint INCLUDING ALL)")
        db.commit()
        copy_sql = (
            "COPY floor_points (series_id, seq, step, value, time) FROM STDIN (FORMAT BINARY)"
        )
        t0 = time.perf_counter()
        for chunk in chunks:
            with db.cursor() as cursor, cursor.copy(copy_sql) as copy:
                copy.set_types(["int8", "int8", "int8", "float8", "float8"])
                write = copy.write_row
                for row in chunk:
                    write(row)
            db.commit()
        elapsed = time.perf_counter() - t0
        (count,) = db.execute("SELECT count(*) FROM floor_points").fetchone()
        version = db.execute("SHOW server_version").fetchone()[0]
        db.execute("DROP TABLE floor_points")
        db.commit()
        blocks = copy_blocks_reference(db, args)
    if count != n * m:
        raise BenchmarkError(f"COPY floor: {count} rows in the table, expected {n * m}")
    return {
        "points": n * m,
        "chunk_rows": len(chunks[0]),
        "transactions": len(chunks),
        "seconds": round(elapsed, 3),
        "points_per_s": round(n * m / elapsed),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "server_version": version,
        "blocks": blocks,
    }


def copy_blocks_reference(db, args: argparse.Namespace) -> dict[str, Any]:
    """A reference beside the COPY floor: the same points by binary COPY into a copy of the
    table the studio keeps them in on PostgreSQL (runs_pointblock: blocks of 64 seqs), packed
    as the studio packs them (runs/pgcopy.py). Transactions of whole blocks: FLOOR_CHUNK / m
    steps rounded down to a multiple of 64. The columns are built before the clock starts, as
    the floor's rows are."""
    sys.path.insert(0, str(REPO))
    from runs import pgcopy  # plain Python: no Django

    n, m = args.points_per_metric, args.metrics
    per = max(pgcopy.BLOCK, FLOOR_CHUNK // m // pgcopy.BLOCK * pgcopy.BLOCK)
    now = time.time()
    chunks = []
    for start in range(0, n, per):
        steps = list(range(start, min(n, start + per)))
        values, times = [s * 1e-3 for s in steps], [now + s * 1e-3 for s in steps]
        chunks.append([(sid, start, steps, values, times) for sid in range(1, m + 1)])
    db.execute("DROP TABLE IF EXISTS floor_blocks")
    db.execute("CREATE TABLE floor_blocks (LIKE runs_pointblock INCLUDING ALL)")
    db.commit()
    sql = f"COPY floor_blocks ({pgcopy.COLUMNS}) FROM STDIN (FORMAT BINARY)"
    t0 = time.perf_counter()
    for chunk in chunks:
        with db.cursor() as cursor, cursor.copy(sql) as copy:
            copy.write(pgcopy.HEADER)
            for series in chunk:
                copy.write(pgcopy.block_rows(*series))
            copy.write(pgcopy.TRAILER)
        db.commit()
    elapsed = time.perf_counter() - t0
    (count,) = db.execute("SELECT sum(cardinality(vals)) FROM floor_blocks").fetchone()
    db.execute("DROP TABLE floor_blocks")
    db.commit()
    if count != n * m:
        raise BenchmarkError(f"COPY of blocks: {count} points in the table, expected {n * m}")
    return {
        "chunk_points": per * m,
        "seconds": round(elapsed, 3),
        "points_per_s": round(n * m / elapsed),
    }


def postgres_phase(args: argparse.Namespace, tmp: Path, results: dict[str, Any]) -> None:
    """The studio on PostgreSQL, then the COPY floor on the same server, one after the other."""
    server = None if args.database_url else ThrowawayPostgres(tmp)
    try:
        url = fresh_database(args.database_url or server.url, "runstudio_bench_ingest")
        log("PostgreSQL: the studio on " + url.rsplit("@", 1)[-1])
        results["studio_pg"] = {}
        studio_phase(args, tmp, results["studio_pg"], database_url=url)
        log("PostgreSQL: raw binary COPY floor")
        results["floor_pg"] = copy_floor_phase(args, url)
        log(f"COPY floor: {results['floor_pg']['points_per_s']:,} points/s")
    finally:
        if server is not None:
            server.stop()


# --- phase 3: MLflow --------------------------------------------------------------------------


def mlflow_available() -> str | None:
    try:
        import mlflow
    except ImportError:
        return None
    return mlflow.__version__


def mlflow_server_command(tmp: Path, port: int, *, workers: int | None = None) -> list[str]:
    """`mlflow server` on a SQLite file and an artifact folder in `tmp` (also bench/mlflow_door)."""
    exe = BIN / "mlflow"
    cmd = [
        str(exe) if exe.exists() else "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp / 'mlflow.db'}",
        "--default-artifact-root",
        str(tmp / "mlflow-artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return cmd + (["--workers", str(workers)] if workers else [])


def mlflow_phase(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    env = dict(os.environ)
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    os.environ.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = mlflow_server_command(tmp, port, workers=args.mlflow_workers)
    log_path = tmp / "mlflow-server.log"
    log(f"starting MLflow: {' '.join(cmd[1:])}")
    server = start_process(cmd, env=env, log_path=log_path)
    result: dict[str, Any] = {
        "server_command": "mlflow " + " ".join(cmd[1:]),
        "workers": args.mlflow_workers or "default",
    }
    try:
        result["startup_s"] = round(wait_http(uri + "/health", server, 120, log_path), 1)
        log(f"MLflow answers on {uri} after {result['startup_s']} s")
        result["settle_s"] = round(wait_idle(server.pid), 1)
        result["idle_memory"] = tree_rss_mib(server.pid)
        log(f"MLflow idle after {result['settle_s']} s more: {result['idle_memory']} MiB")
        result["log_batch"] = mlflow_log_batch(args, uri)
        result["log_metric_async"] = [
            mlflow_log_metric_async(args, uri, args.mlflow_async_calls, None),
            mlflow_log_metric_async(args, uri, args.mlflow_async_buffered_calls, 1),
        ]
        result["server_memory"] = tree_memory(server.pid)
    finally:
        log("stopping MLflow")
        stop_process(server)
    return result


def mlflow_log_batch(args: argparse.Namespace, uri: str) -> dict[str, Any]:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    n, m = args.points_per_metric, args.metrics
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("ingest-log-batch")
    run_id = client.create_run(experiment_id).info.run_id
    names = [f"metric_{i:02d}" for i in range(m)]
    steps_per_request = max(1, MLFLOW_BATCH // m)
    total_steps = n
    probe_steps = min(n, max(steps_per_request, 20_000 // m))  # ~20 requests to measure
    log(f"MLflow log_batch: {m} metrics x {n:,} steps, {steps_per_request * m} per request")

    def send(start: int, stop: int, run: str = run_id) -> None:
        ts = int(time.time() * 1000)
        for s0 in range(start, stop, steps_per_request):
            s1 = min(stop, s0 + steps_per_request)
            client.log_batch(
                run,
                metrics=[
                    Metric(name, step * 1e-3, ts, step) for step in range(s0, s1) for name in names
                ],
            )

    # Warm-up, untimed, into another run: the first requests each worker serves pay for
    # lazy imports and connection setup.
    warmup_run = client.create_run(experiment_id).info.run_id
    send(0, 8 * steps_per_request, warmup_run)
    client.set_terminated(warmup_run)

    t0 = time.perf_counter()
    send(0, probe_steps)
    probe_rate = probe_steps * m / (time.perf_counter() - t0)
    estimate_s = n * m / probe_rate
    fraction = False
    if estimate_s > args.mlflow_budget_s and n * m > args.mlflow_fraction_points:
        total_steps = max(probe_steps, args.mlflow_fraction_points // m)
        fraction = True
        log(
            f"MLflow: {probe_rate:,.0f} points/s -> {estimate_s:.0f} s for all {n * m:,} points; "
            f"running {total_steps * m:,} points and reporting the rate"
        )
    send(probe_steps, total_steps)
    elapsed = time.perf_counter() - t0
    points = total_steps * m
    log(f"MLflow log_batch: {points / elapsed:,.0f} points/s over {points:,} points")

    history = len(client.get_metric_history(run_id, names[0]))
    if history != total_steps:
        raise BenchmarkError(f"MLflow kept {history} points of {names[0]}, expected {total_steps}")
    client.set_terminated(run_id)
    return {
        "points": points,
        "of_points": n * m,
        "fraction": fraction,
        "seconds": round(elapsed, 3),
        "points_per_s": round(points / elapsed),
        "full_run_estimate_s": round(n * m / (points / elapsed), 1),
        "metrics_per_request": steps_per_request * m,
    }


def mlflow_log_metric_async(
    args: argparse.Namespace, uri: str, calls: int, buffer_seconds: int | None
) -> dict[str, Any]:
    """``mlflow.log_metric(..., synchronous=False)`` in a training loop.

    By default MLflow's async queue sends one request per call; with
    ``MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS`` set it merges queued calls into batches of up
    to 1,000 items. Both are measured: the first as users get it, the second as tuned.
    """
    import mlflow

    m = args.metrics
    steps = max(1, calls // m)
    calls = steps * m
    names = [f"metric_{i:02d}" for i in range(m)]
    mode = "default queue" if buffer_seconds is None else f"buffered {buffer_seconds} s"
    saved = os.environ.pop("MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS", None)
    if buffer_seconds is not None:
        os.environ["MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS"] = str(buffer_seconds)
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("ingest-log-metric-async")
        log(f"MLflow log_metric(synchronous=False), {mode}: {calls:,} calls")
        with mlflow.start_run(run_name=f"async {mode}") as active:
            t0 = time.perf_counter()
            for step in range(steps):
                value = step * 1e-3
                for name in names:
                    mlflow.log_metric(name, value, step=step, synchronous=False)
            t1 = time.perf_counter()
            # flush_async_logging() waits forever if MLflow's logging thread died: watch it.
            flusher = threading.Thread(target=mlflow.flush_async_logging, daemon=True)
            flusher.start()
            flusher.join(args.mlflow_budget_s)
            if flusher.is_alive():
                raise BenchmarkError(
                    f"mlflow.flush_async_logging() did not return in {args.mlflow_budget_s:.0f} s"
                )
            t2 = time.perf_counter()
            run_id = active.info.run_id
    finally:
        os.environ.pop("MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS", None)
        if saved is not None:
            os.environ["MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS"] = saved
    history = len(mlflow.MlflowClient(tracking_uri=uri).get_metric_history(run_id, names[0]))
    if history != steps:
        raise BenchmarkError(f"MLflow async kept {history} points of {names[0]}, expected {steps}")
    return {
        "mode": mode,
        "calls": calls,
        "log_call_us": round((t1 - t0) / calls * 1e6, 2),
        "end_to_end_s": round(t2 - t0, 3),
        "end_to_end_points_per_s": round(calls / (t2 - t0)),
    }


# --- report -----------------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def verdict(ok: bool | None) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "MISS")


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    studio = results.get("studio") or {}
    floor = results.get("floor") or {}
    mlflow = (results.get("mlflow") or {}).get("log_batch") or {}
    e2e = studio.get("end_to_end_points_per_s")
    goals: dict[str, Any] = {}
    goals["log_call_us"] = {
        "value": studio.get("log_call_us"),
        "goal": f"< {GOAL_LOG_US:g} us",
        "pass": None if e2e is None else studio["log_call_us"] < GOAL_LOG_US,
    }
    ratio_mlflow = e2e / mlflow["points_per_s"] if e2e and mlflow.get("points_per_s") else None
    goals["vs_mlflow_log_batch"] = {
        "value": None if ratio_mlflow is None else round(ratio_mlflow, 1),
        "goal": f">= {GOAL_VS_MLFLOW:g}x",
        "pass": None if ratio_mlflow is None else ratio_mlflow >= GOAL_VS_MLFLOW,
    }
    ratio_floor = e2e / floor["points_per_s"] if e2e and floor.get("points_per_s") else None
    goals["vs_sqlite_floor"] = {
        "value": None if ratio_floor is None else round(ratio_floor, 2),
        "goal": f">= {GOAL_VS_FLOOR:g}x",
        "pass": None if ratio_floor is None else ratio_floor >= GOAL_VS_FLOOR,
    }
    e2e_pg = (results.get("studio_pg") or {}).get("end_to_end_points_per_s")
    copy = (results.get("floor_pg") or {}).get("points_per_s")
    ratio_copy = e2e_pg / copy if e2e_pg and copy else None
    goals["vs_postgres_copy"] = {
        "value": None if ratio_copy is None else round(ratio_copy, 2),
        "goal": f">= {GOAL_VS_COPY:g}x",
        "pass": None if ratio_copy is None else ratio_copy >= GOAL_VS_COPY,
    }
    return goals


def _row(label: str, value: str, note: str = "") -> str:
    return f"  {label:<34}{value:>14}" + (f"   {note}" if note else "")


def print_report(results: dict[str, Any]) -> None:
    mf = results["machine"]
    args = results["args"]
    n, m = args["points_per_metric"], args["metrics"]
    studio = results.get("studio") or {}
    floor = results.get("floor") or {}
    ml = results.get("mlflow") or {}
    out: list[str] = []
    w = out.append
    w("=" * 86)
    w("Runstudio ingest benchmark")
    w("=" * 86)
    w(f"machine   {mf['nproc']} CPUs ({mf['cpu']}), {mf['memory_gib']} GiB RAM")
    w(f"          Python {mf['python']}, SQLite {mf['sqlite']}, {mf['platform']}")
    w(
        f"note      a {mf['nproc']}-core machine shared by the SDK process (the training script)"
        " and the server;"
    )
    w("          they compete for the same cores. All rates are wall-clock.")
    w(f"load      1/5/15-min load average at start: {mf['loadavg_at_start']}")
    w(f"workload  {m} metrics x {n:,} steps = {n * m:,} scalar points")
    w("")
    if studio.get("end_to_end_s") is not None:
        mem = studio.get("server_memory", {})
        w(f"Runstudio, embedded SQLite ({studio['server_command']})")
        w(
            _row(
                "start, fresh data dir",
                f"{studio['startup_s']} s",
                f"(first 200 on /accounts/login/; + {studio['settle_s']} s until idle)",
            )
        )
        if studio.get("restart_s"):
            w(
                _row(
                    "start, restart (same data dir)",
                    f"{sorted(studio['restart_s'])[len(studio['restart_s']) // 2]} s",
                    f"(median of {studio['restart_s']})",
                )
            )
        idle = studio.get("idle_memory") or {}
        w(
            _row(
                "server RSS idle (sum of VmRSS)",
                f"{idle.get('sum_rss_mib', 0):.1f} MiB",
                f"over {idle.get('processes', '?')} processes, after start-up settled",
            )
        )
        w(
            _row(
                "run.log() per call",
                f"{studio['log_call_us']:.2f} us",
                f"(the bare loop: {studio['loop_overhead_us']:.2f} us; "
                f"net {studio['log_call_net_us']:.2f} us)",
            )
        )
        w(_row("logging loop", f"{studio['loop_s']:.2f} s"))
        w(_row("complete() (drain + finish)", f"{studio['complete_s']:.2f} s"))
        w(
            _row(
                "end to end (first log..complete)",
                f"{studio['end_to_end_s']:.2f} s",
                f"= {studio['end_to_end_points_per_s']:,} points/s (load {studio['loadavg'][0]})",
            )
        )
        w(
            _row(
                "verified via REST",
                "yes" if studio.get("verified") else "NO",
                f"(every series count == {n:,}, last_step == {n - 1:,}, run Completed)",
            )
        )
        w(
            _row(
                "SDK process",
                f"{studio['sdk_process_cpu_s']:.2f} s CPU",
                f"peak RSS {studio['sdk_process_peak_rss_mib']} MiB",
            )
        )
        w(
            _row(
                "server peak RSS (sum of VmHWM)",
                f"{mem.get('sum_peak_rss_mib', 0):.1f} MiB",
                f"over {len(mem.get('processes', []))} processes; largest "
                f"{mem.get('max_peak_rss_mib', 0)} MiB",
            )
        )
        w(
            _row(
                "server RSS, peak of the sum",
                f"{mem.get('sampled_peak_sum_rss_mib', 0):.1f} MiB",
                "(sampled once a second)",
            )
        )
        w(_row("server CPU", f"{mem.get('cpu_s', 0):.2f} s"))
        for proc in mem.get("processes", []):
            w(
                f"    pid {proc['pid']:>7}  peak {proc['peak_rss_mib']:>7.1f} MiB  "
                f"cpu {proc['cpu_s']:>7.2f} s  {proc['cmd'][:56]}"
            )
    else:
        w("Runstudio: not run" if not studio else "Runstudio: did not finish")
    w("")
    if floor:
        w(
            "Raw sqlite3 executemany floor (the studio's runs_metricpoint DDL and pragmas, "
            f"{floor['chunk_rows']:,} rows per transaction)"
        )
        w(
            _row(
                f"{floor['points']:,} rows",
                f"{floor['seconds']:.2f} s",
                f"= {floor['points_per_s']:,} points/s (load {floor['loadavg'][0]})",
            )
        )
        if floor.get("multirow_points_per_s"):
            w(
                _row(
                    "  (reference: 100 rows an INSERT)",
                    f"{floor['multirow_seconds']:.2f} s",
                    f"= {floor['multirow_points_per_s']:,} points/s, what the server does",
                )
            )
    else:
        w("Raw sqlite3 floor: not run")
    w("")
    pg, copy = results.get("studio_pg") or {}, results.get("floor_pg") or {}
    if pg.get("end_to_end_s") is not None:
        mem = pg.get("server_memory", {})
        w(f"Runstudio on PostgreSQL {copy.get('server_version', '')} ({pg['server_command']})")
        w(
            _row(
                "end to end (first log..complete)",
                f"{pg['end_to_end_s']:.2f} s",
                f"= {pg['end_to_end_points_per_s']:,} points/s (load {pg['loadavg'][0]})",
            )
        )
        w(_row("verified via REST", "yes" if pg.get("verified") else "NO"))
        w(
            _row(
                "server CPU / peak RSS (sum)",
                f"{mem.get('cpu_s', 0):.2f} s",
                f"{mem.get('sum_peak_rss_mib', 0):.1f} MiB (the database server not counted)",
            )
        )
    else:
        w(f"Runstudio on PostgreSQL: {(results.get('postgres') or {}).get('skipped', 'not run')}")
    if copy:
        w(
            _row(
                f"raw binary COPY, {copy['points']:,} rows",
                f"{copy['seconds']:.2f} s",
                f"= {copy['points_per_s']:,} points/s (load {copy['loadavg'][0]}; "
                f"{copy['chunk_rows']:,} rows a transaction)",
            )
        )
        if blocks := copy.get("blocks"):
            w(
                _row(
                    "  (reference: as the studio's blocks)",
                    f"{blocks['seconds']:.2f} s",
                    f"= {blocks['points_per_s']:,} points/s, the layout the studio writes "
                    f"({blocks['chunk_points']:,} points a transaction)",
                )
            )
    w("")
    if ml.get("log_batch"):
        lb = ml["log_batch"]
        w(f"MLflow {ml['version']} (mlflow server, SQLite backend, workers: {ml['workers']})")
        w("  (log_metric async = mlflow.log_metric(..., synchronous=False) in the same loop)")
        w(_row("server startup", f"{ml['startup_s']} s", f"(+ {ml['settle_s']} s until idle)"))
        idle = ml.get("idle_memory") or {}
        w(
            _row(
                "server RSS idle (sum of VmRSS)",
                f"{idle.get('sum_rss_mib', 0):.1f} MiB",
                f"over {idle.get('processes', '?')} processes",
            )
        )
        w(
            _row(
                f"log_batch, {lb['metrics_per_request']:,}/request",
                f"{lb['seconds']:.2f} s",
                f"= {lb['points_per_s']:,} points/s ({lb['points']:,} points)",
            )
        )
        if lb["fraction"]:
            w(
                f"    a fraction: {lb['points']:,} of {lb['of_points']:,} points, the rate "
                f"extrapolated (all of them would take ~{lb['full_run_estimate_s']:.0f} s)"
            )
        for am in ml["log_metric_async"]:
            w(
                _row(
                    f"log_metric async, {am['mode']}",
                    f"{am['log_call_us']:.2f} us",
                    f"per call ({am['calls']:,} calls); end to end "
                    f"{am['end_to_end_points_per_s']:,} points/s",
                )
            )
        w(
            _row(
                "server peak RSS (sum of VmHWM)",
                f"{ml['server_memory']['sum_peak_rss_mib']:.1f} MiB",
                f"over {len(ml['server_memory']['processes'])} processes",
            )
        )
    else:
        w(f"MLflow: {ml.get('skipped', 'not run')}")
    w("")
    w("Goals")
    labels = {
        "log_call_us": "run.log() per call",
        "vs_mlflow_log_batch": "end-to-end / MLflow log_batch",
        "vs_sqlite_floor": "end-to-end / raw executemany floor",
        "vs_postgres_copy": "PostgreSQL end-to-end / raw COPY floor",
    }
    for key, goal in results["goals"].items():
        value = goal["value"]
        if value is None:
            shown = "-"
        elif key == "log_call_us":
            shown = f"{value:.2f} us"
        else:
            shown = f"{value}x"
        w(f"  {verdict(goal['pass'])}  {labels[key]:<36}{shown:>12}   (goal {goal['goal']})")
    w("=" * 86)
    print("\n".join(out), flush=True)


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points-per-metric", type=int, default=100_000, help="steps (default 100000)")
    p.add_argument("--metrics", type=int, default=10, help="metrics per step (default 10)")
    p.add_argument("--skip-mlflow", action="store_true", help="leave MLflow out")
    p.add_argument("--skip-studio", action="store_true", help="leave the studio out (dev aid)")
    p.add_argument(
        "--skip-postgres",
        action="store_true",
        help="leave out the PostgreSQL phase (the studio on it and the COPY floor)",
    )
    p.add_argument(
        "--database-url",
        metavar="URL",
        help="a PostgreSQL server to use (postgres://user:password@host:port/db; the bench makes "
        "a database runstudio_bench_ingest there) instead of starting a throwaway one",
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument(
        "--server",
        choices=["serve", "gunicorn"],
        default="serve",
        help="how to start the studio: `runstudio serve` (default, as a user does) or plain "
        "gunicorn on studio.wsgi (development fallback)",
    )
    p.add_argument("--gunicorn-workers", type=int, default=2, help="with --server gunicorn")
    p.add_argument(
        "--restarts",
        type=int,
        default=3,
        help="after the ingest, start `runstudio serve` again this many times on the same data "
        "dir and report the time to the first 200 (default 3; 0 to skip)",
    )
    p.add_argument(
        "--mlflow-workers", type=int, default=0, help="mlflow server --workers (0 = its default)"
    )
    p.add_argument(
        "--mlflow-budget-s",
        type=float,
        default=300.0,
        help="if MLflow's full log_batch run would take longer, run a fraction (default 300)",
    )
    p.add_argument(
        "--mlflow-fraction-points",
        type=int,
        default=200_000,
        help="points MLflow logs when over budget; the rate is reported (default 200000)",
    )
    p.add_argument(
        "--mlflow-async-calls",
        type=int,
        default=2_000,
        help="mlflow.log_metric(synchronous=False) calls to time with MLflow's default async "
        "queue, which sends one request per call (~100/s here: default 2000)",
    )
    p.add_argument(
        "--mlflow-async-buffered-calls",
        type=int,
        default=20_000,
        help="the same with MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS=1 (default 20000)",
    )
    p.add_argument("--keep-temp", action="store_true", help="keep the temp dir (debugging)")
    args = p.parse_args(argv)
    if args.points_per_metric < 1 or args.metrics < 1:
        p.error("--points-per-metric and --metrics must be >= 1")
    return args


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # unwinds through the cleanups


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    os.chdir(REPO)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    tmp = Path(tempfile.mkdtemp(prefix="runstudio-bench-"))
    # What a server too slow for the SDK's exit deadline leaves unsent goes here, not to the
    # user's ~/.runstudio/spool (where the next SDK start would try to send it).
    os.environ["RUNSTUDIO_SPOOL_DIR"] = str(tmp / "sdk-spool")
    results: dict[str, Any] = {
        "machine": machine_facts(),
        "args": {
            "points_per_metric": args.points_per_metric,
            "metrics": args.metrics,
            "server": args.server,
        },
    }
    status = 0
    try:
        ddl: list[str] | None = None
        if not args.skip_studio:
            if args.server == "serve":
                ready, why = sdk_ready()
                if not ready:
                    raise BenchmarkError(f"the SDK is not ready: {why}")
            results["studio"] = {}
            studio_phase(args, tmp, results["studio"])
            ddl = results["studio"]["points_ddl"]
        if ddl is None:
            ddl = points_ddl_from_sqlmigrate(tmp)
        log("floor: raw sqlite3 executemany")
        results["floor"] = floor_phase(args, tmp, ddl)
        log(f"floor: {results['floor']['points_per_s']:,} points/s")
        if args.skip_postgres or args.skip_studio:
            results["postgres"] = {"skipped": "skipped (--skip-postgres or --skip-studio)"}
        else:
            postgres_phase(args, tmp, results)
        version = mlflow_available()
        if args.skip_mlflow:
            results["mlflow"] = {"skipped": "skipped (--skip-mlflow)"}
        elif version is None:
            results["mlflow"] = {"skipped": "skipped (mlflow is not installed: the bench extra)"}
        else:
            results["mlflow"] = {"version": version, **mlflow_phase(args, tmp)}
    except BenchmarkError as e:
        print(f"\nBENCHMARK FAILED: {e}", file=sys.stderr, flush=True)
        status = 2
    finally:
        if args.keep_temp:
            log(f"temp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    results["goals"] = summarize(results)
    print_report(results)
    if status:
        print("BENCHMARK FAILED (see above)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
        log(f"results written to {args.json}")
    return status


def points_ddl_from_sqlmigrate(tmp: Path) -> list[str]:
    """The points table's DDL from a freshly migrated db (when the studio phase was skipped)."""
    data_dir = tmp / "ddl-data"
    env = dict(os.environ, RUNSTUDIO_DATA_DIR=str(data_dir))
    env.pop("DATABASE_URL", None)
    subprocess.run(
        [sys.executable, str(REPO / "manage.py"), "migrate", "--noinput", "-v0"],
        cwd=REPO,
        env=env,
        check=True,
    )
    with contextlib.closing(sqlite3.connect(data_dir / "db.sqlite3")) as db:
        return [
            sql
            for (sql,) in db.execute(
                "SELECT sql FROM sqlite_master WHERE tbl_name = 'runs_metricpoint' "
                "AND sql IS NOT NULL ORDER BY type DESC, name"
            )
        ]


if __name__ == "__main__":
    sys.exit(main())
