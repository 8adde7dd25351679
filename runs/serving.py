"""What `runstudio serve` does before and while it serves (docs/architecture.md, "Serving:
start-up and footprint").

Start-up does only what is needed: migrations when some are unapplied (a listing of the
migration files against one query, not Django's full loader), static files when their sources
changed since the last build (a fingerprint of names, sizes and times), then gunicorn. The
`local` and alerts workers run as threads of the serving process instead of a process each.
"""

import hashlib
import os
import pkgutil
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


# --- static files ----------------------------------------------------------------------------


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
