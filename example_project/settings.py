"""Settings for the example project: development only (DEBUG on by default, a dev secret key).

Environment variables:
    DJANGO_SECRET_KEY     Django's SECRET_KEY (a dev-only fallback is used when unset)
    DJANGO_DEBUG          "1" (default) or "0"
    DJANGO_ALLOWED_HOSTS  comma-separated, used when DEBUG is off (default: loopback names)
    EXAMPLE_DB_PATH       the SQLite file (default: <repo>/.run/example.sqlite3)
    AUTUMN_API_URL        the Autumn API (default: the real one; the demo points it at the
                          local stand-in)
    AUTUMN_SECRET_KEY     read by autumn_django itself, see below
"""

import os
from pathlib import Path

from autumn_django.schedules import sync_schedule

REPO_ROOT = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "django-insecure-example-project-dev-only-never-deploy-this"
)
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
# With DEBUG on, Django already accepts localhost/127.0.0.1/[::1]; this matters when it is off.
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "autumn_django",
    "example_project.accounts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# Kept out of the source tree (.run/ is gitignored); the demo passes a fresh file each run.
EXAMPLE_DB_PATH = Path(os.environ.get("EXAMPLE_DB_PATH", REPO_ROOT / ".run" / "example.sqlite3"))
# SQLite creates the file but not its directory, so a fresh clone would fail at `migrate`.
EXAMPLE_DB_PATH.parent.mkdir(parents=True, exist_ok=True)

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": EXAMPLE_DB_PATH,
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Only used by `collectstatic`; runserver serves the admin's static files itself in DEBUG.
STATIC_ROOT = REPO_ROOT / ".run" / "static"

# --- autumn_django -----------------------------------------------------------------------
# This project bills organisations, not users: each Organization is an Autumn customer
# (set before the first migrate, as AUTH_USER_MODEL is), and a request acts for the
# signed-in user's organisation (feature checks, the API's me/).
AUTUMN_CUSTOMER_OWNER_MODEL = "accounts.Organization"
AUTUMN_OWNER_FROM_REQUEST = "example_project.accounts.owners.organization_of"
AUTUMN_API_URL = os.environ.get("AUTUMN_API_URL", "https://api.useautumn.com")
# AUTUMN_SECRET_KEY is deliberately not set here: autumn_django falls back to the
# environment variable of the same name, which keeps the key out of the source tree.
# New organisations, profile changes and admin refreshes go through Celery; the demo sets "inline"
# because it runs no worker.
AUTUMN_TASK_MODE = os.environ.get("AUTUMN_TASK_MODE", "celery")

# --- Celery ------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    # An embedded broker: messages are files in one folder that web, worker and beat share.
    _BROKER_DIR = EXAMPLE_DB_PATH.parent / "celery-broker"
    _BROKER_DIR.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR),
        "data_folder_out": str(_BROKER_DIR),
    }
CELERY_TASK_SERIALIZER = "json"
# The full sync every hour (AUTUMN_SYNC_EVERY seconds): a queued run older than that
# expires rather than piling up behind a stopped worker.
CELERY_BEAT_SCHEDULE = {**sync_schedule(every=int(os.environ.get("AUTUMN_SYNC_EVERY", "3600")))}
