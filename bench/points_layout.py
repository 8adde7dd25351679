"""How PostgreSQL takes a million scalar points: one row a point (the studio's layout until
2026-12-01) against one row a block of consecutive points (columns packed in `bytea`; the
studio now keeps blocks of 64 as arrays: runs/points.py).

Run from the repository root with the project's venv::

    .venv/bin/python bench/points_layout.py [--points-per-metric 100000] [--metrics 10]
                                            [--database-url postgres://…]

Both layouts get the same points as bench/ingest.py's COPY floor: binary ``COPY`` from
psycopg, one transaction per 20,000 points, each series' steps in order. The row layout is
the studio's ``runs_metricpoint`` (series_id, seq, step, value, time; key (series_id, seq));
a block row is (series_id, first_seq, count, steps, values, times) keyed by (series_id,
first_seq), its three columns little-endian int64 / float64 arrays. Reported per layout: wall
time, the client's CPU, the database backend's CPU (from /proc), the table's size with its
index, and reading one whole series back into Python lists.

Not a goal of DESIGN.md: it measured what storing points in blocks would save, the change that
moved ingest on PostgreSQL past 0.8× its COPY floor (docs/architecture.md, Ingest).
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import time
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest  # noqa: E402 - the throwaway PostgreSQL server and fresh databases

CHUNK_POINTS = 20_000  # points per transaction, as the COPY floor
BLOCKS = (64, 256, 1024)  # points per block row


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(db, layout: int | None, n: int, m: int) -> dict[str, float]:
    """COPY n points of m series in `layout` (None: a row a point; k: blocks of k points)."""
    pid = db.execute("SELECT pg_backend_pid()").fetchone()[0]
    table = "rows_layout" if layout is None else "blocks_layout"
    db.execute(f"TRUNCATE {table}")
    db.commit()
    steps_per_chunk = max(1, CHUNK_POINTS // m)
    now = time.time()
    wall, cpu, pg = time.perf_counter(), time.process_time(), backend_cpu(pid)
    for start in range(0, n, steps_per_chunk):
        stop = min(n, start + steps_per_chunk)
        with db.cursor() as cursor:
            if layout is None:
                with cursor.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(["int8", "int8", "int8", "float8", "float8"])
                    for sid in range(1, m + 1):
                        for step in range(start, stop):
                            copy.write_row((sid, step, step, step * 1e-3, now + step * 1e-3))
            else:
                with cursor.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(["int8", "int8", "int4", "bytea", "bytea", "bytea"])
                    for sid in range(1, m + 1):
                        steps = range(start, stop)
                        k = len(steps)
                        packed = (
                            struct.pack(f"<{k}q", *steps),
                            struct.pack(f"<{k}d", *[s * 1e-3 for s in steps]),
                            struct.pack(f"<{k}d", *[now + s * 1e-3 for s in steps]),
                        )
                        for at in range(0, k, layout):
                            end = min(k, at + layout)
                            cut = [column[8 * at : 8 * end] for column in packed]
                            copy.write_row((sid, start + at, end - at, *cut))
        db.commit()
    result = {
        "wall_s": time.perf_counter() - wall,
        "client_cpu_s": time.process_time() - cpu,
        "backend_cpu_s": backend_cpu(pid) - pg,
    }
    result["mib"] = db.execute(f"SELECT pg_total_relation_size('{table}')").fetchone()[0] / 2**20
    wall = time.perf_counter()
    with db.cursor() as cursor:
        if layout is None:
            cursor.execute(
                f"SELECT step, value, time FROM {table} WHERE series_id = 1 ORDER BY seq"
            )
            rows = cursor.fetchall()
            values = [row[1] for row in rows]
        else:
            cursor.execute(
                f"SELECT steps, vals, times FROM {table} WHERE series_id = 1 ORDER BY first_seq"
            )
            values = array("d")
            for _, vals, _ in cursor.fetchall():
                values.frombytes(vals)
            values = values.tolist()
    result["read_series_s"] = time.perf_counter() - wall
    if len(values) != n:
        raise ingest.BenchmarkError(f"{table}: read {len(values)} points of series 1, not {n}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points-per-metric", type=int, default=100_000)
    parser.add_argument("--metrics", type=int, default=10)
    parser.add_argument("--database-url", help="a PostgreSQL server to use (default: start one)")
    args = parser.parse_args()
    import psycopg

    tmp = Path(tempfile.mkdtemp(prefix="runstudio-layout-"))
    server = None if args.database_url else ingest.ThrowawayPostgres(tmp)
    try:
        url = ingest.fresh_database(args.database_url or server.url, "points_layout")
        with psycopg.connect(url) as db:
            db.execute(
                "CREATE TABLE rows_layout (series_id int8, seq int8, step int8, value float8, "
                "time float8, PRIMARY KEY (series_id, seq))"
            )
            db.execute(
                "CREATE TABLE blocks_layout (series_id int8, first_seq int8, count int4, "
                "steps bytea, vals bytea, times bytea, PRIMARY KEY (series_id, first_seq))"
            )
            db.commit()
            n, m = args.points_per_metric, args.metrics
            print(f"{n * m:,} points ({m} series), COPY BINARY, {CHUNK_POINTS:,} a transaction")
            print(f"{'layout':<18}{'wall':>9}{'client CPU':>12}{'backend CPU':>13}"
                  f"{'size':>10}{'read a series':>15}")  # fmt: skip
            for layout in (None, *BLOCKS):
                r = measure(db, layout, n, m)
                label = "a row a point" if layout is None else f"blocks of {layout}"
                print(
                    f"{label:<18}{r['wall_s']:>8.3f}s{r['client_cpu_s']:>11.3f}s"
                    f"{r['backend_cpu_s']:>12.3f}s{r['mib']:>7.1f} MiB{r['read_series_s']:>14.3f}s"
                )
            print(f"load average {os.getloadavg()[0]:.2f}")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
