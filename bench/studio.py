"""Studio benchmark: the pages people open on a big workspace, timed on the running server.

    .venv/bin/python bench/studio.py [--runs 100000] [--mlflow-runs 100000] [--skip-mlflow]

1. **Seed** a fresh data directory (embedded default: SQLite) with one workspace of N runs, fast,
   by bulk SQL straight into the tables after `migrate` (the user and workspace go through the
   services): 3 tags (`team`, `model`, `seed`), 2 properties (`lr`, `batch_size`) and 5 scalar
   metrics per run with their summaries (count, last, min, max, last step). Only the summaries
   are seeded for the ordinary runs (the run list reads summaries, never points); `--big` runs
   (default 3) get a `loss` series of `--big-points` (default 1,000,000) points, and one more
   run a `loss` series of `--huge-points` (default 10,000,000; 0 skips it). Points seeded by SQL
   have no chart pyramid yet, as after an upgrade: `manage.py metrics_summarize` builds it
   (timed), as an operator would.
2. **Serve** it the way a user does — `runstudio serve` (migrate, then gunicorn) — sign in through
   the login form and time, on one keep-alive connection, `--reps` requests each (median, p95):
   the run list's first page filtered by a tag and sorted by a metric's max, the same page
   filtered by a search with OR, the run detail page, and the 1M- and 10M-point charts (the
   downsampled series endpoint; its cache is bypassed with a fresh `buckets` value per request,
   so every request really reads the series, cold).
3. **MLflow** (if importable, unless `--skip-mlflow`): the same shape for `--mlflow-runs` runs
   (default 20,000, because seeding MLflow is slow) plus one run with the big metric, written
   straight into the tables of a store that MLflow's own SqlAlchemyStore created (its migrations),
   then `mlflow server` on it; timed: `search_runs` filtered by the tag and ordered by the metric
   (MLflow can only order by the latest value, not the max), and `get_metric_history` of the
   1,000,000-point metric (MLflow has no downsampled read; its UI samples points instead).

Times are client-side latencies on localhost (request out → last byte in), which is server time
plus a loopback round trip. Runstudio and MLflow both run with their default SQLite setup.
"""

import argparse
import http.client
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
USER, PASSWORD, WORKSPACE = "bench", "bench-password-123", "bench"
TEAMS = ["vision", "nlp", "speech", "rl"]
MODELS = ["resnet", "vit", "mlp", "lstm", "gpt"]
METRICS = ["loss", "acc", "val_loss", "val_acc", "lr"]
BIG_METRIC = "loss"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def say(text: str) -> None:
    print(text, flush=True)


def wait_http(host: str, port: int, path: str, proc: subprocess.Popen, timeout: float) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early (code {proc.returncode})")
        try:
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request("GET", path)
            conn.getresponse().read()
            return time.perf_counter() - start
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server did not answer {path} within {timeout:.0f}s")


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return {"median": statistics.median(ordered) * 1000, "p95": p95 * 1000, "n": len(ordered)}


def fmt(s: dict[str, float]) -> str:
    refused = f", {s['refused']} stopped by the time budget (400)" if s.get("refused") else ""
    return f"median {s['median']:8.1f} ms   p95 {s['p95']:8.1f} ms   (n={s['n']}{refused})"


# --- data shape shared by both stores ----------------------------------------------------------


def run_shape(i: int, rng: random.Random) -> dict:
    loss_min = rng.uniform(0.05, 1.0)
    acc_max = rng.uniform(0.5, 0.99)
    return {
        "tags": {"team": TEAMS[i % 4], "model": MODELS[i % 5], "seed": str(i)},
        "properties": {
            "lr": f"{10 ** rng.uniform(-5, -1):.6f}",
            "batch_size": str(2 ** (4 + i % 5)),
        },
        "metrics": {
            "loss": (loss_min * 1.1, loss_min, loss_min * 20),
            "acc": (acc_max * 0.98, 0.1, acc_max),
            "val_loss": (loss_min * 1.3, loss_min * 1.2, loss_min * 25),
            "val_acc": (acc_max * 0.95, 0.1, acc_max * 0.97),
            "lr": (1e-5, 1e-5, 1e-3),
        },
    }


def big_series(n: int) -> list[tuple[int, float, float]]:
    """(step, value, time): a decaying loss with noise, one spike and a few NaN."""
    rng = random.Random(7)
    t0 = 1_700_000_000.0
    out = []
    for i in range(n):
        value = 2.0 * math.exp(-i / (n / 5)) + 0.05 * rng.random()
        if i == n * 2 // 3:
            value = 25.0
        if i % 250_000 == 1:
            value = math.nan
        out.append((i, value, t0 + i * 0.01))
    return out


# --- Runstudio ---------------------------------------------------------------------------------


def django_env(data_dir: Path, database_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        RUNSTUDIO_DATA_DIR=str(data_dir),
        DJANGO_SETTINGS_MODULE="studio.settings",
        PYTHONPATH=str(ROOT),
        RUNSTUDIO_LOG_LEVEL="ERROR",
    )
    if database_url:  # PostgreSQL (--database-url); the embedded SQLite file otherwise
        env["DATABASE_URL"] = database_url
    return env


class SqliteSink:
    """Bulk writes into the studio's SQLite file: executemany in big transactions."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA cache_size=-1000000")  # 1 GB: index pages stay in memory

    def one(self, sql: str, params=()) -> tuple:
        return self.db.execute(sql, params).fetchone()

    def rows(self, table: str, columns: list[str], rows) -> None:
        marks = ",".join("?" * len(columns))
        self.db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def finish(self) -> None:
        self.db.commit()
        self.db.execute("ANALYZE")
        self.db.close()


class PostgresSink:
    """Bulk writes into PostgreSQL: COPY … FROM STDIN, then VACUUM ANALYZE."""

    def __init__(self, url: str):
        import psycopg

        self.db = psycopg.connect(url)
        self.db.execute("SET TIME ZONE 'UTC'")  # the seeded times are UTC, as Django's
        self.db.execute("SET synchronous_commit = off")

    def one(self, sql: str, params=()) -> tuple:
        return self.db.execute(sql.replace("?", "%s"), params).fetchone()

    def rows(self, table: str, columns: list[str], rows) -> None:
        with self.db.cursor() as cur:
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)

    def finish(self) -> None:
        # Points were copied a row each: regrouped into the blocks the studio keeps on
        # PostgreSQL (runs/points.py), as migration 0018 does.
        self.db.execute(
            "INSERT INTO runs_pointblock (series_id, block, steps, vals, times) "
            "SELECT series_id, seq / 64, array_agg(step ORDER BY seq), "
            "array_agg(value ORDER BY seq), array_agg(time ORDER BY seq) "
            "FROM runs_metricpoint GROUP BY series_id, seq / 64"
        )
        self.db.execute("TRUNCATE runs_metricpoint")
        # Runs were written with their ids: the next run the studio creates must not collide.
        self.db.execute(
            "SELECT setval(pg_get_serial_sequence('runs_run', 'id'), "
            "(SELECT max(id) FROM runs_run))"
        )
        self.db.commit()
        self.db.autocommit = True
        self.db.execute("VACUUM ANALYZE")
        self.db.close()


def fresh_postgres(url: str) -> tuple[str, object]:
    """A new database on the server `url` names, and the function that drops it."""
    import psycopg

    name = f"runstudio_bench_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urllib.parse.urlsplit(url)

    def drop() -> None:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urllib.parse.urlunsplit(parts._replace(path="/" + name)), drop


BASE_TIME = 1_767_225_600  # 2026-01-01


def bench_run_id(i: int) -> str:
    return f"bench_{BASE_TIME + i}_{i:08x}"


RUN_COLUMNS = [
    "id", "run_id", "display_name", "description", "status", "run_type", "compute_target",
    "created_at", "started_at", "ended_at", "heartbeat_at", "error_code", "error_message",
    "experiment_id", "submitter_id", "workspace_id", "parent_id",
]  # fmt: skip
SERIES_COLUMNS = [
    "name", "kind", "count", "last_value", "min_value", "max_value", "last_step", "updated_at",
    "run_id", "last_time", "steps_sorted", "times_sorted",
]  # fmt: skip


def run_chunks(runs: int, exp_id: int, user_id: int, ws_id: int, size: int = 20_000):
    """The seeded rows, `size` runs at a time (a million runs' rows at once would take GBs)."""
    rng = random.Random(1)
    for first in range(0, runs, size):
        run_rows, tag_rows, prop_rows, series_rows = [], [], [], []
        for i in range(first, min(runs, first + size)):
            pk = i + 1
            created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(BASE_TIME + i * 10))
            ended = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(BASE_TIME + i * 10 + 600))
            run_rows.append(
                (pk, bench_run_id(i), f"run {i}", "", "Completed", "interactive", "local",
                 created, created, ended, None, "", "", exp_id, user_id, ws_id, None)
            )  # fmt: skip
            shape = run_shape(i, rng)
            tag_rows += [(k, v, pk) for k, v in shape["tags"].items()]
            prop_rows += [(k, v, pk) for k, v in shape["properties"].items()]
            # Summaries only, no points: marked summarized (the flags of a series whose pyramid
            # is built), so metrics_summarize builds only the big series' pyramids.
            end_time = float(BASE_TIME + i * 10 + 600)
            for name, (last, low, high) in shape["metrics"].items():
                series_rows.append(
                    (name, "scalar", 100, last, low, high, 99, ended, pk, end_time, True, True)
                )
        yield run_rows, tag_rows, prop_rows, series_rows


def _seed_points(sink, series_id: int, points: list) -> None:
    sink.rows(
        "runs_metricpoint",
        ["series_id", "seq", "step", "value", "time"],
        ((series_id, seq, s, None if math.isnan(v) else v, t)
         for seq, (s, v, t) in enumerate(points)),
    )  # fmt: skip
    finite = [v for _, v, _ in points if not math.isnan(v)]
    # steps_sorted NULL: not summarized yet, as a series logged before the pyramid existed.
    sink.one(
        "UPDATE runs_metricseries SET count = ?, last_value = ?, min_value = ?, max_value = ?, "
        "last_step = ?, last_time = NULL, steps_sorted = NULL, times_sorted = NULL "
        "WHERE id = ? RETURNING id",
        (len(points), points[-1][1], min(finite), max(finite), points[-1][0], series_id),
    )


def seed_runstudio(
    data_dir: Path,
    runs: int,
    big: int,
    big_points: int,
    huge_points: int = 0,
    database_url: str | None = None,
) -> tuple[list, str | None, float, float]:
    env = django_env(data_dir, database_url)
    data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([PYTHON, "-m", "django", "migrate", "--noinput", "-v", "0"], env=env, check=True)
    # The user, the workspace and its membership through the services (password hashing etc.).
    subprocess.run(
        [
            PYTHON,
            "-c",
            "import django; django.setup()\n"
            "from django.contrib.auth import get_user_model\n"
            "from runs import services\n"
            f"u = get_user_model().objects.create_user({USER!r}, password={PASSWORD!r})\n"
            f"services.workspace_create(name={WORKSPACE!r}, owner=u)\n",
        ],
        env=env,
        check=True,
        cwd=ROOT,
    )
    start = time.perf_counter()
    sink = PostgresSink(database_url) if database_url else SqliteSink(data_dir / "db.sqlite3")
    (ws_id,) = sink.one("SELECT id FROM runs_workspace WHERE name = ?", (WORKSPACE,))
    (user_id,) = sink.one("SELECT id FROM auth_user WHERE username = ?", (USER,))
    (exp_id,) = sink.one(
        "INSERT INTO runs_experiment (name, created_at, workspace_id, tags) "
        "VALUES (?, ?, ?, ?) RETURNING id",
        ("bench", "2026-01-01 00:00:00", ws_id, "{}"),
    )
    for run_rows, tag_rows, prop_rows, series_rows in run_chunks(runs, exp_id, user_id, ws_id):
        sink.rows("runs_run", RUN_COLUMNS, run_rows)
        sink.rows("runs_runtag", ["key", "value", "run_id"], tag_rows)
        sink.rows("runs_runproperty", ["key", "value", "run_id"], prop_rows)
        sink.rows("runs_metricseries", SERIES_COLUMNS, series_rows)
    big_runs = []
    points = big_series(big_points) if big else []
    for b in range(big):
        pk = runs - b  # the newest runs: what the list shows first
        (series_id,) = sink.one(
            "SELECT id FROM runs_metricseries WHERE run_id = ? AND name = ?", (pk, BIG_METRIC)
        )
        _seed_points(sink, series_id, points)
        big_runs.append(bench_run_id(pk - 1))
    del points
    huge_run = None
    if huge_points:
        pk = runs - big  # the next newest run
        (series_id,) = sink.one(
            "SELECT id FROM runs_metricseries WHERE run_id = ? AND name = ?", (pk, BIG_METRIC)
        )
        _seed_points(sink, series_id, big_series(huge_points))
        huge_run = bench_run_id(pk - 1)
    sink.finish()
    seeded = time.perf_counter() - start
    # Points written by SQL have no chart pyramid, like series logged before it existed.
    start = time.perf_counter()
    subprocess.run(
        [PYTHON, "-m", "django", "metrics_summarize"], env=env, check=True, cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return big_runs, huge_run, seeded, time.perf_counter() - start


class Session:
    """One keep-alive connection with the studio's session cookie."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: str | None = None, headers=None):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
        return response.status, data

    def sign_in(self) -> None:
        status, html = self.request("GET", "/accounts/login/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1).decode()
        body = urllib.parse.urlencode(
            {"username": USER, "password": PASSWORD, "csrfmiddlewaretoken": token, "next": "/"}
        )
        status, _ = self.request(
            "POST",
            "/accounts/login/",
            body,
            {"Content-Type": "application/x-www-form-urlencoded", "Referer": "http://127.0.0.1/"},
        )
        if status != 302 or "sessionid" not in self.cookies:
            raise SystemExit(f"sign-in failed (HTTP {status})")

    def time(self, path: str, reps: int, vary=None) -> tuple[dict, bytes]:
        samples, data, refused = [], b"", 0
        for i in range(reps + 1):
            url = vary(path, i) if vary else path
            start = time.perf_counter()
            status, data = self.request("GET", url)
            elapsed = time.perf_counter() - start
            # A search stopped by the query time budget (runs/budget.py) is a 400 naming
            # query_too_expensive: timed and counted, so a slow list shows as such.
            if status == 400 and b"took longer than" in data:
                refused += 1
            elif status != 200:
                raise SystemExit(f"GET {url} → HTTP {status}: {data[:300]!r}")
            if i:  # the first request warms the worker
                samples.append(elapsed)
        result = stats(samples)
        if refused:
            result["refused"] = refused
        return result, data


def bench_runstudio(
    args, data_dir: Path, big_runs: list[str], huge_run: str | None = None
) -> dict[str, dict]:
    port = free_port()
    env = django_env(data_dir, args.database_url)
    serve = [str(ROOT / ".venv" / "bin" / "runstudio"), "serve", "--port", str(port)]
    if not Path(serve[0]).exists():
        serve = [PYTHON, "-m", "runs.sdk.cli", "serve", "--port", str(port)]
    log = open(data_dir / "serve.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        serve, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    results: dict[str, dict] = {}
    try:
        waited = wait_http("127.0.0.1", port, "/accounts/login/", proc, 60)
        say(f"  studio up in {waited:.1f}s on port {port} (runstudio serve, gunicorn)")
        session = Session(port)
        session.sign_in()
        reps = args.reps
        pages = {
            "run list: tag model=vit, sort by loss max (first page)": (
                f"/w/{WORKSPACE}/runs/?tag=model%3Dvit&sort=-metrics.loss.max"
                "&col=metrics.loss.max&top_level=0"
            ),
            "run list: search with OR, sort by loss max": (
                f"/w/{WORKSPACE}/runs/?q="
                + urllib.parse.quote("tags.model = 'vit' OR tags.model = 'gpt'")
                + "&sort=-metrics.loss.max&col=metrics.loss.max&top_level=0"
            ),
            "run list: flat, tag model=vit, sort by loss max": (
                f"/w/{WORKSPACE}/runs/?tag=model%3Dvit&sort=-metrics.loss.max&col=metrics.loss.max"
            ),
            "run list: every run, newest first (total of all)": f"/w/{WORKSPACE}/runs/",
            "run list: tag + sort by loss max, page 50": (
                f"/w/{WORKSPACE}/runs/?tag=model%3Dvit&sort=-metrics.loss.max"
                "&col=metrics.loss.max&page=50"
            ),
            "REST list: tag model=vit, sort by loss max (100)": (
                f"/api/v1/workspaces/{WORKSPACE}/runs?tag=model%3Dvit"
                "&sort=-metrics.loss.max&limit=100"
            ),
            "REST list: search with OR, sort by loss max (100)": (
                f"/api/v1/workspaces/{WORKSPACE}/runs?q="
                + urllib.parse.quote("tags.model = 'vit' OR tags.model = 'gpt'")
                + "&sort=-metrics.loss.max&limit=100"
            ),
            "REST list: every run, newest first (100)": (
                f"/api/v1/workspaces/{WORKSPACE}/runs?limit=100"
            ),
            "run detail page (a run with a 1M-point metric)": (
                f"/w/{WORKSPACE}/runs/{big_runs[0]}/" if big_runs else None
            ),
        }
        for label, path in pages.items():
            if path is None:
                continue
            results[label], body = session.time(path, reps)
            say(f"  {label:62s} {fmt(results[label])}{_total_shown(body)}")
            if b"bench_" not in body and not results[label].get("refused"):
                say("    (warning: the page shows no runs — check the URL parameters above)")
            if label.startswith("REST") and b'"next_cursor":"' in body.replace(b" ", b""):
                # The next page through the answer's cursor: keyset paging past page one.
                cursor = json.loads(body)["next_cursor"]
                label = label.replace("(100)", "(next 100, cursor)")
                path = f"{path}&cursor={urllib.parse.quote(cursor)}"
                results[label], body = session.time(path, reps)
                say(f"  {label:62s} {fmt(results[label])}")
        charts = [(big_runs[0], args.big_points)] if big_runs else []
        if huge_run:
            charts.append((huge_run, args.huge_points))
        for run_id, points in charts:
            series = f"/api/v1/runs/{run_id}/metrics/series?name={BIG_METRIC}"
            size = f"{points / 1e6:g}M-point chart"

            def fresh(path, i):  # a new bucket count per request: no cache hit, full aggregation
                return f"{path}&buckets={1000 + i}"

            label = f"{size}: downsampled series (cold, no cache)"
            results[label], body = session.time(series, reps, vary=fresh)
            say(f"  {label:58s} {fmt(results[label])}   {len(body) / 1024:.0f} KiB")
            label = f"{size}: same request again (cached)"
            results[label], _ = session.time(series + "&buckets=1000", reps)
            say(f"  {label:58s} {fmt(results[label])}")
            label = f"{size}: zoomed to 10% of the steps (cold)"

            def zoom(path, i, points=points):
                lo = points // 10 + i * 1000
                return f"{path}&x_min={lo}&x_max={lo + points // 10}"

            results[label], _ = session.time(series, reps, vary=zoom)
            say(f"  {label:58s} {fmt(results[label])}")
    finally:
        stop(proc)
        log.close()
    return results


def _total_shown(body: bytes) -> str:
    """What the answer says the total is: the pager's words, or the API's count."""
    pager = re.search(rb'id="pager-total">(.*?)</span>\s*(?:<a|</nav>)', body, re.S)
    if pager:
        words = re.sub(r"<[^>]*>", "", pager.group(1).decode())
        return "   pager: " + " ".join(words.split())
    if body.startswith(b"{"):
        data = json.loads(body)
        if "count" in data:
            about = " (estimate)" if data.get("count_is_estimate") else ""
            return f"   count: {data['count']}{about}"
    return ""


# --- MLflow ------------------------------------------------------------------------------------


def seed_mlflow(work: Path, runs: int, big_points: int) -> tuple[str, str, float]:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db_path = work / "mlflow.db"
    uri = f"sqlite:///{db_path}"
    store = SqlAlchemyStore(uri, str(work / "mlartifacts"))  # creates the schema (migrations)
    experiment_id = store.create_experiment("bench")
    del store
    start = time.perf_counter()
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA synchronous=OFF")
    rng = random.Random(1)
    run_rows, tag_rows, param_rows, metric_rows, latest_rows = [], [], [], [], []
    ms = 1_767_225_600_000
    big_run = None
    for i in range(runs):
        run_uuid = uuid.uuid4().hex
        big_run = big_run or run_uuid
        run_rows.append(
            (run_uuid, f"run {i}", "LOCAL", "bench", "", USER, "FINISHED", ms + i * 10_000,
             ms + i * 10_000 + 600_000, "", "active", f"{work}/mlartifacts/{run_uuid}",
             int(experiment_id))
        )  # fmt: skip
        shape = run_shape(i, rng)
        tag_rows += [(k, v, run_uuid) for k, v in shape["tags"].items()]
        tag_rows.append(("mlflow.runName", f"run {i}", run_uuid))
        param_rows += [(k, v, run_uuid) for k, v in shape["properties"].items()]
        for name, (last, _low, _high) in shape["metrics"].items():
            metric_rows.append((name, last, ms, run_uuid, 99, 0))
            latest_rows.append((name, last, ms, 99, 0, run_uuid))
    db.executemany(
        "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, "
        "status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, "
        "experiment_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        run_rows,
    )
    db.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?,?,?)", tag_rows)
    db.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?,?,?)", param_rows)
    db.executemany(
        "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?,?,?,?,?,?)",
        metric_rows,
    )
    db.executemany(
        "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
        "VALUES (?,?,?,?,?,?)",
        latest_rows,
    )
    # The big metric: MLflow keys history rows by (key, timestamp, step, run, value, is_nan).
    db.execute("DELETE FROM metrics WHERE run_uuid = ? AND key = ?", (big_run, BIG_METRIC))
    db.executemany(
        "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?,?,?,?,?,?)",
        ((BIG_METRIC, 0.0 if math.isnan(v) else v, int(t * 1000), big_run, s, int(math.isnan(v)))
         for s, v, t in big_series(big_points)),
    )  # fmt: skip
    db.commit()
    db.execute("ANALYZE")
    db.close()
    return uri, big_run, time.perf_counter() - start


def bench_mlflow(args, work: Path) -> dict[str, dict]:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import mlflow
    from mlflow.tracking import MlflowClient

    say(f"MLflow {mlflow.__version__}: seeding {args.mlflow_runs:,} runs + one "
        f"{args.big_points:,}-point metric by SQL into its own schema…")  # fmt: skip
    uri, big_run, seconds = seed_mlflow(work, args.mlflow_runs, args.big_points)
    say(f"  seeded in {seconds:.1f}s")
    port = free_port()
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    log = open(work / "mlflow.log", "w")  # noqa: SIM115 - closed with the process
    mlflow_bin = Path(PYTHON).parent / "mlflow"
    proc = subprocess.Popen(
        [str(mlflow_bin), "server", "--backend-store-uri", uri, "--default-artifact-root",
         str(work / "mlartifacts"), "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    results: dict[str, dict] = {}
    try:
        waited = wait_http("127.0.0.1", port, "/health", proc, 180)
        say(f"  mlflow server up in {waited:.1f}s on port {port}")
        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
        experiment = client.get_experiment_by_name("bench")

        def timed(fn, reps, warm=True):
            if warm:
                fn()
            samples = []
            for _ in range(reps):
                start = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - start)
            return stats(samples)

        label = "search_runs: tag model=vit, order by loss (first 100)"
        results[label] = timed(
            lambda: client.search_runs(
                [experiment.experiment_id],
                filter_string="tags.model = 'vit'",
                order_by=["metrics.loss DESC"],
                max_results=100,
            ),
            args.reps,
        )
        say(f"  {label:58s} {fmt(results[label])}")
        label = "search_runs: model=vit OR gpt (no OR: two searches)"
        results[label] = timed(
            lambda: [
                client.search_runs(
                    [experiment.experiment_id],
                    filter_string=f"tags.model = '{m}'",
                    order_by=["metrics.loss DESC"],
                    max_results=100,
                )
                for m in ("vit", "gpt")
            ],
            args.reps,
        )
        say(f"  {label:58s} {fmt(results[label])}")
        label = "get_run (the run detail's data)"
        results[label] = timed(lambda: client.get_run(big_run), args.reps)
        say(f"  {label:58s} {fmt(results[label])}")
        label = "get_metric_history: the 1M-point metric"
        # ~1 minute a call on this machine: one cold call and one more, to stay bounded.
        results[label] = timed(
            lambda: client.get_metric_history(big_run, BIG_METRIC), 2, warm=False
        )
        say(f"  {label:58s} {fmt(results[label])}")
    finally:
        stop(proc)
        log.close()
    return results


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--big", type=int, default=3, help="runs with a --big-points metric")
    parser.add_argument("--big-points", type=int, default=1_000_000)
    parser.add_argument(
        "--huge-points", type=int, default=10_000_000, help="one more run's series; 0 skips it"
    )
    parser.add_argument("--mlflow-runs", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument(
        "--reuse",
        type=Path,
        help="time the studio on the data a --keep run left (its folder; with --database-url, "
        "that database as it is) instead of seeding; --runs and --big must match that run",
    )
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server (postgres://user:password@host:port/db): the bench makes a "
        "fresh database there (and drops it at the end) instead of the embedded SQLite file",
    )
    args = parser.parse_args()

    work = args.reuse or Path(tempfile.mkdtemp(prefix="runstudio-bench-studio-"))
    drop_database = None
    say(f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        if args.reuse:
            args.keep = True
            big_runs = [bench_run_id(args.runs - 1 - b) for b in range(args.big)]
            huge_run = bench_run_id(args.runs - 1 - args.big) if args.huge_points else None
            say(f"Runstudio: the data seeded before in {work}")
        elif args.database_url:
            args.database_url, drop_database = fresh_postgres(args.database_url)
            say(f"PostgreSQL: a fresh database {urllib.parse.urlsplit(args.database_url).path}")
        if not args.reuse:
            say(f"Runstudio: seeding {args.runs:,} runs (3 tags, 2 properties, 5 metric summaries "
                f"each), {args.big} × {args.big_points:,}-point series and one "
                f"{args.huge_points:,}-point series into {work}…")  # fmt: skip
            big_runs, huge_run, seconds, summarized = seed_runstudio(
                work / "data", args.runs, args.big, args.big_points, args.huge_points,
                args.database_url,
            )  # fmt: skip
            say(f"  seeded by bulk SQL in {seconds:.1f}s; chart pyramids built by "
                f"metrics_summarize in {summarized:.1f}s")  # fmt: skip
        ours = bench_runstudio(args, work / "data", big_runs, huge_run)
        theirs: dict[str, dict] = {}
        if not args.skip_mlflow:
            try:
                import mlflow  # noqa: F401
            except ImportError:
                say("MLflow is not installed: skipped (pip install mlflow to compare).")
            else:
                theirs = bench_mlflow(args, work)
        if theirs:
            say("\nRatios (MLflow median / Runstudio median; MLflow has "
                f"{args.mlflow_runs:,} runs, Runstudio {args.runs:,}):")  # fmt: skip
            pairs = [
                (
                    "run list: tag model=vit, sort by loss max (first page)",
                    "search_runs: tag model=vit, order by loss (first 100)",
                ),
                (
                    "run list: search with OR, sort by loss max",
                    "search_runs: model=vit OR gpt (no OR: two searches)",
                ),
                (
                    "run detail page (a run with a 1M-point metric)",
                    "get_run (the run detail's data)",
                ),
                (
                    "1M-point chart: downsampled series (cold, no cache)",
                    "get_metric_history: the 1M-point metric",
                ),
            ]
            for mine, peer in pairs:
                if mine in ours and peer in theirs:
                    ratio = theirs[peer]["median"] / ours[mine]["median"]
                    say(f"  {ratio:7.1f}×  {mine}  vs  {peer}")
        say(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if args.keep:
            say(f"data kept in {work}" + (f" and {args.database_url}" if drop_database else ""))
        else:
            shutil.rmtree(work, ignore_errors=True)
            if drop_database:
                drop_database()


if __name__ == "__main__":
    main()
