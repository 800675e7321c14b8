"""Django settings for the sync benchmark (``DJANGO_SETTINGS_MODULE=benchmarks.settings``).

Based on ``tests/settings.py``, trimmed to what the sync needs. The database is chosen by
``AUTUMN_BENCH_DB``: ``sqlite`` (default; a file of its own under ``.run/bench/``, never the
test suite's) or ``postgres`` (the database ``autumn_bench`` on the cluster the libpq
variables PGHOST/PGPORT/PGUSER/PGPASSWORD point at, which ``scripts/lib/pg.sh`` exports).

Nothing here creates or drops a database: ``sync_benchmark.py`` does that before
``django.setup()``, so a child process that imports these settings finds the database as
its parent left it.
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

SECRET_KEY = "benchmark-only-not-secret"  # noqa: S105
# DEBUG=True would keep every SQL statement in connection.queries: memory and time.
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# auth and contenttypes because Customer.user points at the user model; no admin, no DRF:
# the benchmark measures the sync, not a project.
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "autumn_django",
]

BENCH_DB = os.environ.get("AUTUMN_BENCH_DB", "sqlite")
POSTGRES_NAME = "autumn_bench"
SQLITE_PATH = Path(os.environ.get("AUTUMN_BENCH_SQLITE", REPO_ROOT / ".run" / "bench" / "bench.sqlite3"))

if BENCH_DB == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": POSTGRES_NAME,
            "USER": os.environ.get("PGUSER", ""),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "HOST": os.environ.get("PGHOST", ""),
            "PORT": os.environ.get("PGPORT", ""),
        }
    }
elif BENCH_DB == "sqlite":
    # Django's defaults for SQLite (rollback journal, synchronous=FULL): what a project
    # that does not tune SQLite gets.
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(SQLITE_PATH)}}
else:
    raise RuntimeError(f"AUTUMN_BENCH_DB must be 'sqlite' or 'postgres', not {BENCH_DB!r}")

# The benchmark starts the stand-in first and passes its URL down; child processes (the
# peak-memory runs) get theirs the same way.
AUTUMN_API_URL = os.environ.get("AUTUMN_API_URL", "http://127.0.0.1:9")
# A fixed sandbox-shaped key: the stand-in accepts any well-formed one, and a real key
# from the environment has no business being sent anywhere by a benchmark.
AUTUMN_SECRET_KEY = "am_sk_test_benchmark000000000000"  # noqa: S105
AUTUMN_SYNC_PAGE_SIZE = 1000

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # Warnings only: a retry or a lowered page size during a benchmark is worth seeing.
    "loggers": {"autumn_django": {"handlers": ["console"], "level": "WARNING"}},
}
