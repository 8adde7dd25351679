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
# A run id a client chooses lives in its workspace's namespace: `<workspace>~<chosen>`. `~`
# is in no workspace, experiment or generated id, so ids chosen in two workspaces never
# collide, and a 409 for a taken id only ever speaks of the caller's own workspace (no oracle
# for other workspaces' ids; docs/architecture.md, "No existence oracles").
RUN_ID_NAMESPACE_SEPARATOR = "~"
CHOSEN_RUN_ID_RE = re.compile(
    r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}~)?[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$"
)

# A run's real start or end sent by a client (the SDK's spool), in unix seconds: 2000-01-01 to
# 9999-12-31 (what datetime can hold); an earlier one is a broken clock, not history.
CLIENT_TIME_MIN = 946_684_800
CLIENT_TIME_MAX = 253_402_300_799

# A metric point's time, in seconds either side of the epoch: what MLflow's int64 milliseconds
# carry (2**63 ms is ~9.22e15 s). A time past it read back through get-history as a timestamp
# no int64 holds: a 500 (tests/security/test_point_blocks_attacks.py).
POINT_TIME_ABS_MAX = 9.2e15

MAX_POINTS_PER_BATCH = 100_000
MAX_SERIES_PER_BATCH = 1_000
MAX_BATCH_BYTES = 16 * 1024 * 1024
IDEMPOTENCY_KEY_MAX_LENGTH = 100
MAX_CHILDREN_PER_REQUEST = 1_000
MAX_ENTRY_JSON_BYTES = 1024 * 1024  # one string / list / row value

FILE_PATH_MAX_LENGTH = 1024
FILE_PATH_SEGMENT_MAX_BYTES = 255  # one folder or file name, in UTF-8 (NAME_MAX)
MAX_FILE_UPLOAD_BYTES = 1024 * 1024 * 1024
MAX_FILE_READ_BYTES = 8 * 1024 * 1024
# Parts of one appended file on object storage after which they are joined while the run goes
# on: a read GETs each part it covers (docs/architecture.md, "Run files on S3").
APPEND_PARTS_BEFORE_JOIN = 256
APPEND_JOINED_PART_BYTES = 1024 * 1024  # parts this big are left alone by those joins

PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1_000
# Sort keys in one request (MLflow's order_by list): each tag, property or metric key is a join.
SORT_KEYS_MAX = 10
HISTORY_PAGE_MAX = 100_000

# Run inputs (MLflow's log-inputs / log-outputs): MLflow's own limits (mlflow/utils/validation.py).
RUN_INPUTS_PER_REQUEST = 1_000  # datasets, or models, in one request
DATASET_NAME_MAX_LENGTH = 500
DATASET_DIGEST_MAX_LENGTH = 36
DATASET_SOURCE_TYPE_MAX_LENGTH = 36
DATASET_SOURCE_MAX_LENGTH = 65_535
DATASET_SCHEMA_MAX_LENGTH = 1_048_575
DATASET_PROFILE_MAX_LENGTH = 1_048_575  # MLflow allows 16 MB; a request body holds 32 MB
INPUT_TAGS_MAX = 100  # tags of one input (MLflow sets mlflow.data.context); keys: NAME_MAX_LENGTH
INPUT_TAG_VALUE_MAX_LENGTH = 500

# Compute targets: the name is also the django.tasks queue name, which django-tasks-db stores
# in a 32-character column.
COMPUTE_TARGET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
COMPUTE_TARGET_CAPACITY_MAX = 10_000
# A submitted snapshot (the source directory), like Azure ML's 300 MB; the SDK checks the
# same number before uploading (runs/sdk/submit.py, RUNSTUDIO_SNAPSHOT_MAX_BYTES there).
SNAPSHOT_MAX_BYTES = 300 * 1024 * 1024
SNAPSHOT_MAX_FILES = 100_000
SCRIPT_ARGUMENTS_MAX = 1_000

# --- Bounded work per request (docs/architecture.md, "Limits and the query time budget") ------
# JSON bodies: orjson refuses nesting deeper than this itself; the stdlib fallback is held to it.
JSON_MAX_DEPTH = 1_024
# Any request body Django reads into memory (DATA_UPLOAD_MAX_MEMORY_SIZE); file uploads stream
# and have their own limit (MAX_FILE_UPLOAD_BYTES).
REQUEST_BODY_MAX_BYTES = 32 * 1024 * 1024
# The search language (runs/query.py): characters, nesting (parentheses and NOTs) and terms
# (comparisons, bare words and the values of an IN list over times or durations, which become
# one condition each). Each bare word searches six columns, so 200 of them ORed is an SQL
# expression ~1,200 deep, past SQLite's 1,000; 100 keeps well inside.
QUERY_MAX_LENGTH = 10_000
QUERY_MAX_DEPTH = 32
QUERY_MAX_TERMS = 100
# LIKE patterns: `%` and `_` per pattern, and characters per pattern.
LIKE_MAX_WILDCARDS = 20
LIKE_MAX_LENGTH = 1_000
# Dates and times a search or a filter may name: a day's end plus any time zone offset must
# still be a datetime, so the last year is 9998; Unix time (MLflow's milliseconds) starts 1970.
DATE_MIN = "1970-01-01"
DATE_MAX = "9998-12-31"
DURATION_MAX_DAYS = 36_500  # a hundred years
# Chart x ranges (x_min, x_max): steps are 64-bit integers; 9e18 is the round number below 2**63.
CHART_X_ABS_MAX = 9e18
# A list / row metric value or a saved view's chart, stored in a JSON column: nesting depth
# (orjson serialises at most 255 levels; SQLite's JSON_VALID allows 1,000).
STORED_JSON_MAX_DEPTH = 255
# GET …/metrics/values: values in one answer (all series asked for, together); a bigger run
# pages through …/metrics/history (HISTORY_PAGE_MAX a page).
METRIC_VALUES_MAX = 1_000_000
# Lists that are not keyset-paged (experiments, members, tokens, workspaces, metric summaries,
# children, compute targets, alert rules) answer at most this many items.
LIST_MAX = 10_000
# The time one search may spend in the database before it is stopped with a 400
# "query_too_expensive" (RUNSTUDIO_QUERY_BUDGET_SECONDS overrides it).
QUERY_TIME_BUDGET_SECONDS = 1.0
# The run list's tree (child runs included): child rows shown under one page of top-level runs,
# all levels together; past it the page says so and the parent's Child runs tab has them all.
TREE_DESCENDANTS_MAX = 1_000
# Run management (archive, restore, delete, tag, untag, cancel): runs named in one request.
RUN_BULK_MAX = 1_000
# ... and tag writes (tags × runs) in one bulk tag.
RUN_BULK_TAGS_MAX = 10_000
# The run list's pager counts matching runs up to this many; past it PostgreSQL's estimate
# ("about 210,000") or "more than 1,000" (SQLite). Counting to 10,000 cost 130–460 ms on 1M
# runs; to 1,000, one probe for each of a few thousand runs (runs/selectors/run_pages.py).
LIST_TOTAL_MAX = 1_000
# Searching a run's text file in the log viewer: bytes scanned per request (a "Continue" link
# goes on from there) and the longest text searched for.
LOG_SEARCH_SCAN_BYTES = 64 * 1024 * 1024
LOG_SEARCH_TEXT_MAX = 200
