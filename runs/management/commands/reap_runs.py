"""`manage.py reap_runs`: fail live runs whose heartbeats stopped (services.runs_reap_stale).

Every `runstudio worker` already does this every RUNSTUDIO_REAPER_INTERVAL seconds; run this
from cron when no such worker runs (e.g. only plain `db_worker`s)."""

from django.core.management.base import BaseCommand

from runs import services


class Command(BaseCommand):
    help = "Fail runs whose heartbeat is older than RUNSTUDIO_HEARTBEAT_TIMEOUT seconds."

    def handle(self, *args, **options):
        reaped = services.runs_reap_stale()
        for run in reaped:
            self.stdout.write(f"{run.run_id}: {run.status} — {run.error_message}")
        self.stdout.write(f"{len(reaped)} run(s) reaped.")
