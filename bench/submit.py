"""Submission benchmark: how soon a submitted script's output is visible, and how fast a
chatty script's output streams to `wait_for_completion(show_output=True)`.

    .venv/bin/python bench/submit.py                 # 5 latency samples, 5 s of chatter
    .venv/bin/python bench/submit.py --samples 3 --seconds 10 --json out.json

It starts `runstudio serve` (gunicorn + one `local` worker, embedded SQLite) in a temp data
directory, the way a user does, and measures through the REST API as the studio sees it:

1. **Submit → first log line**: `exp.submit()` of a script whose first statement prints a line;
   the API's `GET /runs/{id}/files/logs/70_driver_log.txt` is polled every 20 ms until the line
   is there. Also reported: the `submit()` call itself (pack + upload), and submit → Running.
2. **Log throughput**: a script prints time-stamped lines (~75 bytes) as fast as it can for
   `--seconds`; `wait_for_completion(show_output=True)` writes them into a sink that notes when
   each line arrived. Reported: lines/s received while streaming, and each line's lag from
   `print` to `show_output` (median, p95, max). Every line is checked: a lost, repeated or
   reordered line fails the benchmark (exit status 2).
"""

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
sys.path.insert(0, str(ROOT))

from bench.common import PASSWORD, start_studio  # noqa: E402
from runs.sdk import Experiment, ScriptRunConfig, Workspace  # noqa: E402
from runs.sdk.client import Client, NotFound  # noqa: E402

FIRST_LINE = "first line from the script"


def say(text: str) -> None:
    print(text, flush=True)


def start_server(data_dir: Path) -> tuple[subprocess.Popen, str, str]:
    proc, url = start_studio(data_dir, local_workers=1)
    token = Client(url, None).post("/auth/token", {"username": "bench", "password": PASSWORD})[
        "token"
    ]
    Client(url, token).post("/workspaces", {"name": "bench"})
    return proc, url, token


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def first_line_latency(exp: Experiment, client: Client, source: Path) -> dict[str, float]:
    (source / "hello.py").write_text(f"print({FIRST_LINE!r}, flush=True)\n")
    t0 = time.perf_counter()
    run = exp.submit(ScriptRunConfig(source_directory=source, script="hello.py"))
    submitted = time.perf_counter() - t0
    running = None
    path = f"/runs/{run.id}/files/logs/70_driver_log.txt"
    while True:
        if running is None and client.get(f"/runs/{run.id}")["status"] in (
            "Running",
            "Finalizing",
            "Completed",
        ):
            running = time.perf_counter() - t0
        try:
            data = client.request("GET", path, params={"offset": 0}, headers={"Accept": "*/*"})
            if FIRST_LINE.encode() in data.content:
                break
        except NotFound:
            pass
        if time.perf_counter() - t0 > 60:
            raise SystemExit("the first line never arrived")
        time.sleep(0.02)
    seen = time.perf_counter() - t0
    run.wait_for_completion()
    return {"submit_call_s": submitted, "to_running_s": running or seen, "first_line_s": seen}


class LineSink(io.TextIOBase):
    """Collects streamed text and when each chatty line was received."""

    def __init__(self) -> None:
        self.partial = ""
        self.lines: list[tuple[str, float]] = []

    def write(self, s: str) -> int:
        now = time.time()
        text = self.partial + s
        *complete, self.partial = text.split("\n")
        self.lines += [(line, now) for line in complete if line.startswith("line ")]
        return len(s)


def throughput(exp: Experiment, source: Path, seconds: float) -> dict[str, float]:
    """A script prints stamped lines as fast as it can for `seconds`; each line's lag is its
    arrival in show_output minus its print time (one machine, one clock)."""
    (source / "chatty.py").write_text(
        "import sys, time\n"
        f"end = time.time() + {seconds}\n"
        "i = 0\n"
        "while (now := time.time()) < end:\n"
        "    sys.stdout.write(f'line {i:09d} t={now:.6f} loss=0.123456789 acc=0.987654321\\n')\n"
        "    i += 1\n"
    )
    sink = LineSink()
    t0 = time.perf_counter()
    run = exp.submit(ScriptRunConfig(source_directory=source, script="chatty.py"))
    details = run.wait_for_completion(show_output=True, out=sink, poll_interval=0.2)
    total = time.perf_counter() - t0
    numbers = [int(line[5:14]) for line, _ in sink.lines]
    if details["status"] != "Completed" or numbers != list(range(len(numbers))) or not numbers:
        say(
            f"FAILED: status {details['status']}, {len(numbers)} lines, in order: "
            f"{numbers == list(range(len(numbers)))}"
        )
        raise SystemExit(2)
    lags = sorted(seen - float(line.split(" t=")[1].split()[0]) for line, seen in sink.lines)
    window = sink.lines[-1][1] - sink.lines[0][1]
    return {
        "lines": len(numbers),
        "script_seconds": seconds,
        "lines_per_s_streaming": len(numbers) / window if window > 0 else float("inf"),
        "seconds_submit_to_end": total,
        "lag_median_s": statistics.median(lags),
        "lag_p95_s": lags[int(0.95 * (len(lags) - 1))],
        "lag_max_s": lags[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the script chats")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="runstudio-bench-submit-") as tmp:
        data_dir, source = Path(tmp) / "data", Path(tmp) / "src"
        data_dir.mkdir()
        source.mkdir()
        say("starting `runstudio serve` (gunicorn + a local worker) …")
        proc, url, token = start_server(data_dir)
        try:
            client = Client(url, token)
            exp = Experiment(Workspace("bench", url=url, token=token), "bench")
            first_line_latency(exp, client, source)  # warm-up: imports, first connections
            samples = [first_line_latency(exp, client, source) for _ in range(args.samples)]
            chat = throughput(exp, source, args.seconds)
        finally:
            stop(proc)

    figures: dict = {"first_line": {}, "throughput": chat}
    say("\nsubmit → first log line visible through the API (studio's view)")
    for key in ("submit_call_s", "to_running_s", "first_line_s"):
        values = [s[key] for s in samples]
        figures["first_line"][key] = {
            "min": min(values),
            "median": statistics.median(values),
            "max": max(values),
        }
        f = figures["first_line"][key]
        say(f"  {key:<16} min {f['min']:.3f} s   median {f['median']:.3f} s   max {f['max']:.3f} s")
    say(
        f"\nlog throughput: a script printing for {chat['script_seconds']:.0f} s → show_output: "
        f"{chat['lines']:,} lines"
    )
    say(f"  {chat['lines_per_s_streaming']:,.0f} lines/s received while streaming")
    say(
        f"  lag (printed → shown): median {chat['lag_median_s']:.2f} s, "
        f"p95 {chat['lag_p95_s']:.2f} s, max {chat['lag_max_s']:.2f} s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
