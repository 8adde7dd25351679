"""Limits checked up front, named so that errors can say which one was hit and what to do.

The SDK keeps copies of the batch limits (runs/sdk/limits.py) because it may not import
Django; keep the two in step.
"""

import re

NAME_MAX_LENGTH = 255  # metric, tag and property names
TAG_VALUE_MAX_LENGTH = 5_000
PROPERTY_VALUE_MAX_LENGTH = 5_000
DISPLAY_NAME_MAX_LENGTH = 255
DESCRIPTION_MAX_LENGTH = 100_000
TAGS_PER_REQUEST = 1_000

WORKSPACE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
EXPERIMENT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")

MAX_POINTS_PER_BATCH = 100_000
MAX_SERIES_PER_BATCH = 1_000
MAX_BATCH_BYTES = 16 * 1024 * 1024
IDEMPOTENCY_KEY_MAX_LENGTH = 100
MAX_CHILDREN_PER_REQUEST = 1_000
MAX_ENTRY_JSON_BYTES = 1024 * 1024  # one string / list / row value

FILE_PATH_MAX_LENGTH = 1024
MAX_FILE_UPLOAD_BYTES = 1024 * 1024 * 1024
MAX_FILE_READ_BYTES = 8 * 1024 * 1024

PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1_000
HISTORY_PAGE_MAX = 100_000

# Compute targets: the name is also the django.tasks queue name, which django-tasks-db stores
# in a 32-character column.
COMPUTE_TARGET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
COMPUTE_TARGET_CAPACITY_MAX = 10_000
# A submitted snapshot (the source directory), like Azure ML's 300 MB; the SDK checks the
# same number before uploading (runs/sdk/submit.py, RUNSTUDIO_SNAPSHOT_MAX_BYTES there).
SNAPSHOT_MAX_BYTES = 300 * 1024 * 1024
SNAPSHOT_MAX_FILES = 100_000
SCRIPT_ARGUMENTS_MAX = 1_000
