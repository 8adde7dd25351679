"""What `runstudio serve` does before and while it serves (docs/architecture.md, "Serving:
start-up and footprint").

Start-up does only what is needed: migrations when some are unapplied (a listing of the
migration files against one query, not Django's full loader), static files when their sources
changed since the last build (a fingerprint of names, sizes and times), then gunicorn. The
`local` and alerts workers run as threads of the serving process instead of a process each.
"""

import contextlib
import hashlib
import io
import os
import pkgutil
from collections.abc import Iterator
from importlib import import_module

import django
from django.apps import apps
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

# collectstatic's default ignore patterns.
_STATIC_IGNORE = ["CVS", ".*", "*~"]
STATIC_STAMP = ".runstudio-static-fingerprint"


# --- migrations ------------------------------------------------------------------------------


def migrations_pending(*, using: str = DEFAULT_DB_ALIAS) -> bool:
    """True when a migration file of an installed app is not recorded as applied (or the
    database is empty). Errs towards True: a squashed migration whose replaced ones are all
    recorded is also recorded by `migrate`, so a needless run is the worst case."""
    from django.db.migrations.loader import MigrationLoader
    from django.db.migrations.recorder import MigrationRecorder

    recorder = MigrationRecorder(connections[using])
    if not recorder.has_table():
        return True
    applied = set(recorder.applied_migrations())
    for app_config in apps.get_app_configs():
        module_name, _ = MigrationLoader.migrations_module(app_config.label)
        if module_name is None:
            continue
        try:
            module = import_module(module_name)
        except ModuleNotFoundError:
            continue
        for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
            # The same files Django's loader takes: modules, not packages, no _ or ~ prefix.
            if info.ispkg or info.name[0] in "_~":
                continue
            if (app_config.label, info.name) not in applied:
                return True
    return False


# Any constant all Runstudio processes agree on: the key of the PostgreSQL advisory lock that
# one serving process at a time holds while it migrates.
MIGRATION_LOCK_KEY = 0x52554E53  # "RUNS"


@contextlib.contextmanager
def migration_lock(*, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Held while one serving process checks and applies migrations. Hosts that share no disk
    share the database: two `runstudio serve` started together on an empty PostgreSQL database
    would both run `migrate`, and the slower one fails half-way ("relation already exists").
    A session-level advisory lock makes the second wait, then find nothing to do. SQLite needs
    none: its database lives on one host, and its write lock serialises `migrate` already."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_KEY])


def migrate_if_pending(*, say=None, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Applies unapplied migrations, one serving process at a time; True when it migrated.
    The check without the lock keeps a start with nothing to do at one query."""
    from django.core.management import call_command

    if not migrations_pending(using=using):
        return False
    with migration_lock(using=using):
        if not migrations_pending(using=using):  # another host migrated while this one waited
            return False
        if say is not None:
            say("Setting up the database (migrate)…")
        call_command("migrate", interactive=False, verbosity=0, database=using)
    return True


def secret_key_warning() -> str | None:
    """What to fix when run files are in a bucket — so the app processes may share no disk —
    but the secret key is the one generated into this host's data directory: every other host
    makes its own, so a session signed in through one process is signed out by the next (the
    session's auth hash is keyed by it) and messages signed by one are dropped by another."""
    if os.environ.get("RUNSTUDIO_SECRET_KEY"):
        return None
    from runs.storage.local import storage_root

    if storage_root() is not None:  # a files folder: one host, or a disk they all share
        return None
    return (
        "WARNING: run files are in object storage (RUNSTUDIO_FILES_URL), but RUNSTUDIO_SECRET_KEY "
        f"is not set: this host uses the key generated in {settings.DATA_DIR / 'secret_key'}, "
        "and any other app host makes its own, so people get signed out whenever a request "
        "lands on another host. Set the same RUNSTUDIO_SECRET_KEY on every app host, e.g. "
        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
    )


def storage_mismatch() -> str | None:
    """What to fix when this process's run-file storage is not the one the database's index
    was written to — say a worker host started without RUNSTUDIO_FILES_URL, which would read
    no snapshot and write its runs' logs and outputs to its own disk, where no app host looks.
    Checks the newest indexed file (one query by primary key, one open); None when it is there
    or nothing is indexed yet."""
    from runs import storage
    from runs.errors import NotFound
    from runs.models import RunFile

    record = RunFile.objects.select_related("run").filter(size__gt=0).order_by("-pk").first()
    if record is None:
        return None
    try:
        storage.run_file_open(run=record.run, path=record.path).close()
    except NotFound:
        where = os.environ.get("RUNSTUDIO_FILES_URL") or f"the folder {settings.FILES_DIR}"
        return (
            f"WARNING: run {record.run.run_id}'s file {record.path!r} is in the database's "
            f"index but not in this host's run-file storage ({where}). Every app host and "
            "worker must use the same storage: set RUNSTUDIO_FILES_URL (and the AWS_* "
            "variables) as on the other hosts."
        )
    return None


# --- static files ----------------------------------------------------------------------------


def bucket_warning() -> str | None:
    """What to fix when run files are in a bucket this host cannot write: a bucket not made
    yet, or keys without write access. Without this check `serve` started quietly and the
    first upload was a 500 ("The server failed; the error is logged"). Writes and deletes one
    probe object under the prefix; None when both work, or when run files are in a folder."""
    import socket

    from runs.storage import objects

    if not objects.is_object_storage():
        return None
    name = f".probe/{socket.gethostname()}-{os.getpid()}"
    try:
        objects.object_put(name, io.BytesIO(b"ok"))
        objects.object_delete([name])
    except Exception as exc:  # noqa: BLE001 - any S3 or connection error means the same fix
        url = os.environ.get("RUNSTUDIO_FILES_URL") or "the run-file bucket"
        return (
            f"WARNING: run files cannot be written to {url} ({exc}). Make the bucket and give "
            "AWS_ACCESS_KEY_ID read, write and delete on it (AWS_ENDPOINT_URL names the "
            "server); until then every file upload fails."
        )
    return None


def callback_warning(*, timeout: float = 3.0) -> str | None:
    """What to fix when the URL a worker's scripts call back (RUNSTUDIO_SERVER_URL) does not
    answer from this host: on a worker host without `--server-url` it is 127.0.0.1:8000, the
    worker host itself, and every script that logs through the SDK fails with "connection
    refused" long after the worker started. Any HTTP answer (a 4xx too) counts as reachable."""
    import urllib.error
    import urllib.request

    url = settings.RUNSTUDIO_SERVER_URL.rstrip("/")
    try:
        with urllib.request.urlopen(f"{url}/api/v1/", timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return (
            f"WARNING: scripts call the studio back at {url}, which does not answer from "
            f"here ({reason}). Start the worker with --server-url set to the studio's address "
            "(the one people use, RUNSTUDIO_PUBLIC_URL on the app hosts)."
        )


def static_fingerprint() -> str:
    """Names, sizes and modification times of every file collectstatic would collect, plus
    what decides how it collects them (Django's version, the storage)."""
    from django.contrib.staticfiles.finders import get_finders

    digest = hashlib.sha256()
    digest.update(f"{django.get_version()} {settings.STORAGES['staticfiles']}".encode())
    seen: set[str] = set()
    entries = []
    for finder in get_finders():
        for path, storage in finder.list(_STATIC_IGNORE):
            prefix = getattr(storage, "prefix", None)
            name = f"{prefix}/{path}" if prefix else path
            if name in seen:  # the first finder wins, as in collectstatic
                continue
            seen.add(name)
            full = storage.path(path)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            entries.append(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}")
    for entry in sorted(entries):
        digest.update(entry.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def static_outdated() -> bool:
    """True when STATIC_ROOT holds no build of the current sources."""
    stamp = settings.STATIC_ROOT / STATIC_STAMP
    manifest = settings.STATIC_ROOT / "staticfiles.json"
    try:
        built = stamp.read_text().strip()
    except OSError:
        return True
    return not manifest.exists() or built != static_fingerprint()


def static_build() -> None:
    """collectstatic into STATIC_ROOT (hashed names, gzip copies), then the stamp. The stamp
    goes last and the old build is cleared first, so an interrupted build is redone."""
    from django.core.management import call_command

    stamp = settings.STATIC_ROOT / STATIC_STAMP
    stamp.unlink(missing_ok=True)
    fingerprint = static_fingerprint()
    call_command("collectstatic", interactive=False, clear=True, verbosity=0)
    stamp.write_text(fingerprint + "\n")
