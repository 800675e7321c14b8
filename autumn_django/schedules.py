"""A ready-made Celery beat entry for the full sync.

    # settings.py
    from autumn_django.schedules import sync_schedule
    CELERY_BEAT_SCHEDULE = {**sync_schedule(every=3600)}

Works with Celery's default scheduler and with django-celery-beat's DatabaseScheduler,
which imports ``CELERY_BEAT_SCHEDULE`` entries into its tables at start.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

SYNC_ALL_TASK = "autumn_django.sync_all_customers"


def sync_schedule(every: float | timedelta = 3600, *, name: str = "autumn-sync-all-customers",
                  expires: float | None = None) -> dict[str, dict[str, Any]]:
    """``{name: entry}`` running the full sync every ``every`` seconds.

    A run that waited in the queue longer than one interval expires instead of running:
    otherwise a worker that was down for a day would work through a pile of stale syncs.
    (Runs never overlap anyway: a run that finds another running ends at once.)
    """
    seconds = every.total_seconds() if isinstance(every, timedelta) else float(every)
    if seconds <= 0:
        raise ValueError("every must be a positive number of seconds")
    expires = seconds if expires is None else expires
    return {
        name: {
            "task": SYNC_ALL_TASK,
            "schedule": seconds,
            # Celery's scheduler passes "expires" to apply_async; django-celery-beat reads
            # "expire_seconds" into its PeriodicTask. Each ignores the other's key.
            "options": {"expires": expires, "expire_seconds": int(expires)},
        }
    }
