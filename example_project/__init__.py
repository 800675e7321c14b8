"""A small Django project with autumn_django installed: the demo (scripts/demo.sh) and a
place to try the app by hand (``python example_project/manage.py ...``)."""

# Loaded with Django, so that @shared_task functions bind to this app (Celery's pattern).
from .celery import app as celery_app

__all__ = ["celery_app"]
