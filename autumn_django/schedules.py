"""Ready-made Celery beat entries for the full sync.

    # settings.py
    from autumn_django.schedules import sync_schedule, sync_schedules
    CELERY_BEAT_SCHEDULE = {**sync_schedule(every=3600)}          # AUTUMN_ENV
    CELERY_BEAT_SCHEDULE = {**sync_schedules(every=3600, envs=AUTUMN_SECRET_KEYS)}  # each env

Works with Celery's default scheduler and with django-celery-beat's DatabaseScheduler,
which imports ``CELERY_BEAT_SCHEDULE`` entries into its tables at start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

SYNC_ALL_TASK = "autumn_django.sync_all_customers"
# The same sync as a workflow of one task per window, shared by every worker (``sync.workflow``).
SYNC_WORKFLOW_TASK = "autumn_django.sync_all_customers_workflow"
ENTRY_NAME = "autumn-sync-all-customers"
ENVS = ("sandbox", "live")


def sync_schedule(every: float | timedelta = 3600, env: str | None = None, *, name: str | None = None,
                  expires: float | None = None, workflow: bool = False) -> dict[str, dict[str, Any]]:
    """``{name: entry}`` running the full sync of ``env`` every ``every`` seconds.

    Without ``env`` the task syncs ``AUTUMN_ENV`` (read when it runs), under the name
    "autumn-sync-all-customers"; with one, "autumn-sync-all-customers-<env>" syncs that env.

    A run that waited in the queue longer than one interval expires instead of running:
    otherwise a worker that was down for a day would work through a pile of stale syncs.
    (Runs never overlap anyway: a run that finds another running ends at once.)

    ``workflow``: queue the workflow instead (one task per window, any number of workers
    sharing the run), under the same entry name.
    """
    seconds = every.total_seconds() if isinstance(every, timedelta) else float(every)
    if seconds <= 0:
        raise ValueError("every must be a positive number of seconds")
    if env is not None and env not in ENVS:
        raise ValueError(f"env must be 'sandbox' or 'live', not {env!r}")
    expires = seconds if expires is None else expires
    entry: dict[str, Any] = {
        "task": SYNC_WORKFLOW_TASK if workflow else SYNC_ALL_TASK,
        "schedule": seconds,
        # Celery's scheduler passes "expires" to apply_async; django-celery-beat reads
        # "expire_seconds" into its PeriodicTask. Each ignores the other's key.
        "options": {"expires": expires, "expire_seconds": int(expires)},
    }
    if env is not None:
        entry["kwargs"] = {"env": env}
    if name is None:
        name = ENTRY_NAME if env is None else f"{ENTRY_NAME}-{env}"
    return {name: entry}


def sync_schedules(every: float | timedelta = 3600, envs: Iterable[str] | None = None, *,
                   expires: float | None = None, workflow: bool = False) -> dict[str, dict[str, Any]]:
    """One entry per environment: the full sync of each, every ``every`` seconds.

    ``envs``: the environments ("sandbox", "live"), or the ``AUTUMN_SECRET_KEYS`` dict
    itself (its keys are read), as settings.py has them before Django's settings are
    configured; left out, the configured environments (read from Django's settings, so
    only once they are configured, e.g. in the Celery app module after ``django.setup()``).
    One environment keeps the single-env entry's name, "autumn-sync-all-customers"
    (syncing that env); several are "autumn-sync-all-customers-sandbox" and "...-live".
    Each env's run takes its own lock, so the two run side by side.
    """
    if envs is None:
        from .conf import configured_envs

        chosen = list(configured_envs())
    else:
        if isinstance(envs, Mapping):  # AUTUMN_SECRET_KEYS: the envs given a key
            envs = [env for env, key in envs.items() if key]
        envs = list(envs)
        chosen = [env for env in ENVS if env in envs]
        unknown = set(envs) - set(ENVS)
        if unknown:
            raise ValueError(f"unknown environment(s) {sorted(unknown)!r}: 'sandbox' or 'live'")
    if not chosen:
        raise ValueError("no environment to sync: configure AUTUMN_SECRET_KEYS or pass envs")
    entries: dict[str, dict[str, Any]] = {}
    for env in chosen:
        name = ENTRY_NAME if len(chosen) == 1 else f"{ENTRY_NAME}-{env}"
        entries.update(sync_schedule(every, env, name=name, expires=expires, workflow=workflow))
    return entries
