"""Settings for the test suite.

The database is chosen by ``AUTUMN_TEST_DB``: ``sqlite`` (default) or ``postgres``; for
PostgreSQL the usual libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE) say
where the throwaway cluster started by ``scripts/test.sh`` listens.
"""

import importlib.util
import os

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "autumn_django",
]
# django-celery-beat (extra "test-beat") installs only beside Django 5.2 and 6.0: its
# DatabaseScheduler test runs where it is installed.
if importlib.util.find_spec("django_celery_beat") is not None:
    INSTALLED_APPS.append("django_celery_beat")

# AUTUMN_TEST_STATIC=manifest: hashed static files, as most production sites serve them
# (scripts/test.sh runs collectstatic into AUTUMN_TEST_STATIC_ROOT first). A template or
# static file missing from the installed package then fails every page that uses it.
if os.environ.get("AUTUMN_TEST_STATIC") == "manifest":
    STATIC_ROOT = os.environ["AUTUMN_TEST_STATIC_ROOT"]
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
    }

# Django 6.1's PBKDF2 takes about a second a password here: tests create many users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

if os.environ.get("AUTUMN_TEST_DB", "sqlite") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("PGDATABASE", "autumn_test"),
            "USER": os.environ.get("PGUSER", ""),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "HOST": os.environ.get("PGHOST", ""),
            "PORT": os.environ.get("PGPORT", ""),
        }
    }
    # A second database, for the tests of ``using=``: same server, its own test database.
    DATABASES["other"] = {
        **DATABASES["default"],
        "TEST": {"NAME": f"test_{DATABASES['default']['NAME']}_other"},
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            # A file, not :memory:, so that a child process (a killed sync) shares it.
            "NAME": os.environ.get("AUTUMN_TEST_SQLITE", "autumn-test.sqlite3"),
            "TEST": {"NAME": os.environ.get("AUTUMN_TEST_SQLITE", "autumn-test.sqlite3")},
        }
    }
    # A second database, for the tests of ``using=``: its own file next to the first.
    _other_root, _other_ext = os.path.splitext(DATABASES["default"]["NAME"])
    DATABASES["other"] = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": f"{_other_root}-other{_other_ext}",
        "TEST": {"NAME": f"{_other_root}-other{_other_ext}"},
    }

# The stand-in fixtures point these at a local server; nothing talks to the real Autumn.
# Child processes started by tests (a sync to kill, a command's exit code) get them from
# the environment. Port 9 (discard) is closed: a test that forgot the stand-in fails fast.
AUTUMN_SECRET_KEY = os.environ.get("AUTUMN_SECRET_KEY", "am_sk_test_suite0000000000000000")
AUTUMN_API_URL = os.environ.get("AUTUMN_API_URL", "http://127.0.0.1:9")
# Keep retry waits short in tests; behaviour is the same, only the clock differs.
AUTUMN_RETRY_MAX_SECONDS = float(os.environ.get("AUTUMN_RETRY_MAX_SECONDS", "5"))
AUTUMN_SYNC_LOCK_TIMEOUT = int(os.environ.get("AUTUMN_SYNC_LOCK_TIMEOUT", "300"))
AUTUMN_MAX_RETRIES = int(os.environ.get("AUTUMN_MAX_RETRIES", "6"))
# Tests that are not about signups must not call Autumn when they create users.
AUTUMN_TASK_MODE = os.environ.get("AUTUMN_TASK_MODE", "off")

# Celery: the worker tests start Redis and real workers and pass their URLs down.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "memory://")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_SERIALIZER = "json"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Child workers crawling pages as small as a test asks.
if os.environ.get("AUTUMN_TEST_SYNC_PAGE_SIZE"):
    AUTUMN_SYNC_PAGE_SIZE = int(os.environ["AUTUMN_TEST_SYNC_PAGE_SIZE"])
# The workflow tests kill a worker: its unacknowledged message comes back this soon.
if os.environ.get("AUTUMN_TEST_VISIBILITY_TIMEOUT"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": int(os.environ["AUTUMN_TEST_VISIBILITY_TIMEOUT"]),
        "unacked_restore_interval": 1, "unacked_restore_throttle": 1,
    }
# A child manage.py (the kill tests) crawling with one cursor, as a test asks.
if os.environ.get("AUTUMN_TEST_SYNC_WINDOWS"):
    AUTUMN_SYNC_WINDOWS = int(os.environ["AUTUMN_TEST_SYNC_WINDOWS"])

if os.environ.get("AUTUMN_TEST_BEAT_EVERY"):
    from autumn_django.schedules import sync_schedule

    CELERY_BEAT_SCHEDULE = sync_schedule(every=float(os.environ["AUTUMN_TEST_BEAT_EVERY"]))
