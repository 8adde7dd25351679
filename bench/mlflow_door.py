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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest  # noqa: E402  (the process, HTTP and /proc helpers)

os.environ.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")


def workload(args: argparse.Namespace, uri: str) -> dict:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=uri)
    result: dict = {}
    exp = client.create_experiment(f"door-bench-{int(time.time())}")
    run_id = client.create_run(exp).info.run_id
    base_ms = 1_700_000_000_000
    start = time.perf_counter()
    for first in range(0, args.points, 1000):
        metrics = [
            Metric("loss", 1.0 / (i + 1), base_ms + i, i)
            for i in range(first, min(first + 1000, args.points))
        ]
        client.log_batch(run_id, metrics=metrics, synchronous=True)
    seconds = time.perf_counter() - start
    result["log_batch"] = {
        "points": args.points,
        "s": round(seconds, 2),
        "points_per_s": round(args.points / seconds),
    }
    ingest.log(f"{uri}: log_batch {args.points} points in {seconds:.1f} s")

    start = time.perf_counter()
    for i in range(args.calls):
        client.log_metric(run_id, "per_call", float(i), step=i)
    seconds = time.perf_counter() - start
    result["log_metric"] = {
        "calls": args.calls,
        "ms_per_call": round(seconds / args.calls * 1000, 2),
    }
    ingest.log(f"{uri}: log_metric {seconds / args.calls * 1000:.2f} ms a call")

    start = time.perf_counter()
    history = client.get_metric_history(run_id, "loss")
    seconds = time.perf_counter() - start
    if len(history) != args.points or sorted(m.step for m in history) != list(range(args.points)):
        raise ingest.BenchmarkError(f"{uri}: history has {len(history)} points, not {args.points}")
    result["get_metric_history"] = {"points": len(history), "s": round(seconds, 2)}
    ingest.log(f"{uri}: get_metric_history {len(history)} points in {seconds:.1f} s")

    search_exp = client.create_experiment(f"door-search-{int(time.time())}")
    start = time.perf_counter()
    for i in range(args.runs):
        rid = client.create_run(
            search_exp, tags={"team": "vision" if i % 3 else "audio"}
        ).info.run_id
        client.log_batch(rid, metrics=[Metric("loss", (i * 7919 % 1000) / 1000, base_ms, 0)])
    result["seed_runs_s"] = round(time.perf_counter() - start, 1)
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        found = client.search_runs(
            [search_exp],
            filter_string="tags.team = 'vision' and metrics.loss < 0.5",
            order_by=["metrics.loss ASC"],
            max_results=100,
        )
        samples.append(time.perf_counter() - start)
    losses = [r.data.metrics["loss"] for r in found]
    if losses != sorted(losses) or len(found) != min(100, len(found)):
        raise ingest.BenchmarkError(f"{uri}: search_runs order is wrong")
    result["search_runs"] = {
        "runs": args.runs,
        "median_ms": round(statistics.median(samples) * 1000, 1),
    }
    ingest.log(
        f"{uri}: search_runs over {args.runs} runs {statistics.median(samples) * 1000:.0f} ms"
    )
    return result


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
            return workload(args, f"{base}/mlflow/{ingest.WORKSPACE}")
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
        ingest.wait_http(uri + "/health", server, 180, log_path)
        ingest.wait_idle(server.pid)
        return workload(args, uri)
    finally:
        ingest.stop_process(server)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=2_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlflow-door-bench-") as tmp:
        results = {"args": vars(args) | {"json": str(args.json)}, "machine": ingest.machine_facts()}
        results["runstudio"] = runstudio_phase(args, Path(tmp))
        results["mlflow"] = mlflow_phase(args, Path(tmp))
    rs, ml = results["runstudio"], results["mlflow"]
    results["ratios"] = {
        "log_batch (points/s, Runstudio ÷ MLflow; goal ≥ 10)": round(
            rs["log_batch"]["points_per_s"] / ml["log_batch"]["points_per_s"], 1
        ),
        "log_metric (MLflow ms ÷ Runstudio ms; goal ≥ 5)": round(
            ml["log_metric"]["ms_per_call"] / rs["log_metric"]["ms_per_call"], 1
        ),
        "get_metric_history (MLflow s ÷ Runstudio s; goal ≥ 10)": round(
            ml["get_metric_history"]["s"] / rs["get_metric_history"]["s"], 1
        ),
        "search_runs (MLflow ms ÷ Runstudio ms; goal ≥ 10)": round(
            ml["search_runs"]["median_ms"] / rs["search_runs"]["median_ms"], 1
        ),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
