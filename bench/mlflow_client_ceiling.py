"""How fast the MLflow client itself can go: the door's workloads against a server that costs
nothing.

    .venv/bin/python bench/mlflow_client_ceiling.py [--points 1000000] [--door-json door.json]

bench/mlflow_door.py compares `mlflow server` and Runstudio through the same `MlflowClient`.
Its time on either side is the client's own work (building and parsing protobuf messages) plus
the server's. This script measures the first part alone: a server in its own process answers
`runs/log-batch` with `{}` and `metrics/get-history` with pages it built before the clock
started (the shape mlflow server sends: key, value, timestamp, step), so what is timed is the
client. With `--door-json` (the `--json` output of bench/mlflow_door.py) it prints the highest
ratio any server could reach through this client: mlflow server's time ÷ the client alone.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest  # noqa: E402  (free_port, log)

os.environ.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
BASE_MS = 1_700_000_000_000
PAGE = 25_000  # the client's page size for get-history (GET_METRIC_HISTORY_MAX_RESULTS)


def history_pages(points: int) -> list[bytes]:
    """The get-history answers for a series of `points` points, page by page."""
    pages = []
    for first in range(0, points, PAGE):
        last = min(first + PAGE, points)
        body = {
            "metrics": [
                {"key": "loss", "value": 1.0 / (i + 1), "timestamp": BASE_MS + i, "step": i}
                for i in range(first, last)
            ]
        }
        if last < points:
            body["next_page_token"] = str(last // PAGE)
        pages.append(json.dumps(body).encode())
    return pages


def serve(port: int, points: int, ready) -> None:
    pages = history_pages(points)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's session expects

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without this, Nagle's algorithm holds the
            # second until the client's delayed ACK (~40 ms a request).
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer(b"{}")

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            token = query.get("page_token", ["0"])[0] or "0"
            self._answer(pages[int(token)])

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    ready.set()
    server.serve_forever()


def measure(uri: str, points: int) -> dict:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=uri)
    run_id = "0" * 32
    t0, c0 = time.perf_counter(), time.process_time()
    for first in range(0, points, 1000):
        metrics = [
            Metric("loss", 1.0 / (i + 1), BASE_MS + i, i)
            for i in range(first, min(first + 1000, points))
        ]
        client.log_batch(run_id, metrics=metrics, synchronous=True)
    log_batch = (time.perf_counter() - t0, time.process_time() - c0)
    t0, c0 = time.perf_counter(), time.process_time()
    history = client.get_metric_history(run_id, "loss")
    get_history = (time.perf_counter() - t0, time.process_time() - c0)
    if len(history) != points or history[-1].step != points - 1:
        raise ingest.BenchmarkError(f"the client read {len(history)} points, not {points}")
    return {
        "log_batch_ms_per_request": round(log_batch[0] / (points / 1000) * 1000, 2),
        "log_batch_client_cpu_ms_per_request": round(log_batch[1] / (points / 1000) * 1000, 2),
        "get_metric_history_s": round(get_history[0], 2),
        "get_metric_history_client_cpu_s": round(get_history[1], 2),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--door-json", type=Path, help="bench/mlflow_door.py --json output")
    args = p.parse_args()
    port = ingest.free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(port, args.points, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(120):
            raise ingest.BenchmarkError("the null server did not start")
        ingest.log(f"the MLflow client against a server that costs nothing, {args.points:,} points")
        result = measure(f"http://127.0.0.1:{port}", args.points)
    finally:
        server.terminate()
    print(json.dumps(result, indent=2))
    if args.door_json:
        door = json.loads(args.door_json.read_text())["mlflow"]
        ceiling_batch = door["log_batch"]["ms"] / result["log_batch_ms_per_request"]
        ceiling_history = door["get_metric_history"]["s"] / result["get_metric_history_s"]
        print(f"highest ratio through this client, log_batch:          {ceiling_batch:.1f}x")
        print(f"highest ratio through this client, get_metric_history: {ceiling_history:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
