"""A time budget for one request's searches: past it, the database stops the query and the
request gets a 400 `query_too_expensive` on field `q` instead of holding a worker.

SQLite: a progress handler, called every few thousand virtual-machine steps, interrupts the
statement once the deadline has passed (a read is interrupted without touching the
transaction). PostgreSQL: `SET LOCAL statement_timeout` inside a transaction. A single call
into a C function (one LIKE over one long text) is not interrupted mid-way by SQLite, which is
why runs/query.py also bounds LIKE patterns up front.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import OperationalError, connection, transaction

from runs import limits
from runs.errors import InvalidInput

_SQLITE_STEPS = 1_000  # VM steps between deadline checks: a few microseconds of work
_PG_QUERY_CANCELED = "57014"


def budget_seconds() -> float:
    return float(getattr(settings, "QUERY_TIME_BUDGET_SECONDS", limits.QUERY_TIME_BUDGET_SECONDS))


def too_expensive(seconds: float | None = None) -> InvalidInput:
    seconds = budget_seconds() if seconds is None else seconds
    return InvalidInput(
        f"q: the search took longer than {seconds:g} s (QUERY_TIME_BUDGET_SECONDS) and was "
        "stopped; narrow it (fewer wildcards, a tag or an experiment filter first).",
        field="q",
        code="query_too_expensive",
    )


def _interrupted(exc: OperationalError) -> bool:
    cause = exc.__cause__
    return "interrupted" in str(exc) or getattr(cause, "sqlstate", None) == _PG_QUERY_CANCELED


@contextmanager
def query_budget(
    seconds: float | None = None, *, refusal: InvalidInput | None = None
) -> Iterator[None]:
    """Run the block's queries under the budget; a query past it raises `too_expensive()`, or
    `refusal` when given (a chart's window names its own field, not `q`)."""
    seconds = budget_seconds() if seconds is None else seconds
    try:
        if connection.vendor == "sqlite":
            connection.ensure_connection()
            raw = connection.connection
            deadline = time.monotonic() + seconds
            raw.set_progress_handler(lambda: time.monotonic() > deadline, _SQLITE_STEPS)
            try:
                yield
            finally:
                raw.set_progress_handler(None, 0)
        elif connection.vendor == "postgresql":
            with transaction.atomic():
                with connection.cursor() as cursor:
                    # An int, formatted in: SET takes no bound parameters on the server side.
                    cursor.execute(f"SET LOCAL statement_timeout = {max(1, int(seconds * 1000))}")
                yield
        else:
            yield
    except OperationalError as exc:
        if _interrupted(exc):
            raise (refusal or too_expensive(seconds)) from None
        raise
