"""Copies of the server's limits that the SDK checks before sending.

The SDK imports no Django and no server code, so these duplicate runs/limits.py (which
points back here): keep the two in step.
"""

NAME_MAX_LENGTH = 255  # metric names: 1-255 characters, no control characters
MAX_POINTS_PER_BATCH = 100_000
MAX_SERIES_PER_BATCH = 1_000
MAX_BATCH_BYTES = 16 * 1024 * 1024
MAX_ENTRY_JSON_BYTES = 1024 * 1024  # one string / list / row value
