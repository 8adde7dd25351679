"""What a child process does when its parent dies; imports no Django (the CLI uses it)."""

import sys
from collections.abc import Callable


def signal_on_parent_death(sig: int) -> Callable[[], None] | None:
    """A preexec function: `sig` to the child when its parent dies (Linux prctl), or None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not after fork
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(1, sig)  # PR_SET_PDEATHSIG

    return preexec
