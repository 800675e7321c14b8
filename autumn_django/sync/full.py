"""The full sync: every customer of the key's env, page by page, into the mirror.

A page is written a while after it was read (seconds, minutes behind a slow database),
from a replica that lags Autumn's primary. Its rows never overwrite data read later (a
refresh in between: the writer's upsert decides), and a list row that disagrees with a
``customers.get`` answer read less than ``AUTUMN_SYNC_REPLICA_LAG_SECONDS`` before the page
was requested is not written: that customer is read again with ``customers.get`` and the
answer written instead (``SyncRun.reread``; the rules are in ``trust``).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone

from ..client import AutumnClient
from ..conf import autumn_settings
from ..exceptions import AutumnAPIError, AutumnResponseError, InvalidCursorError, NotFoundError, StopRequested
from ..models import SyncRun
from ..owners import link_owners_to_customers
from . import events, memos, runs
from .catalogue import CatalogueAhead, CatalogueResult
from .entity_pass import EntityPass, EntityProgress
from .lanes import CommitLanes, OneConnection, lane_count
from .pagecache import sync_page_cache
from .pages.crawl import WindowedCrawl
from .pages.fingerprints import Fingerprints
from .pages.prefetch import prepared_pages
from .pages.preparer import MirrorView, PreparedPage
from .pages.rawpages import RawPage
from .pages.records import CustomerRecord, RecordError
from .pages.timeforms import EPOCH
from .pages.trust import record_catalogue, with_list_catalogue
from .pages.windows import WindowPlan
from .partition import RunWindows
from .writer import MirrorWriter, WriteResult

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncProgress:
    """What a progress display needs after each committed page."""

    run: SyncRun
    page: RawPage
    first_created_at: int | None  # epoch ms the crawl had reached after this attempt's first page
    last_created_at: int | None  # epoch ms the page reached (its window's crawl ascends)
    covered: float = 0.0  # about how much of the key space is crawled, 0 to 1
    done: bool = False  # the last page of the crawl


ProgressCallback = Callable[[SyncProgress], None]


def sync_all_customers(*, client: AutumnClient | None = None, page_size: int | None = None,
                       restart: bool = False, progress: ProgressCallback | None = None,
                       using: str = DEFAULT_DB_ALIAS,
                       entity_progress: EntityProgress | None = None) -> SyncRun:
    """Bring the mirror of the key's env in step with Autumn; returns the finished run.

    A run reads the catalogue (features and plans, while its first customers page is on
    its way), then every customer, settles customer deletions, then crawls every entity
    (``entity_pass``) and settles entity deletions. ``progress`` is called after each
    customers page, ``entity_progress`` after each entities page.

    Resumes the env's last unfinished run from its last committed page unless ``restart``.
    Raises ``SyncAlreadyRunning`` when another run holds the lock, and any ``AutumnError``
    that stopped the run (the run is then recorded as failed, its progress kept). A run
    that succeeds sends ``signals.sync_finished`` once its last write is committed.
    """
    client = client or AutumnClient()
    page_size = page_size or autumn_settings.SYNC_PAGE_SIZE
    run = runs.start_run(client.env, page_size=page_size, restart=restart, using=using)
    try:
        with sync_page_cache(using):
            if run.phase == "customers":
                _Pass(client, run, using, progress, catalogue=CatalogueAhead(client)).execute()
            EntityPass(client, run, using, entity_progress).execute()
        runs.finish_run(run)
    except BaseException as exc:  # Ctrl-C and SIGTERM too: release the lock now
        if isinstance(exc, runs.LeaseLost):
            runs.release(run)  # the run is its successor's now; only our lock is ours
        else:
            runs.finish_run(run, failure=_failure_text(exc))
        raise
    # Succeeded runs only: a failed one's counts are partial; the run resuming it sends it.
    events.send_sync_finished_on_commit(run, using)
    return run


@dataclass(frozen=True)
class _Written:
    result: WriteResult
    balances: events.BalanceChanges | None
    deleted: list[int]  # read again and not found


@dataclass(frozen=True)
class _Stored:
    written: _Written
    run: SyncRun  # as this page left it
    covered: float  # of the key space, after this page
    done: bool  # every window is done


class _Pass:
    """One attempt at a run: crawl from the run's saved position to the end, then settle
    deletions for the part of the key space this attempt saw."""

    def __init__(self, client: AutumnClient, run: SyncRun, using: str,
                 progress: ProgressCallback | None, catalogue: CatalogueAhead | None = None) -> None:
        self.client, self.run, self.using, self.progress = client, run, using, progress
        # Stored once the first page is in, before it is written (or once the crawl found
        # none): the catalogue's requests overlap the crawl's first ones.
        self._catalogue = catalogue
        self.writer = MirrorWriter(client.env, using)
        # Key fingerprints of every customer this attempt saw: kept in memory (8 bytes
        # each) rather than stamped on the rows, so unchanged customers are never rewritten.
        self.seen = Fingerprints()
        # The created_at windows crawled side by side, as committed; a resumed attempt only
        # judges the customers in the part of each window after where it stood.
        self.windows = RunWindows.for_run(run, using)
        self.identified_everyone = True
        self.first_created_at: int | None = None

    def execute(self) -> None:
        with self._pipeline() as pipeline:
            for prepared, stored in pipeline.stored_in_order(self._pages()):
                # At once after the page's commit; inside the caller's own transaction, at its commit.
                transaction.on_commit(partial(self._send_events, stored), using=self.using)
                self._report(prepared, stored)
        self._settle_deletions()

    def _pipeline(self) -> CommitLanes | OneConnection:
        """Pages written and committed in order: on lanes of their own connections where
        the database takes several writers (``lanes``), else one by one on this one."""
        lanes = lane_count(self.using, autumn_settings.SYNC_DB_CONNECTIONS)
        if lanes == 1:
            return OneConnection(self.using, self.writer, write=self._write, record=self._record)
        env, using = self.client.env, self.using
        return CommitLanes(lanes, using, lane=lambda: MirrorWriter(env, using), write=self._write,
                           record=self._record, touches=_customers_of)

    def _pages(self) -> Iterator[PreparedPage]:
        while True:
            resumed = any(w.started for w in self.windows.windows.values())
            try:
                for prepared in self._page_source():
                    self._store_catalogue()
                    self._read_again_where_fresher(prepared)
                    yield prepared
                self._store_catalogue()
                return
            except InvalidCursorError:
                if not resumed:
                    raise
                # Autumn no longer understands a saved cursor: start the pass over.
                # Nothing is lost; mirrored customers come back unchanged.
                logger.warning("Autumn rejected run #%s's saved cursor; restarting its pass.",
                               self.run.pk)
                self.run.errors.append({"warning": "The saved cursor was rejected; the pass restarted."})
                self.windows.restart()

    def _store_catalogue(self) -> None:
        if self._catalogue is not None:
            ahead, self._catalogue = self._catalogue, None
            _sync_catalogue(self.run, partial(ahead.store, using=self.using))

    def _page_source(self) -> Iterator[PreparedPage]:
        """Every window's prepared pages, merged (``crawl``): in the prefetch child, or here."""
        form = self.writer.form
        windows, crawlers = self.windows.to_crawl(), autumn_settings.SYNC_WINDOWS

        def stored_memos() -> dict[bytes, bytes]:
            return memos.stored_memos(self.client.env, self.using)

        if autumn_settings.SYNC_PREFETCH_PROCESS:
            return prepared_pages(self.client, windows, crawlers, self.run.page_size,
                                  self.writer.state_fingerprints, stored_memos, form=form,
                                  fixed=self.windows.fixed)
        view = MirrorView(self.writer.state_fingerprints, stored_memos)
        arguments = self.client.arguments()
        crawl = WindowedCrawl(WindowPlan(windows, fixed=self.windows.fixed, crawlers=crawlers),
                              make_client=lambda: AutumnClient(**arguments),
                              limit=self.run.page_size, crawlers=crawlers, view=view,
                              form=form)
        crawl.start()
        try:
            view.load()  # on this thread: it reads the database
        except BaseException:
            crawl.stop()
            raise
        return crawl.pages()

    def _read_again_where_fresher(self, prepared: PreparedPage) -> None:
        """Before the page is written, outside its transaction: its list rows that
        disagree with a ``customers.get`` answer the mirror holds, read less than the
        replica-lag margin before the page was requested, are replaced by a new
        ``customers.get`` answer (with the page's catalogue fields, ``trust``). Rows read
        after the page are left to the writer, which keeps them."""
        lag = autumn_settings.SYNC_REPLICA_LAG_SECONDS
        listed = [record for record in prepared.records
                  if record.read_via == "list" and record.key[0] == "id"]
        if not lag or not listed or prepared.read_at is None:
            return
        stored = self.writer.read_by_get_between(
            listed, prepared.read_at - timedelta(seconds=lag), prepared.read_at)
        again = [record for record in listed if (row := stored.get(record.key)) is not None
                 and (row.raw_hash != record.raw_hash or row.deleted)]
        if not again:
            return
        prepared.reread += len(again)
        answers = {record.key: self._read_again(record, prepared) for record in again}
        records = (answers.get(record.key, record) for record in prepared.records)
        prepared.records = [record for record in records if record is not None]

    def _read_again(self, listed: CustomerRecord, prepared: PreparedPage) -> CustomerRecord | None:
        """The record of ``customers.get``'s answer for a list row's customer; None (and the
        page told why) when Autumn no longer has it or the answer does not parse."""
        asked_at = timezone.now()
        try:
            read = self.client.customers.get_read(listed.key[1])
        except NotFoundError:
            prepared.gone.append((listed.key[1], asked_at))
            return None
        data = with_list_catalogue(read.customer, record_catalogue(listed))
        try:
            return self.writer.form.parse(data, read_at=read.read_at, read_via="get")
        except RecordError as exc:
            prepared.problems.append(exc)
            return None

    def _write(self, prepared: PreparedPage, writer: MirrorWriter) -> _Written:
        """A page's rows and memo, in its transaction (on ``writer``'s connection)."""
        balances = events.balance_recorder(self.using)
        now = timezone.now()
        result = writer.write(prepared.records, now=now,
                              before_replace=balances and balances.before_replace)
        if balances is not None:
            balances.after_write(result)
        deleted = []
        for autumn_id, asked_at in prepared.gone:
            deleted += writer.mark_deleted_by_get([autumn_id], read_at=asked_at, now=now)
        memos.save_memo(self.run.env, prepared, now, self.using)
        return _Written(result, balances, deleted)

    def _record(self, prepared: PreparedPage, written: _Written) -> _Stored:
        """The run's counters and resume point, last in the page's transaction: pages
        reach this one at a time, in order."""
        run, result, problems = self.run, written.result, prepared.problems
        # A record that might be a mirrored customer garbled must not let that customer
        # be taken for deleted; one with neither id nor email never was a mirror row.
        self.identified_everyone &= all(problem.key or not problem.may_be_mirrored for problem in problems)
        run.page_size = prepared.page.limit  # Autumn may have lowered it to the org's maximum
        run.pages += 1
        run.created += len(result.created)
        run.updated += len(result.updated)
        run.undeleted += len(result.undeleted)
        # Rows kept because they hold data read later did not change either.
        run.unchanged += len(result.unchanged) + len(result.kept) + prepared.unchanged
        run.deleted += len(written.deleted)
        run.reread += prepared.reread
        run.skipped += len(problems)
        run.errors += [{"customer": _key_text(p.key), "error": p.problem} for p in problems]
        run.errors += [{"warning": warning} for warning in prepared.page.warnings]
        if prepared.reached_created_at is not None:
            reached = EPOCH + timedelta(milliseconds=prepared.reached_created_at)
            run.reached_created_at = max(run.reached_created_at or reached, reached)
        self.windows.record(prepared)
        runs.save_page(run, self.windows.as_json())
        # The next page may already be counting into ``run``: progress gets this page's.
        snapshot = copy.copy(run)
        snapshot.errors = list(run.errors)
        return _Stored(written, snapshot, self.windows.covered(), self.windows.done)

    def _send_events(self, stored: _Stored) -> None:
        events.send_write_events(stored.written.result, stored.written.balances, self.using)
        events.send_deleted_events(stored.written.deleted, self.using)

    def _report(self, prepared: PreparedPage, stored: _Stored) -> None:
        """After the page committed."""
        self.seen.add_many(prepared.seen)
        if self.progress:
            if self.first_created_at is None:
                self.first_created_at = prepared.reached_created_at
            self.progress(SyncProgress(stored.run, prepared.page, self.first_created_at,
                                       prepared.reached_created_at, stored.covered, stored.done))

    def _settle_deletions(self) -> None:
        run = self.run
        memos.prune_memos(run.env, run.started_at, self.using)
        if not self.identified_everyone:
            run.errors.append({"warning": "Records that might stand for a mirrored customer (not "
                                          "an object, or an id that is not text) were skipped, so "
                                          "no customer was marked deleted by this run."})
            runs.enter_phase(run, "entities")
            return
        with transaction.atomic(using=self.using):
            deleted = self.writer.mark_missing_deleted(
                self.seen, pass_started_at=run.started_at, judged=self.windows.judged,
                now=timezone.now())
            run.deleted += len(deleted)
            runs.enter_phase(run, "entities")
            transaction.on_commit(lambda: events.send_deleted_events(deleted, self.using),
                                  using=self.using)
        # Owners whose signup task never ran (or that predate the app) get their link now.
        linked = link_owners_to_customers(run.env, using=self.using)
        if linked:
            logger.info("Linked %d owners to their Autumn customers.", linked)


def _sync_catalogue(run: SyncRun, sync: Callable[[], CatalogueResult]) -> None:
    """The org's features and plans (``sync`` mirrors them), before the customers. A
    catalogue Autumn will not give (an older server, a key without the scope) is worth a
    warning, not the run."""
    try:
        result = sync()
    except (AutumnAPIError, AutumnResponseError) as exc:
        run.errors.append({"warning": f"The catalogue (features, plans) was not synced: {exc}"})
        return
    run.errors += [{"warning": f"Catalogue entry skipped: {problem}"} for problem in result.problems]


def _customers_of(prepared: PreparedPage) -> set[tuple[str, str]]:
    """The customer rows a page may write: by key, and by email (an id-less row it claims)."""
    return ({record.key for record in prepared.records}
            | {("email", record.email) for record in prepared.records if record.email}
            | {("id", autumn_id) for autumn_id, _ in prepared.gone})


def _key_text(key: tuple[str, str] | None) -> str | None:
    return f"{key[0]}:{key[1]}" if key else None


def _failure_text(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        by = f" by {exc.signal_name}" if isinstance(exc, StopRequested) else ""
        return f"Interrupted{by}; the next run resumes from the last saved page."
    return f"{type(exc).__name__}: {exc}"
