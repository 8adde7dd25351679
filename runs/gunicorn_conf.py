"""gunicorn settings for `runstudio serve` (`--config python:runs.gunicorn_conf`).

`runstudio serve` starts gunicorn first and, at the same time, checks migrations and static
files in its own process (runs/serving.py). Each web worker meanwhile loads Django and the
URLconf (the slow part of its start), then waits at a gate — a pipe whose write end the serving
process closes once the database and static files are ready — before it loads the WSGI app
(whitenoise indexes the static files then) and takes requests. A browser that connects earlier
waits in the listen queue instead of meeting an unmigrated database. While it waits, the worker
tells the arbiter it is alive, so a long first migration is not taken for a hung worker.

Nothing here imports Django at module level: the arbiter (master) imports this file and stays
small; only the workers load the app.
"""

import gc
import os
import select
import sys

GATE_ENV = "RUNSTUDIO_SERVE_GATE_FD"
# A request body at least this big is collected right after its response (post_request).
COLLECT_AFTER_BYTES = 256 * 1024


def command(*, host: str, port: int, workers: int, threads: int) -> list[str]:
    """The gunicorn command line `runstudio serve` runs (importable without Django)."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "studio.wsgi:application",
        "--config",
        "python:runs.gunicorn_conf",
        "--bind",
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        "gthread",
        "--access-logfile",
        "-",
        # Its default path is shared by every gunicorn of the user: two servers would clash.
        "--no-control-socket",
    ]


def post_fork(server, worker):
    """In the worker, before it loads the app."""
    import django
    from django.urls import get_resolver

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    django.setup(set_prefix=False)
    get_resolver().url_patterns  # noqa: B018 - imports the URLconf (views, API, schema) now
    gate = os.environ.get(GATE_ENV)
    if not gate:
        return
    fd = int(gate)
    try:
        while True:
            readable, _, _ = select.select([fd], [], [], 1.0)
            worker.notify()
            if readable and not os.read(fd, 512):
                return  # end of file: the serving process is ready (or gone)
    except OSError:
        return  # no gate after all (e.g. a worker restarted later)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


def post_worker_init(worker):
    """Everything loaded so far (Django, the app) lives as long as the worker: freeze it, so a
    full garbage collection only looks at what requests made (~1 ms instead of ~130 ms)."""
    gc.collect()
    gc.freeze()


def post_request(worker, req, environ, resp):
    """A request and its DRF wrapper refer to each other, so what a request parsed — a metric
    batch's lists of floats, megabytes — stays until the cyclic collector runs, and a batch's
    floats are not containers, so they hardly move its counters: during an ingest the worker
    grew by ~3 MB a batch (~120 MB a million points) before this. Collect after a big body."""
    try:
        size = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        size = 0
    if size >= COLLECT_AFTER_BYTES or environ.get("HTTP_TRANSFER_ENCODING"):
        gc.collect()
