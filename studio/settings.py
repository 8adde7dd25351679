"""Runstudio settings: the only settings module, driven by environment variables.

The defaults run the embedded setup (SQLite in WAL mode and a files folder under one data
directory); DATABASE_URL switches to PostgreSQL. See docs/architecture.md for the variables.
"""

import os
import secrets
from pathlib import Path

import dj_database_url

from runs.limits import QUERY_TIME_BUDGET_SECONDS, REQUEST_BODY_MAX_BYTES

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(int(default))).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DATA_DIR = Path(os.environ.get("RUNSTUDIO_DATA_DIR", "runstudio-data")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    if key := os.environ.get("RUNSTUDIO_SECRET_KEY"):
        return key
    # Generated once per data directory, so sessions survive restarts without configuration.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        # Written aside, then linked into place: `runstudio serve` and its web worker start at
        # the same time, and neither may read a half-written key or replace the other's.
        tmp = DATA_DIR / f".secret_key.{os.getpid()}"
        tmp.write_text(secrets.token_urlsafe(50))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # the other process was first: use its key
        finally:
            tmp.unlink()
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("RUNSTUDIO_DEBUG")
ALLOWED_HOSTS = env_list("RUNSTUDIO_ALLOWED_HOSTS", "*")
CSRF_TRUSTED_ORIGINS = env_list("RUNSTUDIO_CSRF_TRUSTED_ORIGINS", "")
PUBLIC_URL = os.environ.get("RUNSTUDIO_PUBLIC_URL", "").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_tasks_db",
    "runs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # A NUL in the URL is a 400 before anything reads it (PostgreSQL would fail on it).
    "runs.middleware.refuse_nul_characters",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "studio.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "studio.wsgi.application"

# SQLite's page cache per connection, KiB (RUNSTUDIO_SQLITE_CACHE_MIB, default 64). A request
# opens its own connection, so this bounds what one request (one server thread) may hold.
SQLITE_CACHE_KIB = int(float(os.environ.get("RUNSTUDIO_SQLITE_CACHE_MIB", "64")) * 1024)

if os.environ.get("DATABASE_URL"):
    DATABASES = {
        "default": dj_database_url.parse(
            os.environ["DATABASE_URL"],
            conn_max_age=int(os.environ.get("RUNSTUDIO_DB_CONN_MAX_AGE", "60")),
        )
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            # RUNSTUDIO_SQLITE_PATH points elsewhere (the tests hand their test database's
            # file to the worker processes they start this way).
            "NAME": os.environ.get("RUNSTUDIO_SQLITE_PATH") or DATA_DIR / "db.sqlite3",
            # Each web thread keeps its connection: opening one (init_command) and closing the
            # last one (a WAL checkpoint) cost ~3 ms of CPU, a third of a 1,000-point batch.
            "CONN_MAX_AGE": int(os.environ.get("RUNSTUDIO_DB_CONN_MAX_AGE", "60")),
            "OPTIONS": {
                # IMMEDIATE: a writer takes the lock up front and waits on the busy timeout,
                # instead of failing when a read transaction upgrades to a write.
                "transaction_mode": "IMMEDIATE",
                # RUNSTUDIO_SQLITE_TIMEOUT: seconds a writer waits for the lock (tests shorten it).
                "timeout": float(os.environ.get("RUNSTUDIO_SQLITE_TIMEOUT", "20")),
                "init_command": (
                    "PRAGMA journal_mode=WAL;"
                    "PRAGMA synchronous=NORMAL;"
                    f"PRAGMA cache_size=-{SQLITE_CACHE_KIB};"
                    "PRAGMA temp_store=MEMORY;"
                ),
            },
            "TEST": {"NAME": os.environ.get("RUNSTUDIO_TEST_SQLITE_NAME") or None},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # vendor/plotly/plotly.min.js straight from the plotly wheel (charts; no CDN).
    "runs.staticfinders.PlotlyFinder",
]
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on a missing root

FILES_DIR = DATA_DIR / "files"


def files_storage(url: str, environ=os.environ) -> dict:
    """The run files' storage: RUNSTUDIO_FILES_URL=s3://bucket/prefix puts them in an
    S3-compatible bucket (django-storages' S3Storage), configured by the standard AWS_* variables
    (AWS_ENDPOINT_URL for SeaweedFS, MinIO or another non-AWS server); unset, the files folder."""
    if not url:
        return {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": FILES_DIR},
        }
    scheme, _, rest = url.partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme != "s3" or not bucket:
        raise ValueError(f"RUNSTUDIO_FILES_URL: expected s3://bucket[/prefix], got {url!r}")
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or None
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "location": prefix.strip("/"),
            "endpoint_url": endpoint,
            "region_name": environ.get("AWS_DEFAULT_REGION") or environ.get("AWS_REGION"),
            # Keys come from boto3's own chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a
            # profile, an instance role). A server of one's own is addressed by path: its
            # host name is not a wildcard DNS name that could prefix the bucket.
            "addressing_style": "path" if endpoint else None,
            # A save replaces the object under its own name (one atomic PUT), never renames.
            "file_overwrite": True,
            "default_acl": None,
            "querystring_auth": True,
        },
    }


STORAGES = {
    "default": files_storage(os.environ.get("RUNSTUDIO_FILES_URL", "").strip()),
    "staticfiles": {
        # Hashed names once collected, cached for a year (runs/static_storage.py).
        "BACKEND": "runs.static_storage.StudioStaticStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage",
    },
}
# `runstudio serve` collects (and compresses) static files into STATIC_ROOT and turns the
# finders off, so whitenoise serves the gzip/brotli copies (plotly.js shrinks ~3×); tests and
# `manage.py runserver` serve straight from the finders.
WHITENOISE_USE_FINDERS = env_bool("RUNSTUDIO_STATIC_FINDERS", True)
WHITENOISE_AUTOREFRESH = DEBUG

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

# Metric batches carry up to runs.limits.MAX_BATCH_BYTES of JSON; Django's default 2.5 MiB
# would refuse them before our own check can name the limit. Over it, the API answers a JSON 413
# (runs/api/errors.py).
DATA_UPLOAD_MAX_MEMORY_SIZE = REQUEST_BODY_MAX_BYTES
# The database time one search may take before it is stopped with a 400 (runs/budget.py).
QUERY_TIME_BUDGET_SECONDS = float(
    os.environ.get("RUNSTUDIO_QUERY_BUDGET_SECONDS", QUERY_TIME_BUDGET_SECONDS)
)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # First, so an anonymous request gets 401 with a WWW-Authenticate header, not 403.
        "runs.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["runs.api.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "runs.api.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "runs.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "runs.api.schema.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Runstudio API",
    "DESCRIPTION": "Run history: workspaces, experiments, runs, metrics, tags, properties, files.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # drf-spectacular serves the schema to anyone by default (AllowAny); like every endpoint
    # of the API it is for signed-in users only: anonymous → 401.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # 3.1: its JSON Schema has `propertyNames`, which says what a tag or property key may be.
    "OAS_VERSION": "3.1.0",
    # The enum hook is drf-spectacular's default; ours adds what serializers cannot say.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "runs.api.schema.state_limits",
    ],
    # One enum component per choice set, whatever the field is called (runs/api/schemas.py).
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "runs.models.RunStatus",
        "RoleEnum": "runs.models.Role",
        "MetricKindEnum": "runs.models.MetricKind",
        "AlertChannelEnum": "runs.models.AlertChannel",
    },
}

# How often the SDK should send heartbeats while a run is live (seconds).
RUNSTUDIO_HEARTBEAT_INTERVAL = int(os.environ.get("RUNSTUDIO_HEARTBEAT_INTERVAL", "30"))

# --- Compute and execution (docs/architecture.md, "Compute and execution") -------------------
# Background work runs on django.tasks with django-tasks-db's database backend. QUEUES is empty
# on purpose: the queue of a submitted run is its compute target's name, and the names are the
# workspaces' own (an empty list lets Django accept any queue name).
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": []}}
# A live run (or worker) whose last heartbeat is older than this is dead: the reaper fails it.
RUNSTUDIO_HEARTBEAT_TIMEOUT = float(
    os.environ.get("RUNSTUDIO_HEARTBEAT_TIMEOUT", str(3 * RUNSTUDIO_HEARTBEAT_INTERVAL))
)
# How often each `runstudio worker` runs the reaper (seconds).
RUNSTUDIO_REAPER_INTERVAL = float(
    os.environ.get("RUNSTUDIO_REAPER_INTERVAL", str(RUNSTUDIO_HEARTBEAT_INTERVAL))
)
# After SIGTERM, a canceled script's process group gets this long before SIGKILL (seconds).
RUNSTUDIO_CANCEL_GRACE = float(os.environ.get("RUNSTUDIO_CANCEL_GRACE", "10"))
# The URL a submitted script's SDK calls (the worker puts it in RUNSTUDIO_URL); `runstudio
# serve` passes its own address to the worker it starts.
RUNSTUDIO_SERVER_URL = (
    os.environ.get("RUNSTUDIO_SERVER_URL") or PUBLIC_URL or "http://127.0.0.1:8000"
).rstrip("/")
# Where workers unpack snapshots (a temporary folder per run, removed afterwards).
RUNSTUDIO_WORK_DIR = os.environ.get("RUNSTUDIO_WORK_DIR") or None
# Submitted scripts run in a bubblewrap sandbox (runs/sandbox.py). auto: when bwrap works, else
# unsandboxed on a single-user server only (loudly); required: never unsandboxed; off: never
# sandboxed (loudly). RUNSTUDIO_BWRAP names the bwrap binary (looked up on PATH).
RUNSTUDIO_SANDBOX = os.environ.get("RUNSTUDIO_SANDBOX", "auto").strip().lower()
RUNSTUDIO_BWRAP = os.environ.get("RUNSTUDIO_BWRAP", "bwrap")
# Capacity of the `local` target every workspace gets.
RUNSTUDIO_LOCAL_CAPACITY = int(os.environ.get("RUNSTUDIO_LOCAL_CAPACITY", "2"))

# --- Alerts (docs/architecture.md, "Alerts, compute page, widget") ------------------------------
# Status-change notifications are sent by tasks on this queue; a worker must serve it
# (`runstudio serve` starts one; `runstudio worker -c _alerts` elsewhere). The leading "_" keeps
# it apart from compute target names (their queues), which start with a letter or digit.
RUNSTUDIO_ALERTS_QUEUE = os.environ.get("RUNSTUDIO_ALERTS_QUEUE", "_alerts")
# Attempts per delivery, the first retry's delay (doubling after each failure, capped at an
# hour) and the webhook request timeout, in seconds.
RUNSTUDIO_ALERT_ATTEMPTS = int(os.environ.get("RUNSTUDIO_ALERT_ATTEMPTS", "5"))
RUNSTUDIO_ALERT_BACKOFF = float(os.environ.get("RUNSTUDIO_ALERT_BACKOFF", "30"))
RUNSTUDIO_ALERT_TIMEOUT = float(os.environ.get("RUNSTUDIO_ALERT_TIMEOUT", "10"))
# E-mail through Django's mailer (6.1's MAILERS, which replace the EMAIL_* settings), configured
# by the usual EMAIL_* environment variables. EMAIL_BACKEND may name another backend, e.g.
# django.core.mail.backends.console.EmailBackend to print instead of sending.
EMAIL_BACKEND_PATH = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
SMTP_OPTIONS = {
    "host": os.environ.get("EMAIL_HOST", "localhost"),
    "port": int(os.environ.get("EMAIL_PORT", "25")),
    "username": os.environ.get("EMAIL_HOST_USER", ""),
    "password": os.environ.get("EMAIL_HOST_PASSWORD", ""),
    "use_tls": env_bool("EMAIL_USE_TLS"),
    "use_ssl": env_bool("EMAIL_USE_SSL"),
    "timeout": float(os.environ.get("EMAIL_TIMEOUT", "30")),
}
MAILERS = {
    "default": {
        "BACKEND": EMAIL_BACKEND_PATH,
        "OPTIONS": SMTP_OPTIONS if EMAIL_BACKEND_PATH.endswith("smtp.EmailBackend") else {},
    }
}
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "runstudio@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("RUNSTUDIO_LOG_LEVEL", "WARNING")},
}
