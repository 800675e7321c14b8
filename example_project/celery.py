"""The example project's Celery app.

    celery -A example_project worker -l info
    celery -A example_project beat -l info -s .run/celerybeat-schedule

With no CELERY_BROKER_URL set, web process, worker and beat pass messages through files
under .run/celery-broker (kombu's filesystem transport): nothing to install or run. Set
CELERY_BROKER_URL=redis://localhost:6379/0 to use Redis instead.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

app = Celery("example_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
