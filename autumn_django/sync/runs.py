"""The sync's run record, which is also its lock.

A run holds the env's lock while its row is ``running`` with a fresh ``heartbeat_at``
and its own ``lease_token``. The database decides every race:
- a partial unique constraint allows one ``running`` row per env, so of two runs that
  start together one insert fails;
- taking over a dead or failed run is a compare-and-swap on its ``lease_token``;
- every page's progress is saved only where the token is still ours, so a run that
  stalled past the timeout and was taken over cannot write over its successor.

A run whose process died is taken over at once where that can be known for sure
(``holders.RunHolder``: PostgreSQL's advisory lock, or a process id on this host), and
after the lease (``AUTUMN_SYNC_LOCK_TIMEOUT``) everywhere else; a workflow run with a
window task still waiting in the broker's queue is not dead (``sync.workflow``).

Runs live in the database the sync writes to (``start_run(using=...)``): a page's resume
point must commit in that page's transaction. Once started, a run is read and written on
the database it was loaded from (``run._state.db``, as Django's own ``save()`` does).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from django.db import DEFAULT_DB_ALIAS, IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from ..conf import autumn_settings
from ..exceptions import SyncAlreadyRunning
from ..models import SyncRun, SyncWindow
from .holders import RunHolder

logger = logging.getLogger(__name__)

# Keep the run's error list readable (and its row small) when a page is full of bad records.
MAX_RECORDED_ERRORS = 200


class LeaseLost(SyncAlreadyRunning):
    """This run stalled longer than the lock timeout and another run took it over."""


def start_run(env: str, *, page_size: int, restart: bool = False,
              using: str = DEFAULT_DB_ALIAS, workflow: bool = False) -> SyncRun:
    """Take the env's sync lock in database ``using``: resume the last unfinished run, or
    begin a new one.

    Raises ``SyncAlreadyRunning`` if a live run holds the lock. The run returned holds
    its env's lock until ``finish_run`` (or ``release``) lets it go.

    ``workflow``: a run of the Celery workflow (``sync.workflow``), shared by the tasks of
    its windows, so no one process holds it: it records no host, pid or advisory lock and
    is known dead by its lease only. A run resumes only as the kind it was started (their
    resume points differ); an unfinished run of the other kind is left failed, or
    abandoned once its lease expired, and a new run begins.
    """
    holder = RunHolder(env, using)
    holder.acquire()
    try:
        run = _start(env, page_size, restart, using, holder, workflow)
    except BaseException:
        holder.release()
        raise
    run.holder = holder
    return run


def _start(env: str, page_size: int, restart: bool, using: str, holder: RunHolder,
           workflow: bool) -> SyncRun:
    now = timezone.now()
    stale_before = now - timedelta(seconds=autumn_settings.SYNC_LOCK_TIMEOUT)
    latest = SyncRun.objects.using(using).filter(env=env).order_by("-pk").first()
    if latest is not None and latest.status == SyncRun.Status.RUNNING:
        if holder.holder_is_gone(latest):
            logger.warning("Sync run #%s's process (%s, pid %s) is gone; taking the run over.",
                           latest.pk, latest.host or "unknown host", latest.pid)
        elif latest.heartbeat_at >= stale_before:
            raise _already_running(latest, now)
        elif (waiting := _queued_window_at(latest, now)) is not None:
            raise _already_running(latest, now, queued_at=waiting)
        else:
            logger.warning("Sync run #%s stopped renewing its lock at %s; taking it over.",
                           latest.pk, latest.heartbeat_at)
    resumable = latest is not None and latest.status != SyncRun.Status.SUCCEEDED
    if resumable and not restart and latest.workflow == workflow:
        return _take_over(latest, now, holder, workflow)
    if resumable and latest.status == SyncRun.Status.RUNNING:
        _abandon(latest, now)
    try:
        with transaction.atomic(using=using):
            return SyncRun.objects.using(using).create(
                env=env, status=SyncRun.Status.RUNNING, started_at=now, heartbeat_at=now,
                lease_token=uuid.uuid4().hex, page_size=page_size, workflow=workflow,
                **_identity(holder, workflow),
            )
    except IntegrityError:
        latest = SyncRun.objects.using(using).filter(env=env).order_by("-pk").first()
        raise _already_running(latest, now) from None


def _queued_window_at(run: SyncRun, now: datetime) -> datetime | None:
    """When the window of a workflow run that waits longest for a worker was queued, if
    one was queued within ``AUTUMN_SYNC_QUEUE_TIMEOUT`` and not yet claimed: its task
    waits in the broker (a busy queue) and renews the lease once a worker takes it, so
    the run is not dead. None: not a workflow run, or no window waits."""
    if not run.workflow:
        return None
    waiting_since = now - timedelta(seconds=autumn_settings.SYNC_QUEUE_TIMEOUT)
    return (SyncWindow.objects.using(run._state.db or DEFAULT_DB_ALIAS)
            .filter(run=run, done=False, claim="", queued_at__gte=waiting_since)
            .order_by("queued_at").values_list("queued_at", flat=True).first())


def save_page(run: SyncRun, windows: list[dict]) -> None:
    """Store ``run``'s counters and resume points (its windows: ``sync.partition``); call
    inside the page's transaction (on the run's database). A run of one window also keeps
    its position in ``cursor`` and ``created_at_start``, as runs did before windows."""
    run.windows = windows
    single = windows[0] if len(windows) == 1 else {}
    run.cursor, run.created_at_start = single.get("cursor", ""), single.get("created_at_start")
    run.heartbeat_at = timezone.now()
    run.errors = run.errors[-MAX_RECORDED_ERRORS:]
    _save_if_ours(run, ["cursor", "created_at_start", "reached_created_at", "heartbeat_at", "pages",
                        "created", "updated", "unchanged", "undeleted", "skipped", "errors", "page_size",
                        "deleted", "reread", "windows"])


def save_errors(run: SyncRun) -> None:
    """Store the run's error list (warnings of a step outside any page), renewing its lease."""
    run.heartbeat_at = timezone.now()
    run.errors = run.errors[-MAX_RECORDED_ERRORS:]
    _save_if_ours(run, ["errors", "heartbeat_at"])


ENTITY_FIELDS = ("entity_cursor", "entities_reached_created_at", "entity_pages", "entities_created",
                 "entities_updated", "entities_unchanged", "entities_deleted", "entities_skipped")


def save_entity_page(run: SyncRun, next_cursor: str) -> None:
    """``save_page`` for a page of the entities phase."""
    run.entity_cursor = next_cursor
    run.heartbeat_at = timezone.now()
    run.errors = run.errors[-MAX_RECORDED_ERRORS:]
    _save_if_ours(run, [*ENTITY_FIELDS, "heartbeat_at", "errors", "page_size"])


def enter_phase(run: SyncRun, phase: str) -> None:
    """Move the run on to ``phase`` (with what the phase before it counted); call in the
    transaction that ends the phase before."""
    run.phase = phase
    run.heartbeat_at = timezone.now()
    run.errors = run.errors[-MAX_RECORDED_ERRORS:]
    _save_if_ours(run, ["phase", "deleted", "errors", "heartbeat_at", *ENTITY_FIELDS])


def finish_run(run: SyncRun, *, failure: str = "") -> None:
    """Release the lock. A failed run keeps its resume point for the next run, and the
    errors of the pages it stored: ``run`` may hold those of a page that failed to commit,
    which the next run reads again."""
    run.status = SyncRun.Status.FAILED if failure else SyncRun.Status.SUCCEEDED
    run.failure = failure
    run.finished_at = run.heartbeat_at = timezone.now()
    fields = ["status", "failure", "finished_at", "heartbeat_at"]
    if not failure:
        run.errors = run.errors[-MAX_RECORDED_ERRORS:]
        fields += ["deleted", "errors", *ENTITY_FIELDS]
    try:
        _save_if_ours(run, fields)
    finally:
        release(run)


def release(run: SyncRun) -> None:
    """Let go of the env's lock held by this process for ``run`` (idempotent)."""
    holder = getattr(run, "holder", None)
    if holder is not None:
        holder.release()


def _save_if_ours(run: SyncRun, fields: list[str]) -> None:
    values = {name: getattr(run, name) for name in fields}
    saved = _runs_of(run).filter(pk=run.pk, lease_token=run.lease_token).update(**values)
    if not saved:
        raise LeaseLost(
            f"Sync run #{run.pk} lost its lock: it stalled for longer than "
            f"AUTUMN_SYNC_LOCK_TIMEOUT ({autumn_settings.SYNC_LOCK_TIMEOUT} s) and another "
            "run took over. Nothing of this page was kept; the other run carries on."
        )


def _identity(holder: RunHolder, workflow: bool) -> dict[str, object]:
    """What the run row records of its holder: nobody, for a workflow run (its tasks run
    in any number of processes; a dead one is known by its lease)."""
    return {"host": "", "pid": None, "advisory_lock": False} if workflow else holder.identity()


def _take_over(run: SyncRun, now: datetime, holder: RunHolder, workflow: bool) -> SyncRun:
    old_token, new_token = run.lease_token, uuid.uuid4().hex
    runs = _runs_of(run)
    try:
        with transaction.atomic(using=runs.db):
            taken = runs.filter(pk=run.pk, lease_token=old_token).update(
                status=SyncRun.Status.RUNNING, lease_token=new_token, heartbeat_at=now,
                finished_at=None, failure="", attempts=run.attempts + 1,
                **_identity(holder, workflow),
            )
    except IntegrityError:  # another run became the running one meanwhile
        taken = 0
    if not taken:
        raise _already_running(runs.filter(env=run.env).order_by("-pk").first(), now)
    run.refresh_from_db()
    logger.info("Resuming sync run #%s from its last saved page.", run.pk)
    return run


def _abandon(run: SyncRun, now: datetime) -> None:
    _runs_of(run).filter(pk=run.pk, lease_token=run.lease_token).update(
        status=SyncRun.Status.FAILED, finished_at=now,
        failure="Abandoned: its process stopped renewing the lock, and a restart was asked for.",
    )


def _runs_of(run: SyncRun) -> QuerySet[SyncRun]:
    """Runs in the database ``run`` was loaded from."""
    return SyncRun.objects.using(run._state.db or DEFAULT_DB_ALIAS)


def _already_running(run: SyncRun | None, now: datetime,
                     queued_at: datetime | None = None) -> SyncAlreadyRunning:
    if run is None:
        return SyncAlreadyRunning("Another sync started at the same moment; this one stops.")
    age = int((now - run.heartbeat_at).total_seconds())
    if queued_at is not None:
        waited = int((now - queued_at).total_seconds())
        return SyncAlreadyRunning(
            f"Another sync of {run.env} is running (workflow run #{run.pk}, last progress "
            f"{age} s ago): its window tasks wait in the Celery queue for a worker (queued "
            f"{waited} s ago). It counts as dead once no window of it was queued within "
            f"AUTUMN_SYNC_QUEUE_TIMEOUT ({autumn_settings.SYNC_QUEUE_TIMEOUT} s) and its lease "
            "ran out."
        )
    return SyncAlreadyRunning(
        f"Another sync of {run.env} is running (run #{run.pk} on {run.host or 'an unknown host'}, "
        f"pid {run.pid}, last progress {age} s ago). Wait for it to finish; if its process "
        f"died on another machine, its lock expires {autumn_settings.SYNC_LOCK_TIMEOUT} s after "
        "its last progress and the next run resumes it."
    )
