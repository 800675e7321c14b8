"""How fresh the mirror is: when the last complete sync of an env finished.

Webhooks refresh the customers they name, but not every change sends one (Autumn sends no
customer created or deleted event, tracking usage sends none below a limit or alert, and
some billing flows have been known to send nothing): only a full sync sees everything. A
complete sync is a run that succeeded; a failed one, even far along, leaves the customers
after its last page unread. The system check ``autumn_django.W004`` and the banner on the
admin's customer list read this module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DEFAULT_DB_ALIAS, router, transaction
from django.utils import timezone

from .conf import DEFAULTS, autumn_settings, project_env, secret_key_for
from .models import SyncRun

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Freshness:
    env: str
    last_complete: SyncRun | None  # the newest succeeded run, or None: never
    stale_after: timedelta
    now: datetime

    @property
    def finished_at(self) -> datetime | None:
        return self.last_complete.finished_at if self.last_complete else None

    @property
    def age(self) -> timedelta | None:
        return self.now - self.finished_at if self.finished_at else None

    @property
    def stale(self) -> bool:
        return self.age is None or self.age > self.stale_after


def stale_after() -> timedelta:
    """``AUTUMN_SYNC_STALE_AFTER_SECONDS``, or its default while it is malformed (the check
    ``autumn_django.E019`` says so)."""
    value = autumn_settings.SYNC_STALE_AFTER_SECONDS
    try:
        valid = not isinstance(value, bool) and value > 0
        return timedelta(seconds=value if valid else DEFAULTS["SYNC_STALE_AFTER_SECONDS"])
    except Exception:  # any type at all: NaN, inf, a value whose comparison raises
        return timedelta(seconds=DEFAULTS["SYNC_STALE_AFTER_SECONDS"])


def key_env() -> str | None:
    """``AUTUMN_ENV`` when its secret key is configured, else None."""
    try:
        env = project_env()
        return env if secret_key_for(env) else None
    except Exception:
        return None


def last_complete_sync(env: str, *, using: str = DEFAULT_DB_ALIAS) -> SyncRun | None:
    """The newest run of ``env`` that succeeded, in database ``using`` (only the columns
    a banner needs: a run's error list can be long)."""
    return (SyncRun.objects.using(using)
            .filter(env=env, status=SyncRun.Status.SUCCEEDED, finished_at__isnull=False)
            .order_by("-finished_at", "-pk")
            .only("pk", "env", "status", "started_at", "finished_at")
            .first())


def freshness(env: str, *, using: str = DEFAULT_DB_ALIAS, now: datetime | None = None) -> Freshness:
    return Freshness(env, last_complete_sync(env, using=using), stale_after(), now or timezone.now())


def freshness_in(env: str, databases: Iterable[str], *, now: datetime | None = None) -> Freshness | None:
    """The newest complete sync of ``env`` in any of ``databases`` that can hold sync runs
    (a sync may write to any database: ``using=``). None when none of them could be read:
    no table yet (before ``migrate``), a database that is down. Never raises."""
    newest: SyncRun | None = None
    read = False
    for alias in databases:
        try:
            if not router.allow_migrate_model(alias, SyncRun):
                continue
            # A savepoint: a failed query must not break a transaction the caller is in.
            with transaction.atomic(using=alias):
                run = last_complete_sync(env, using=alias)
        except Exception as exc:
            logger.debug("No sync runs read in database %r: %s", alias, exc)
            continue
        read = True
        if run is not None and (newest is None or run.finished_at > newest.finished_at):
            newest = run
    if not read:
        return None
    return Freshness(env, newest, stale_after(), now or timezone.now())
