"""The MLflow door against `mlflow server`: the same workload through the same MLflow client.

    .venv/bin/python bench/mlflow_door.py [--points 1000000] [--calls 2000] [--runs 2000]
                                          [--json out.json]

Needs the `bench` extra (the full `mlflow`, for its server). Phases, one server at a time so
neither competes with the other for the CPU:

1. `runstudio serve` (embedded SQLite, fresh data dir), a superuser, a token, a workspace;
   MLFLOW_TRACKING_URI = <server>/mlflow/bench.
2. `mlflow server --backend-store-uri sqlite:///…` (its default workers).

Workload on each, with `MlflowClient`: `log_batch` of `--points` points of one metric, 1,000
per request (MLflow's limit); `--calls` synchronous `log_metric` calls (per-call time);
`get_metric_history` of the `--points` series (the client pages it); `--runs` runs each with a
tag and a metric, then `search_runs` with a tag filter and `order_by` on the metric,
max_results=100 (median of 5). The history is checked point for point on both.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest  # noqa: E402  (the process, HTTP and /proc helpers)

os.environ.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
# The client gives up on a request after 120 s; mlflow server's search over 100,000 runs takes
# longer than that on a busy machine (~200 s of CPU), and the figure is what it takes.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "3600")
BASE_MS = 1_700_000_000_000


def team_of(i: int) -> str:
    return "vision" if i % 3 else "audio"


def loss_of(i: int, runs: int) -> float:
    """Distinct losses in a shuffled order (7919 is prime, so i → i·7919 mod n is one-to-one
    unless n is a multiple of it)."""
    return (i * 7919 % runs) / runs


@dataclass
class Seeder:
    """How a server's database is filled where the client would take too long: `runs(experiment
    id, first, runs)` and `points(run id, first, points)` (the rest of the log_batch series, for
    a server slower than the budget; None: the client logs them all)."""

    runs: Callable[[str, int, int], None]
    points: Callable[[str, int, int], None] | None = None


class Span:
    """Wall seconds, the bench process's CPU seconds (the MLflow client: its protobuf work is
    the same against both servers) and the server's CPU seconds (its whole process tree, from
    /proc) over a `with` block. On a busy machine the wall time mostly measures the other
    processes; client + server CPU is what the same work takes on an idle one."""

    def __init__(self, server_pid: int, idle_cpu_per_s: float = 0.0):
        self.pid, self.idle = server_pid, idle_cpu_per_s

    def idle_rate(self, seconds: float = 10.0) -> float:
        """The server's CPU per second while it serves nothing (MLflow's job consumers and the
        studio's worker threads poll). Reported, not subtracted: right after start-up it is
        not steady enough to take out of a figure (it zeroed mlflow server's)."""
        before = self._server_cpu()
        time.sleep(seconds)
        return (self._server_cpu() - before) / seconds

    def _server_cpu(self) -> float:
        return sum(ingest.proc_cpu_seconds(p) for p in [self.pid, *ingest.descendants(self.pid)])

    def __enter__(self) -> Span:
        self.wall, self.client, self.server = (
            time.perf_counter(),
            time.process_time(),
            self._server_cpu(),
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.client = time.process_time() - self.client
        self.server = max(0.0, self._server_cpu() - self.server - self.idle * self.wall)

    def figures(self, per: float = 1, unit: str = "s") -> dict:
        scale = 1000 if unit == "ms" else 1
        return {
            unit: round(self.wall / per * scale, 3),
            f"client_cpu_{unit}": round(self.client / per * scale, 3),
            f"server_cpu_{unit}": round(self.server / per * scale, 3),
        }


def workload(args: argparse.Namespace, uri: str, seed: Seeder, server_pid: int) -> dict:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=uri)
    result: dict = {"load_average_at_start": os.getloadavg()}
    idle = Span(server_pid).idle_rate()
    result["server_idle_cpu_ms_per_s"] = round(idle * 1000, 1)
    exp = client.create_experiment(f"door-bench-{int(time.time())}")
    run_id = client.create_run(exp).info.run_id
    base_ms = BASE_MS
    logged = args.points
    start = time.perf_counter()
    with Span(server_pid) as span:
        for first in range(0, args.points, 1000):
            metrics = [
                Metric("loss", 1.0 / (i + 1), base_ms + i, i)
                for i in range(first, min(first + 1000, args.points))
            ]
            client.log_batch(run_id, metrics=metrics, synchronous=True)
            elapsed = time.perf_counter() - start
            if seed.points is not None and first >= 20_000 and elapsed > args.budget_s:
                logged = first + len(metrics)  # a rate is measured; the rest is seeded below
                break
    # Per 1,000 points (one request), so that a side that logged fewer compares.
    result["log_batch"] = {"points": logged, **span.figures(per=logged / 1000, unit="ms")}
    result["log_batch"]["points_per_s"] = round(logged / span.wall)
    ingest.log(f"{uri}: log_batch {logged} points in {span.wall:.1f} s {result['log_batch']}")
    if logged < args.points:
        seed.points(run_id, logged, args.points)
        ingest.log(f"{uri}: points {logged}… seeded in its database (budget {args.budget_s} s)")

    with Span(server_pid) as span:
        for i in range(args.calls):
            client.log_metric(run_id, "per_call", float(i), step=i)
    result["log_metric"] = {"calls": args.calls, **span.figures(per=args.calls, unit="ms")}
    ingest.log(f"{uri}: log_metric {result['log_metric']}")

    with Span(server_pid) as span:
        history = client.get_metric_history(run_id, "loss")
    if len(history) != args.points or sorted(m.step for m in history) != list(range(args.points)):
        raise ingest.BenchmarkError(f"{uri}: history has {len(history)} points, not {args.points}")
    result["get_metric_history"] = {"points": len(history), **span.figures()}
    ingest.log(f"{uri}: get_metric_history {result['get_metric_history']}")

    search_exp = client.create_experiment(f"door-search-{int(time.time())}")
    # A few runs through the client show each server's own shape of a run; seed.runs copies
    # it (tags, metric rows) into the rest straight in that server's database, since creating
    # 100,000 runs through the client takes ~0.1 s a run on either side.
    through_client = min(args.runs, 20)
    start = time.perf_counter()
    for i in range(through_client):
        rid = client.create_run(search_exp, tags={"team": team_of(i)}).info.run_id
        client.log_batch(rid, metrics=[Metric("loss", loss_of(i, args.runs), base_ms, 0)])
    seed.runs(search_exp, through_client, args.runs)
    result["seed_runs_s"] = round(time.perf_counter() - start, 1)
    expected = sorted(
        loss_of(i, args.runs)
        for i in range(args.runs)
        if team_of(i) == "vision" and loss_of(i, args.runs) < 0.5
    )[:100]
    samples: list[float] = []
    with Span(server_pid) as span:
        # Five samples, or fewer when a search takes minutes (mlflow server on 100,000 runs).
        while len(samples) < 5 and (not samples or sum(samples) < args.budget_s / 5):
            start = time.perf_counter()
            found = client.search_runs(
                [search_exp],
                filter_string="tags.team = 'vision' and metrics.loss < 0.5",
                order_by=["metrics.loss ASC"],
                max_results=100,
            )
            samples.append(time.perf_counter() - start)
    losses = [r.data.metrics["loss"] for r in found]
    if losses != expected or any(r.data.tags.get("team") != "vision" for r in found):
        raise ingest.BenchmarkError(f"{uri}: search_runs found other runs or another order")
    result["search_runs"] = {
        "runs": args.runs,
        "samples": len(samples),
        "median_ms": round(statistics.median(samples) * 1000, 1),
        **span.figures(per=len(samples), unit="ms"),
    }
    ingest.log(
        f"{uri}: search_runs over {args.runs} runs {statistics.median(samples) * 1000:.0f} ms"
    )
    result["load_average_at_end"] = os.getloadavg()
    return result


def seed_studio(experiment_id: str, first: int, runs: int) -> None:
    """In a Django process on the studio's data dir: runs `first`… `runs - 1` of the search
    experiment as copies of the first run the client made (its fields, tags and series), each
    with its own id, name, team tag and a one-point `loss` series."""
    import uuid

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    sys.path.insert(0, str(ingest.REPO))
    django.setup()
    from django.db import transaction

    from runs import points
    from runs.models import MetricSeries, Run, RunTag

    template = Run.objects.filter(experiment_id=int(experiment_id)).order_by("pk").first()
    fields = {
        f.attname: getattr(template, f.attname)
        for f in Run._meta.concrete_fields
        if not f.primary_key and f.attname not in ("run_id", "display_name")
    }
    tags = [(t.key, t.value) for t in template.tags.all() if t.key != "team"]
    series = template.metric_series.get(name="loss")
    time_s = BASE_MS / 1000
    # 500 runs a transaction: the server's own threads write too (worker liveness), and one
    # that waits on SQLite's lock longer than its busy timeout stops `runstudio serve`.
    for at in range(first, runs, 500):
        chunk = range(at, min(at + 500, runs))
        with transaction.atomic():
            made = Run.objects.bulk_create(
                Run(run_id=uuid.uuid4().hex, display_name=f"seed-{i}", **fields) for i in chunk
            )
            RunTag.objects.bulk_create(
                RunTag(run=run, key=k, value=v)
                for run, i in zip(made, chunk, strict=True)
                for k, v in [*tags, ("team", team_of(i))]
            )
            made_series = MetricSeries.objects.bulk_create(
                MetricSeries(
                    run=run,
                    name="loss",
                    kind=series.kind,
                    count=1,
                    last_value=loss_of(i, runs),
                    min_value=loss_of(i, runs),
                    max_value=loss_of(i, runs),
                    last_step=0,
                    last_time=time_s,
                    steps_sorted=True,
                    times_sorted=True,
                )
                for run, i in zip(made, chunk, strict=True)
            )
            points.insert((s.pk, 0, [0], [s.last_value], [time_s]) for s in made_series)


def seed_mlflow(db: Path, experiment_id: str, first: int, runs: int) -> None:
    """Straight into `mlflow server`'s SQLite file, in its own schema: copies of the first run
    the client made (its runs row and tags, with its own id, name and team tag), each with a
    `loss` row in metrics and latest_metrics, as MLflow's store writes them."""
    import sqlite3
    import uuid

    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    template = con.execute(
        "SELECT * FROM runs WHERE experiment_id = ? ORDER BY start_time LIMIT 1",
        (int(experiment_id),),
    ).fetchone()
    columns = list(template.keys())
    tags = [
        (r["key"], r["value"])
        for r in con.execute(
            "SELECT key, value FROM tags WHERE run_uuid = ?", (template["run_uuid"],)
        )
        if r["key"] not in ("team", "mlflow.runName")
    ]
    insert_run = f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    for at in range(first, runs, 5000):
        rows, tag_rows, metric_rows = [], [], []
        for i in range(at, min(at + 5000, runs)):
            run_uuid = uuid.uuid4().hex
            values = dict(template) | {
                "run_uuid": run_uuid,
                "name": f"seed-{i}",
                "artifact_uri": template["artifact_uri"].replace(template["run_uuid"], run_uuid),
            }
            rows.append([values[c] for c in columns])
            tag_rows += [
                (k, v, run_uuid)
                for k, v in [*tags, ("team", team_of(i)), ("mlflow.runName", f"seed-{i}")]
            ]
            metric_rows.append(("loss", loss_of(i, runs), BASE_MS, 0, 0, run_uuid))
        with con:
            con.executemany(insert_run, rows)
            con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", tag_rows)
            con.executemany(
                "INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                metric_rows,
            )
            con.executemany(
                "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                metric_rows,
            )
    con.close()


def seed_mlflow_points(db: Path, run_id: str, first: int, points: int) -> None:
    """The rest of the log_batch series (points `first`…), as MLflow's store writes them: a
    metrics row each, and latest_metrics moved to the last one."""
    import sqlite3

    con = sqlite3.connect(db)
    with con:
        con.executemany(
            "INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid) "
            "VALUES ('loss', ?, ?, ?, 0, ?)",
            ((1.0 / (i + 1), BASE_MS + i, i, run_id) for i in range(first, points)),
        )
        last = points - 1
        con.execute(
            "UPDATE latest_metrics SET value = ?, timestamp = ?, step = ? "
            "WHERE run_uuid = ? AND key = 'loss'",
            (1.0 / (last + 1), BASE_MS + last, last, run_id),
        )
    con.close()


def runstudio_phase(args: argparse.Namespace, tmp: Path) -> dict:
    data_dir = tmp / "studio-data"
    data_dir.mkdir()
    env = dict(os.environ)
    env.update(
        RUNSTUDIO_DATA_DIR=str(data_dir),
        RUNSTUDIO_HOME=str(tmp / "home"),
        DJANGO_SUPERUSER_USERNAME=ingest.USERNAME,
        DJANGO_SUPERUSER_PASSWORD=ingest.PASSWORD,
        DJANGO_SUPERUSER_EMAIL="bench@example.invalid",
    )
    env.pop("DATABASE_URL", None)
    port = ingest.free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp / "studio.log"
    server = ingest.start_process(
        ingest.server_command(argparse.Namespace(server="serve"), port), env=env, log_path=log_path
    )
    try:
        ingest.time_to_login_page(base, server, 120, log_path)
        ingest.wait_idle(server.pid)
        subprocess.run(
            [sys.executable, str(ingest.REPO / "manage.py"), "createsuperuser", "--noinput"],
            env=env,
            check=True,
            capture_output=True,
        )
        token = ingest.api_ok(
            base,
            "POST",
            "/auth/token",
            {"username": ingest.USERNAME, "password": ingest.PASSWORD, "name": "b"},
        )["token"]
        ingest.api_ok(base, "POST", "/workspaces", {"name": ingest.WORKSPACE}, token)
        os.environ["MLFLOW_TRACKING_TOKEN"] = token
        try:

            def seed(experiment_id: str, first: int, runs: int) -> None:
                subprocess.run(
                    [sys.executable, __file__, "--seed-studio", f"{experiment_id},{first},{runs}"],
                    env=env,
                    check=True,
                )

            return workload(
                args, f"{base}/mlflow/{ingest.WORKSPACE}", Seeder(runs=seed), server.pid
            )
        finally:
            os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    finally:
        ingest.stop_process(server)


def mlflow_phase(args: argparse.Namespace, tmp: Path) -> dict:
    port = ingest.free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = ingest.mlflow_server_command(tmp, port)
    log_path = tmp / "mlflow.log"
    server = ingest.start_process(cmd, env=dict(os.environ), log_path=log_path)
    try:
        # ~25 s on a quiet machine; minutes when other work keeps the cores busy.
        ingest.wait_http(uri + "/health", server, 900, log_path)
        ingest.wait_idle(server.pid)
        db = tmp / "mlflow.db"
        return workload(
            args,
            uri,
            Seeder(
                runs=lambda experiment_id, first, runs: seed_mlflow(db, experiment_id, first, runs),
                points=lambda run_id, first, points: seed_mlflow_points(db, run_id, first, points),
            ),
            server.pid,
        )
    finally:
        ingest.stop_process(server)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument(
        "--budget-s",
        type=float,
        default=300,
        help="mlflow server's log_batch stops after this long (its rate is the figure; the rest "
        "of the series is written into its database); its searches stop repeating after a fifth",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--seed-studio", help=argparse.SUPPRESS)  # the studio's seeding process
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl+C, so the `finally`s stop the servers this run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.seed_studio:
        experiment_id, first, runs = args.seed_studio.split(",")
        seed_studio(experiment_id, int(first), int(runs))
        return 0
    with tempfile.TemporaryDirectory(prefix="mlflow-door-bench-") as tmp:
        results = {"args": vars(args) | {"json": str(args.json)}, "machine": ingest.machine_facts()}
        results["runstudio"] = runstudio_phase(args, Path(tmp))
        if args.json:  # written now too: the peer's side can take long
            args.json.write_text(json.dumps(results, indent=2))
        results["mlflow"] = mlflow_phase(args, Path(tmp))
    rs, ml = results["runstudio"], results["mlflow"]
    # MLflow's figure ÷ Runstudio's: per request for log_batch (1,000 points), log_metric and
    # search_runs, whole for get_metric_history. Wall: as measured, on whatever machine load.
    # CPU: (client + server CPU) ÷ (client + server CPU), what the wall ratio is on an idle
    # machine, where the synchronous client and the server take turns.
    keys = {"log_batch": "ms", "log_metric": "ms", "get_metric_history": "s", "search_runs": "ms"}
    goals = {"log_batch": 10, "log_metric": 5, "get_metric_history": 10, "search_runs": 10}

    def cpu(side: dict, unit: str) -> float:
        return side[f"client_cpu_{unit}"] + side[f"server_cpu_{unit}"]

    results["ratios"] = {
        name: {
            "goal": goals[name],
            "wall": round(ml[name][unit] / rs[name][unit], 1),
            "cpu": round(cpu(ml[name], unit) / cpu(rs[name], unit), 1),
            "server_cpu": round(ml[name][f"server_cpu_{unit}"] / rs[name][f"server_cpu_{unit}"], 1),
        }
        for name, unit in keys.items()
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
