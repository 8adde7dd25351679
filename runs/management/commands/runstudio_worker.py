"""`manage.py runstudio_worker --queue-name <target>`: django-tasks-db's `db_worker`, plus
liveness. What `runstudio worker -c <target>` runs.

It registers a `Worker` row, and a background thread stamps it every
RUNSTUDIO_HEARTBEAT_INTERVAL seconds and runs the reaper (runs.compute.runs_reap_stale) every
RUNSTUDIO_REAPER_INTERVAL seconds, so any live worker also keeps dead runs from staying
Running. The row is marked stopped when the worker exits. Every db_worker option works.
"""

import secrets
import threading

from django.conf import settings
from django.db import close_old_connections, connection
from django_tasks_db.management.commands import db_worker

from runs import compute


def worker_id_for(queue_name: str) -> str:
    hostname, pid = compute.worker_identity()
    return f"{hostname[:40]}-{pid}-{secrets.token_hex(2)}"


class _Liveness(threading.Thread):
    def __init__(self, *, worker_id: str, queue_name: str) -> None:
        super().__init__(name="runstudio-worker-liveness", daemon=True)
        self.worker_id, self.queue_name = worker_id, queue_name
        self.stop = threading.Event()

    def run(self) -> None:
        beat = max(0.2, float(settings.RUNSTUDIO_HEARTBEAT_INTERVAL))
        reap_every = max(0.2, float(settings.RUNSTUDIO_REAPER_INTERVAL))
        since_reap = reap_every  # reap once at start: a restarted worker cleans up first
        while not self.stop.is_set():
            try:
                close_old_connections()
                compute.worker_heartbeat(worker_id=self.worker_id, queue_name=self.queue_name)
                if since_reap >= reap_every:
                    since_reap = 0.0
                    for run in compute.runs_reap_stale():
                        print(f"reaper: {run.run_id} → {run.status}", flush=True)
            except Exception as e:  # the database may be briefly away; try again next beat
                print(f"worker liveness: {type(e).__name__}: {e}", flush=True)
            finally:
                connection.close()
            self.stop.wait(beat)
            since_reap += beat


class Command(db_worker.Command):
    help = "Run a django-tasks-db worker that also records its liveness and reaps dead runs."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.set_defaults(worker_id=None)  # db_worker's is random; ours says where it runs

    def handle(self, *args, **options):
        queue_name = options["queue_name"]
        worker_id = options["worker_id"] = options["worker_id"] or worker_id_for(queue_name)
        compute.worker_register(worker_id=worker_id, queue_name=queue_name)
        liveness = _Liveness(worker_id=worker_id, queue_name=queue_name)
        liveness.start()
        try:
            return super().handle(*args, **options)
        finally:
            liveness.stop.set()
            liveness.join(timeout=5)
            close_old_connections()
            compute.worker_stop(worker_id=worker_id)
