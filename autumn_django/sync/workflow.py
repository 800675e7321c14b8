"""The full sync as a Celery workflow: one task per window, any number of workers sharing
one run (the tasks are in ``autumn_django.tasks``; this module is their database side).

Everything the workers share lives in the database, so a worker may die at any point:
- the run row stays the env's one lock (``runs``), started with ``workflow=True``: no
  process holds it, so it records no host, pid or advisory lock. It is dead once its lease
  ran out (``AUTUMN_SYNC_LOCK_TIMEOUT`` after its last page, claim or entities page) and
  no window of it waits in the broker: a window queued (``queued_at``) within
  ``AUTUMN_SYNC_QUEUE_TIMEOUT`` and not yet claimed keeps it alive, so tasks waiting in a
  busy queue longer than the lease still find their run when a worker takes them;
- each window is a ``SyncWindow`` row, claimed by one task at a time (a claim older than
  the lock timeout is a dead worker's); a task updates only its own window's row, in each
  page's transaction, and adds the page's counts to the run with ``F()`` expressions, so
  no worker's progress is written over by another's;
- each page's key fingerprints are a ``SyncSighting`` row written in the page's
  transaction: a window resumed by another worker still counts what the dead one committed;
- a task that finished its window queues again every unfinished window whose task was
  never known to be queued (``queued_at`` is None: a worker died between the commit that
  made it and the enqueue); the claim still lets one task at a time crawl it;
- the last window to finish (a compare-and-swap on the run's phase) unions the sightings
  and settles deletions over the whole key space, once. The last stage (the entities pass
  and the end of the run, ``sync_finished``) is claimed like a window (``finish_claim``,
  renewed with each entities page, stale after the lock timeout): a task acknowledged
  late runs it, and its message, redelivered after a worker died, resumes the entities
  pass from the run's ``entity_cursor``.

A blind plan's one window is spread over ``AUTUMN_SYNC_WINDOWS`` after its first full
page, and a window that proves large is cut, as ``WindowPlan`` does both: each far part
becomes a new window row whose task is queued once the page that cut it committed, up to
``AUTUMN_SYNC_WINDOWS`` windows unfinished at once.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from array import array
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial

from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import F, Q
from django.utils import timezone

from ..client import AutumnClient, ListPosition
from ..conf import autumn_settings
from ..exceptions import InvalidCursorError
from ..models import SyncRun, SyncSighting, SyncWindow
from ..owners import link_owners_to_customers
from . import events, memos, runs
from .catalogue import sync_catalogue
from .entity_pass import EntityPass
from .full import _failure_text, _key_text, _Pass, _sync_catalogue, _Written
from .holders import this_host
from .lanes import OneConnection
from .pagecache import sync_page_cache
from .pages.fingerprints import Fingerprints
from .pages.preparer import PagePreparer, PreparedPage
from .pages.timeforms import EPOCH
from .pages.windows import Window
from .partition import plan_windows
from .writer import MirrorWriter

logger = logging.getLogger(__name__)

Enqueue = Callable[[int], None]  # queue the task of a window, by number


class WindowLost(runs.LeaseLost):
    """Another task claimed this window: this one's claim went stale (it stalled longer
    than the lock timeout) or the run was taken over."""


class FinishLost(runs.LeaseLost):
    """Another task claimed the run's last stage (this one's claim went stale), or the
    run ended or was taken over."""


def start_workflow(client: AutumnClient, *, restart: bool = False,
                   using: str = DEFAULT_DB_ALIAS) -> tuple[SyncRun, list[int]]:
    """Take the env's lock for a workflow run (a new one, or the env's unfinished workflow
    run resumed), read the catalogue and plan its windows; returns the run and the numbers
    of the windows whose tasks the caller queues (none: the customers are all crawled, and
    the caller settles with ``settle_if_last`` and runs ``finish_workflow``). Raises
    ``SyncAlreadyRunning``."""
    run = runs.start_run(client.env, page_size=autumn_settings.SYNC_PAGE_SIZE, restart=restart,
                         using=using, workflow=True)
    try:
        if run.phase == "customers":
            _sync_catalogue(run, partial(sync_catalogue, client, using=using))
        with transaction.atomic(using=using):
            windows = SyncWindow.objects.using(using).filter(run=run)
            if not windows.exists():
                plan = plan_windows(run.env, using, run.page_size)
                # A plan of several windows is kept whole (``plan_windows``).
                SyncWindow.objects.using(using).bulk_create(
                    SyncWindow(run=run, number=w.id, start=w.start, end=w.end, planned=len(plan) > 1)
                    for w in plan)
            # The tasks of the attempt before are gone (it was dead): free their claims. The
            # caller queues every unfinished window again (then ``mark_queued``).
            windows.filter(done=False).update(claim="", claimed_at=None, queued_at=None)
            SyncRun.objects.using(using).filter(pk=run.pk).update(finish_claim="", finish_claimed_at=None)
            runs.save_errors(run)
            pending = list(windows.filter(done=False).order_by("number").values_list("number", flat=True))
    except BaseException as exc:
        if isinstance(exc, runs.LeaseLost):
            runs.release(run)
        else:
            runs.finish_run(run, failure=_failure_text(exc))
        raise
    runs.release(run)  # the run row is the lock; this process is not its holder
    return run, pending


def claim_window(run_pk: int, number: int, lease_token: str,
                 using: str = DEFAULT_DB_ALIAS) -> tuple[SyncRun, SyncWindow] | str:
    """Claim a window for this task: the run and the window row, or why not: "stale" (the
    run finished, failed or was taken over), "done", or "busy" (a live task crawls it; a
    copy of its message, redelivered, waits until it is done or its claim goes stale)."""
    run = SyncRun.objects.using(using).filter(pk=run_pk, lease_token=lease_token,
                                              status=SyncRun.Status.RUNNING).first()
    if run is None:
        return "stale"
    now = timezone.now()
    stale_before = now - timedelta(seconds=autumn_settings.SYNC_LOCK_TIMEOUT)
    claim = uuid.uuid4().hex
    rows = SyncWindow.objects.using(using).filter(run=run, number=number)
    claimed = rows.filter(done=False).filter(Q(claim="") | Q(claimed_at__lt=stale_before)).update(
        claim=claim, claimed_at=now, worker=f"{this_host()}:{os.getpid()}")
    if not claimed:
        row = rows.first()
        return "busy" if row is not None and not row.done else "done"
    SyncRun.objects.using(using).filter(pk=run.pk, lease_token=lease_token).update(heartbeat_at=now)
    return run, rows.get()


def crawl_window(client: AutumnClient, run: SyncRun, row: SyncWindow, enqueue: Enqueue,
                 using: str = DEFAULT_DB_ALIAS) -> None:
    """Crawl a claimed window from its committed position to its end. A failure other than
    a lost claim or lease fails the run (its windows' positions are kept for the next)."""
    try:
        with sync_page_cache(using):
            _WindowPass(client, run, row, enqueue, using).execute()
    except runs.LeaseLost:
        raise
    except BaseException as exc:
        SyncRun.objects.using(using).filter(pk=run.pk, lease_token=run.lease_token).update(
            status=SyncRun.Status.FAILED, failure=_failure_text(exc), finished_at=timezone.now())
        raise


def mark_queued(run_pk: int, numbers: list[int], using: str = DEFAULT_DB_ALIAS) -> None:
    """Record that these windows' tasks were handed to the broker (call after the enqueue:
    a worker dying in between leaves them to ``unqueued_windows``, at worst queued twice)."""
    if numbers:
        SyncWindow.objects.using(using).filter(run_id=run_pk, number__in=numbers, done=False) \
            .update(queued_at=timezone.now())


def unqueued_windows(run_pk: int, lease_token: str, using: str = DEFAULT_DB_ALIAS) -> list[int]:
    """The unfinished windows of a live run that no task claimed and none is known to be
    queued for: cut by a page whose worker died before queueing their task. The caller
    queues them (a copy queued twice finds the window claimed, or done)."""
    live = SyncRun.objects.using(using).filter(pk=run_pk, lease_token=lease_token,
                                               status=SyncRun.Status.RUNNING)
    if not live.exists():
        return []
    return list(SyncWindow.objects.using(using).filter(
        run_id=run_pk, done=False, claim="", queued_at__isnull=True,
    ).order_by("number").values_list("number", flat=True))


def settle_if_last(run_pk: int, lease_token: str, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Once every window is done, one task (whichever wins the run's phase) settles the
    customers' deletions. True when the run's customers are settled (by this call or an
    earlier one) and it still runs: the caller then runs ``finish_workflow``."""
    _settle(run_pk, lease_token, using)
    return SyncRun.objects.using(using).filter(pk=run_pk, lease_token=lease_token, phase="entities",
                                               status=SyncRun.Status.RUNNING).exists()


def finish_workflow(client: AutumnClient, run_pk: int, lease_token: str,
                    using: str = DEFAULT_DB_ALIAS) -> SyncRun | str:
    """The last stage of a run whose customers are settled: claim it, link owners, crawl
    the entities from the run's saved ``entity_cursor``, finish the run. Returns the
    finished run, or why not: "stale" (finished, failed or taken over) or "busy" (a live
    task runs the stage; a copy of its message waits until it ends or its claim is stale)."""
    claimed = _claim_finish(run_pk, lease_token, using)
    if isinstance(claimed, str):
        return claimed
    run, claim = claimed
    guard = partial(_hold_finish, run, claim, using)
    try:
        link_owners_to_customers(run.env, using=using)  # idempotent: again on a resumed stage
        with sync_page_cache(using):
            EntityPass(client, run, using, guard=guard).execute()
        with transaction.atomic(using=using):
            guard()  # a stalled task whose claim was taken must not end the run
            runs.finish_run(run)
    except BaseException as exc:
        if not isinstance(exc, runs.LeaseLost):
            runs.finish_run(run, failure=_failure_text(exc))
        raise
    events.send_sync_finished_on_commit(run, using)
    return run


def run_env(run_pk: int, using: str = DEFAULT_DB_ALIAS) -> str | None:
    """The env of a run (None: no such run), for a task's client."""
    return SyncRun.objects.using(using).filter(pk=run_pk).values_list("env", flat=True).first()


def _claim_finish(run_pk: int, lease_token: str, using: str) -> tuple[SyncRun, str] | str:
    now = timezone.now()
    stale_before = now - timedelta(seconds=autumn_settings.SYNC_LOCK_TIMEOUT)
    settled = SyncRun.objects.using(using).filter(pk=run_pk, lease_token=lease_token, phase="entities",
                                                  status=SyncRun.Status.RUNNING)
    claim = uuid.uuid4().hex
    claimed = settled.filter(Q(finish_claim="") | Q(finish_claimed_at__lt=stale_before)).update(
        finish_claim=claim, finish_claimed_at=now, heartbeat_at=now)
    if not claimed:
        return "busy" if settled.exists() else "stale"
    return settled.get(), claim


def _hold_finish(run: SyncRun, claim: str, using: str) -> None:
    """First in each transaction of the last stage (a write: SQLite's lock is taken, and
    PostgreSQL's row lock holds off a task that would claim the stage meanwhile)."""
    held = SyncRun.objects.using(using).filter(pk=run.pk, finish_claim=claim, lease_token=run.lease_token,
                                               status=SyncRun.Status.RUNNING)
    if not held.update(finish_claimed_at=timezone.now()):
        raise FinishLost(f"The last stage of sync run #{run.pk} was claimed by another task (this one "
                         "stalled longer than AUTUMN_SYNC_LOCK_TIMEOUT) or the run ended; nothing "
                         "of this page was kept.")


def _settle(run_pk: int, lease_token: str, using: str) -> SyncRun | None:
    now = timezone.now()
    with transaction.atomic(using=using):
        # The compare-and-swap first (a write: SQLite takes its lock now): of the tasks that
        # each saw every window done, one moves the run on.
        moved = SyncRun.objects.using(using).filter(
            pk=run_pk, lease_token=lease_token, status=SyncRun.Status.RUNNING, phase="customers",
        ).update(phase="entities", heartbeat_at=now)
        if not moved or SyncWindow.objects.using(using).filter(run_id=run_pk, done=False).exists():
            transaction.set_rollback(True, using=using)
            return None
        run = SyncRun.objects.using(using).get(pk=run_pk)
        run.phase = "customers"  # until enter_phase below, with what the phase counted
        rows = list(SyncWindow.objects.using(using).filter(run=run).order_by("number"))
        run.errors += [error for row in rows for error in row.errors]
        reached = [row.reached for row in rows if row.reached is not None]
        if reached:
            run.reached_created_at = EPOCH + timedelta(milliseconds=max(reached))
        # Kept as in-process runs keep them: the next run reuses their bounds.
        runs.save_page(run, [_window_of(row).as_dict() for row in rows])
        memos.prune_memos(run.env, run.started_at, using)
        deleted: list[int] = []
        if all(row.identified_everyone for row in rows):
            seen = Fingerprints()
            sightings = SyncSighting.objects.using(using).filter(run=run)
            for blob in sightings.values_list("fingerprints", flat=True):
                seen.add_many(array("Q", bytes(blob)))
            # Every page of the run stored its sightings, whichever worker read it: the
            # whole key space is judged.
            deleted = MirrorWriter(run.env, using).mark_missing_deleted(
                seen, pass_started_at=run.started_at, judged=None, now=now)
        else:
            run.errors.append({"warning": "Records that might stand for a mirrored customer (not "
                                          "an object, or an id that is not text) were skipped, so "
                                          "no customer was marked deleted by this run."})
        run.deleted += len(deleted)
        runs.enter_phase(run, "entities")
        SyncSighting.objects.using(using).filter(run=run).delete()
        transaction.on_commit(lambda: events.send_deleted_events(deleted, using), using=using)
    return run


def _window_of(row: SyncWindow) -> Window:
    return Window(row.number, row.start, row.end, row.cursor, row.created_at_start, row.reached,
                  row.done, row.pages)


class _WindowPass(_Pass):
    """One task's crawl of one window: the in-process pass's page pipeline (read again
    where fresher, write, record), with the window's row, the page's sightings and the
    run's counts recorded in the page's transaction."""

    def __init__(self, client: AutumnClient, run: SyncRun, row: SyncWindow, enqueue: Enqueue,
                 using: str) -> None:
        super().__init__(client, run, using, None)
        self.row, self.enqueue = row, enqueue
        self.window = _window_of(row)
        self.identified_everyone = row.identified_everyone
        # A plan reused from the last complete run keeps its bounds (and its pages' memos).
        self.fixed = row.planned

    def execute(self) -> None:
        with OneConnection(self.using, self.writer, write=self._write, record=self._record) as pipeline:
            for _ in pipeline.stored_in_order(self._pages()):
                pass

    def _pages(self) -> Iterator[PreparedPage]:
        while True:
            try:
                for prepared in self._page_source():
                    self._read_again_where_fresher(prepared)
                    yield prepared
                return
            except InvalidCursorError:
                if not self.window.cursor:
                    raise
                # Autumn no longer understands the saved cursor: go on from the created_at
                # the window reached (customers of that very ms are read again, unchanged).
                logger.warning("Autumn rejected window %s of run #%s's saved cursor; resuming it "
                               "from the created_at it reached.", self.window.id, self.run.pk)
                self.window.cursor = ""
                self.window.created_at_start = self.window.reached or self.window.start

    def _page_source(self) -> Iterator[PreparedPage]:
        def stored_memos() -> dict[bytes, bytes]:
            return memos.stored_memos(self.client.env, self.using)

        preparer = PagePreparer(self.client, self.writer.state_fingerprints, stored_memos,
                                form=self.writer.form)
        position = ListPosition(self.window.cursor, self.window.created_at_start)
        for prepared in preparer.pages(position, self.run.page_size, window=self.window):
            prepared.window = self.window.id
            yield prepared

    def _write(self, prepared: PreparedPage, writer):  # type: ignore[override]
        # First in the page's transaction, and a write: the claim is checked (and SQLite's
        # write lock taken, so two workers' transactions never deadlock upgrading a read).
        claimed = SyncWindow.objects.using(self.using).filter(pk=self.row.pk, claim=self.row.claim) \
            .update(claimed_at=timezone.now())
        if not claimed:
            raise WindowLost(f"Window {self.window.id} of sync run #{self.run.pk} was claimed by "
                             "another task (this one stalled longer than AUTUMN_SYNC_LOCK_TIMEOUT); "
                             "nothing of this page was kept.")
        return super()._write(prepared, writer)

    def _record(self, prepared: PreparedPage, written: _Written) -> None:  # type: ignore[override]
        window, result, problems, using = self.window, written.result, prepared.problems, self.using
        self.identified_everyone &= all(p.key or not p.may_be_mirrored for p in problems)
        window.committed(prepared.page.next_position, prepared.reached_created_at)
        # The run's counts, added where they stand (other workers add theirs): this also
        # locks the run's row until the commit, so windows are numbered one at a time below.
        added = SyncRun.objects.using(using).filter(
            pk=self.run.pk, lease_token=self.run.lease_token, status=SyncRun.Status.RUNNING,
        ).update(pages=F("pages") + 1, created=F("created") + len(result.created),
                 updated=F("updated") + len(result.updated),
                 undeleted=F("undeleted") + len(result.undeleted),
                 unchanged=F("unchanged") + len(result.unchanged) + len(result.kept) + prepared.unchanged,
                 deleted=F("deleted") + len(written.deleted), reread=F("reread") + prepared.reread,
                 skipped=F("skipped") + len(problems), heartbeat_at=timezone.now())
        if not added:
            raise runs.LeaseLost(f"Sync run #{self.run.pk} finished, failed or was taken over; "
                                 "nothing of this page was kept.")
        cuts = [] if window.done else self._cuts()
        errors = [{"customer": _key_text(p.key), "error": p.problem} for p in problems]
        errors += [{"warning": warning} for warning in prepared.page.warnings]
        self.row.errors = (self.row.errors + errors)[-runs.MAX_RECORDED_ERRORS:]
        SyncWindow.objects.using(using).filter(pk=self.row.pk, claim=self.row.claim).update(
            end=window.bounds()[1], cursor=window.cursor, created_at_start=window.created_at_start,
            reached=window.reached, done=window.done, pages=window.pages, errors=self.row.errors,
            identified_everyone=self.identified_everyone)
        SyncSighting.objects.using(using).create(run_id=self.run.pk, window=window.id,
                                                 fingerprints=array("Q", prepared.seen).tobytes())
        if cuts:
            first = (SyncWindow.objects.using(using).filter(run_id=self.run.pk)
                     .order_by("-number").values_list("number", flat=True).first()) + 1
            SyncWindow.objects.using(using).bulk_create(
                SyncWindow(run_id=self.run.pk, number=number, start=start, end=end)
                for number, (start, end) in enumerate(cuts, first))
            for number in range(first, first + len(cuts)):
                transaction.on_commit(partial(self.enqueue, number), using=using)
        transaction.on_commit(partial(self._send_written, written), using=using)

    def _send_written(self, written: _Written) -> None:
        events.send_write_events(written.result, written.balances, self.using)
        events.send_deleted_events(written.deleted, self.using)

    def _cuts(self) -> list[tuple[int, int | None]]:
        """The bounds of the windows cut off this one, as ``WindowPlan`` cuts (the page on
        its way drops rows past the new end): a blind plan's one window, after its first
        full page, spread over ``AUTUMN_SYNC_WINDOWS`` (``Window.spread``); else its far
        part when a cut is worth it (``Window.pages_to_cut``) and fewer than
        ``AUTUMN_SYNC_WINDOWS`` windows are unfinished (``Window.cut``)."""
        window, now = self.window, time.time_ns() // 1_000_000
        if self.fixed:
            return []
        windows = SyncWindow.objects.using(self.using).filter(run_id=self.run.pk)
        if window.whole() and window.full_pages and windows.count() == 1:
            # Numbered as they are stored.
            return [(far.start, far.end) for far in window.spread(now, autumn_settings.SYNC_WINDOWS, 0)]
        if not window.pages_to_cut(now) or windows.filter(done=False).count() >= autumn_settings.SYNC_WINDOWS:
            return []
        far = window.cut(now, new_id=0)
        return [] if far is None else [(far.start, far.end)]
