"""The Celery app of the test suite: the test process publishes through it, and the real
workers the tests start run ``celery -A tests.celery_app worker``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("autumn_django_tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["autumn_django"])
