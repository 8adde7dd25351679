"""What happens at interpreter exit: runs this process started and left open are completed,
or failed with the exception that killed the script; buffered points are flushed."""

from __future__ import annotations

import atexit
import sys
import threading
import weakref
from types import TracebackType
from typing import TYPE_CHECKING

from runs.sdk.flusher import Flusher
from runs.sdk.values import warn

if TYPE_CHECKING:
    from runs.sdk.run import Run

# Runs with a flusher, or started here and not finished yet.
open_runs: set[Run] = set()
lock = threading.Lock()
# One flusher per (server, run id) in a process: every Run object of a run shares its
# buffer, so a point logged through any of them is sent in order and flushed by any of them.
flushers: weakref.WeakValueDictionary[tuple[str, str], Flusher] = weakref.WeakValueDictionary()

_exit_error: BaseException | None = None
_installed = False
_previous_excepthook = sys.excepthook


def _excepthook(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    global _exit_error
    _exit_error = exc
    _previous_excepthook(exc_type, exc, tb)


def install() -> None:
    """Chain ``sys.excepthook`` (to learn why the script died) and register the exit hook."""
    global _installed, _previous_excepthook
    if _installed:
        return
    _installed = True
    _previous_excepthook = sys.excepthook
    sys.excepthook = _excepthook
    atexit.register(at_exit)


def at_exit() -> None:
    from runs.sdk import spool

    with lock:
        runs = list(open_runs)
    for run in runs:
        try:
            if run._owned and not run._finished:
                if _exit_error is not None:
                    run.fail(error_details=_exit_error, error_code="UserError")
                else:
                    run.complete()
            else:
                run._close_metrics()
        except Exception as e:  # exit must go on for the other runs
            warn(f"could not finish run {run.id} at exit: {type(e).__name__}: {e}")
    for flusher in list(flushers.values()):
        if not flusher.pending:
            continue
        try:  # points logged after their run finished
            flusher.close()
        except Exception as e:
            warn(f"could not send the last points of run {flusher.run_id}: {e}")
    # A spool being sent since this script started: give it the same bounded time.
    spool.wait_for_background_sync(spool.exit_timeout())
