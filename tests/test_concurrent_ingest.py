"""Batches that start the same series at the same time on PostgreSQL (MLflow's async logging
sends them in parallel; so do the SDK's lanes and several processes of one job). SQLite lets one
writer in at a time, so only PostgreSQL can interleave them."""

import threading
import time

import pytest
from django.db import connection, transaction

from runs import points, services
from runs.models import MetricKind, MetricSeries
from tests.test_summary import expected_blocks, points_of, stored_blocks

pytestmark = pytest.mark.skipif(
    "not __import__('os').environ.get('DATABASE_URL')", reason="PostgreSQL interleaves writers"
)


def _waiting_locks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_meets_another_starting_its_series_in_the_other_order_is_stored(make_run):
    """Another writer starts `loss`, then waits to start `acc`, which this batch started first
    while waiting for `loss`: PostgreSQL breaks the deadlock by failing one of them. The batch
    (the victim: it waited first) is stored all the same, not lost to a 500."""
    run = make_run()
    other_started = threading.Event()
    other_error: list[BaseException] = []

    def other_writer() -> None:
        try:
            with transaction.atomic():
                MetricSeries.objects.bulk_create(
                    [MetricSeries(run=run, name="loss", kind=MetricKind.SCALAR)],
                    ignore_conflicts=True,
                )
                other_started.set()
                deadline = time.monotonic() + 10
                while _waiting_locks() == 0 and time.monotonic() < deadline:
                    time.sleep(0.02)  # until the batch below waits for our `loss`
                MetricSeries.objects.bulk_create(
                    [MetricSeries(run=run, name="acc", kind=MetricKind.SCALAR)],
                    ignore_conflicts=True,
                )
        except BaseException as exc:  # noqa: BLE001 - the other writer may be the victim
            other_error.append(exc)
        finally:
            connection.close()

    other = threading.Thread(target=other_writer)
    other.start()
    assert other_started.wait(10)
    result = services.run_log_batch(
        run=run,
        metrics=[{"name": "acc", "values": [0.5, 0.6]}, {"name": "loss", "values": [1.0, 0.9]}],
    )
    other.join()

    assert result.accepted == 4
    stored = {
        name: [row[3] for row in points.read(MetricSeries.objects.get(run=run, name=name).pk)]
        for name in ("acc", "loss")
    }
    assert stored == {"acc": [0.5, 0.6], "loss": [1.0, 0.9]}
    assert MetricSeries.objects.get(run=run, name="loss").count == 2


@pytest.mark.django_db(transaction=True)
def test_backfilling_while_a_client_logs_into_the_same_series_leaves_a_whole_pyramid(make_run):
    """`metrics_summarize` on a live database: a client keeps logging into an older series
    (points, no pyramid) while it is summarized; afterwards the pyramid is the points'."""
    import random

    from runs.models import MetricSummary

    run = make_run()
    rng = random.Random(3)
    services.run_log_batch(
        run=run, metrics=[{"name": "loss", "values": [rng.random() for _ in range(20_000)]}]
    )
    MetricSummary.objects.all().delete()
    MetricSeries.objects.filter(run=run).update(steps_sorted=None, times_sorted=None)
    done = threading.Event()
    errors: list[BaseException] = []

    def client() -> None:
        try:
            while not done.is_set():
                size = rng.choice([1, 64, 100, 3_000])
                values = [rng.random() for _ in range(size)]
                services.run_log_batch(run=run, metrics=[{"name": "loss", "values": values}])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    logger = threading.Thread(target=client)
    logger.start()
    time.sleep(0.2)
    assert services.series_summarize() == 1
    time.sleep(0.2)  # and a few batches onto the new pyramid
    done.set()
    logger.join()
    assert not errors, errors

    series = MetricSeries.objects.get(run=run, name="loss")
    points = points_of(series)
    assert len(points) == series.count > 20_000
    assert stored_blocks(series) == expected_blocks(points, series.count)
