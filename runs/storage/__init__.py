"""Run files on Django storage: a tree per run under `runs/<run_id>/`.

The `RunFile` table indexes the tree so listings never walk the storage (which may be a
bucket). Writes are services (runs/services/files.py: a file is written complete or not at
all — aside, checked, then moved into place and indexed); this package is the low level both
sides use. On the filesystem backend no symlink below the storage root is ever followed and
only regular files are read (local.py); on object storage (RUNSTUDIO_FILES_URL=s3://…) files
are read by ranged GETs and an appended file is several objects joined (objects.py). Paths are
checked and NFC-normalised
(paths.py); reads go by range, text page, listing and zip (reads.py). docs/architecture.md,
"Run files: complete or untouched", has the rules.
"""

from runs.storage.local import NotARegularFile, local_open_regular
from runs.storage.paths import CHUNK, INCOMING, check_path, storage_name
from runs.storage.reads import (
    LINE_COUNT_MAX_BYTES,
    TEXT_PAGE_BYTES,
    ZIP64_FROM_BYTES,
    TextPage,
    run_file_get,
    run_file_iter,
    run_file_line_count,
    run_file_open,
    run_file_page,
    run_file_read,
    run_files_servable,
    run_files_zip,
)

__all__ = [
    "CHUNK",
    "INCOMING",
    "LINE_COUNT_MAX_BYTES",
    "TEXT_PAGE_BYTES",
    "ZIP64_FROM_BYTES",
    "NotARegularFile",
    "TextPage",
    "check_path",
    "local_open_regular",
    "run_file_get",
    "run_file_iter",
    "run_file_line_count",
    "run_file_open",
    "run_file_page",
    "run_file_read",
    "run_files_servable",
    "run_files_zip",
    "storage_name",
]
