"""`manage.py metrics_summarize`: build the chart pyramid of series logged before it existed.

Charts of such series still draw (they scan the points, as before the pyramid); after this they
read O(buckets) summary rows. Safe to run while the studio ingests: each series is rebuilt in
its own transaction under its row lock. `--force` rebuilds every scalar series."""

from django.core.management.base import BaseCommand

from runs import services


class Command(BaseCommand):
    help = "Build the min/max pyramid (MetricSummary) of scalar series that have none yet."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="rebuild every scalar series")

    def handle(self, *args, **options):
        built = services.series_summarize(force=options["force"])
        self.stdout.write(f"{built} series summarized.")
