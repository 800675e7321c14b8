"""The full sync: every customer of the key's env, page by page, into the mirror."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone

from ..client import AutumnClient, ListPage, ListPosition
from ..conf import autumn_settings
from ..exceptions import InvalidCursorError, NotFoundError
from ..models import SyncRun
from ..users import link_users_to_customers
from . import events, runs
from .records import CustomerRecord, RecordError, parse_customer
from .writer import MirrorWriter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncProgress:
    """What a progress display needs after each committed page."""

    run: SyncRun
    page: ListPage
    first_created_at: int | None  # epoch ms of the first customer this attempt saw
    last_created_at: int | None  # epoch ms of the last customer so far


ProgressCallback = Callable[[SyncProgress], None]


@dataclass
class ParsedPage:
    page: ListPage
    records: list[CustomerRecord]
    problems: list[RecordError]


def sync_all_customers(*, client: AutumnClient | None = None, page_size: int | None = None,
                       restart: bool = False, progress: ProgressCallback | None = None,
                       using: str = DEFAULT_DB_ALIAS) -> SyncRun:
    """Bring the mirror of the key's env in step with Autumn; returns the finished run.

    Resumes the env's last unfinished run from its last committed page unless ``restart``.
    Raises ``SyncAlreadyRunning`` when another run holds the lock, and any ``AutumnError``
    that stopped the run (the run is then recorded as failed, its progress kept).
    """
    client = client or AutumnClient()
    page_size = page_size or autumn_settings.SYNC_PAGE_SIZE
    run = runs.start_run(client.env, page_size=page_size, restart=restart)
    try:
        _Pass(client, run, using, progress).execute()
    except BaseException as exc:  # Ctrl-C too: release the lock now, not after the timeout
        if not isinstance(exc, runs.LeaseLost):
            runs.finish_run(run, failure=_failure_text(exc))
        raise
    return run


class _Pass:
    """One attempt at a run: crawl from the run's saved position to the end, then settle
    deletions for the part of the key space this attempt saw."""

    def __init__(self, client: AutumnClient, run: SyncRun, using: str,
                 progress: ProgressCallback | None) -> None:
        self.client, self.run, self.using, self.progress = client, run, using, progress
        self.writer = MirrorWriter(client.env, using)
        # Primary keys of every customer this attempt saw. Kept in memory rather than
        # stamped on the rows, so that unchanged customers are never rewritten.
        self.seen: set[int] = set()
        # A resumed attempt only judges customers after the point it started from.
        resumed = bool(run.cursor) or run.created_at_start is not None
        self.crawled_after: datetime | None = run.reached_created_at if resumed else None
        self.identified_everyone = True
        self.first_created_at: int | None = None

    def execute(self) -> None:
        for parsed in self._pages():
            self._store(parsed)
        self._settle_deletions()

    def _pages(self) -> Iterator[ParsedPage]:
        position = ListPosition(self.run.cursor, self.run.created_at_start)
        while True:
            try:
                for page in self.client.customers.iter_pages(limit=self.run.page_size,
                                                             position=position):
                    yield ParsedPage(page, *_parse_page(self.client, page.customers))
                return
            except InvalidCursorError:
                if position == ListPosition():
                    raise
                # Autumn no longer understands the saved cursor: start the pass over.
                # Nothing is lost; mirrored customers come back unchanged.
                logger.warning("Autumn rejected run #%s's saved cursor; restarting its pass.",
                               self.run.pk)
                self.run.errors.append({"warning": "The saved cursor was rejected; the pass restarted."})
                position, self.crawled_after = ListPosition(), None

    def _store(self, parsed: ParsedPage) -> None:
        run, records, problems = self.run, parsed.records, parsed.problems
        self.identified_everyone &= all(problem.key for problem in problems)
        run.page_size = parsed.page.limit  # Autumn may have lowered it to the org's maximum
        previous_balances, before_replace = events.balance_recorder(self.using)
        with transaction.atomic(using=self.using):
            result = self.writer.write(records, now=timezone.now(), before_replace=before_replace)
            run.pages += 1
            run.created += len(result.created)
            run.updated += len(result.updated)
            run.undeleted += len(result.undeleted)
            run.unchanged += len(result.unchanged)
            run.skipped += len(problems)
            run.errors += [{"customer": _key_text(p.key), "error": p.problem} for p in problems]
            run.errors += [{"warning": warning} for warning in parsed.page.warnings]
            if records:
                run.reached_created_at = max(run.reached_created_at or records[-1].created_at,
                                             records[-1].created_at)
            runs.save_page(run, parsed.page.next_position)
            events.send_write_events_on_commit(result, records, previous_balances, self.using)
        self.seen.update(result.pk_by_key.values())
        if problems:
            self.seen.update(self.writer.pks_for([p.key for p in problems if p.key]))
        if self.progress:
            if records and self.first_created_at is None:
                self.first_created_at = _epoch_ms(records[0])
            last = _epoch_ms(records[-1]) if records else None
            self.progress(SyncProgress(run, parsed.page, self.first_created_at, last))

    def _settle_deletions(self) -> None:
        run = self.run
        if not self.identified_everyone:
            run.errors.append({"warning": "Records without an id or email were skipped, so no "
                                          "customer was marked deleted by this run."})
            runs.finish_run(run)
            return
        with transaction.atomic(using=self.using):
            deleted = self.writer.mark_missing_deleted(
                self.seen, pass_started_at=run.started_at, crawled_after=self.crawled_after,
                now=timezone.now())
            run.deleted = len(deleted)
            runs.finish_run(run)
            transaction.on_commit(lambda: events.send_deleted_events(deleted, self.using),
                                  using=self.using)
        # Users whose signup task never ran (or that predate the app) get their link now.
        linked = link_users_to_customers(run.env)
        if linked:
            logger.info("Linked %d users to their Autumn customers.", linked)


def _parse_page(client: AutumnClient, customers: list) -> tuple[list[CustomerRecord], list[RecordError]]:
    """Parse a page; customers at the list's 15-product cap are re-read in full."""
    records: list[CustomerRecord] = []
    problems: list[RecordError] = []
    for data in customers:
        try:
            record = parse_customer(data)
            if record.may_be_truncated and record.autumn_id:
                record = parse_customer(client.customers.get(record.autumn_id))
        except RecordError as exc:
            problems.append(exc)
        except NotFoundError:
            continue  # deleted since the page was read; the deletion pass will see it
        else:
            records.append(record)
    return records, problems


def _epoch_ms(record: CustomerRecord) -> int:
    return int(record.created_at.timestamp() * 1000)


def _key_text(key: tuple[str, str] | None) -> str | None:
    return f"{key[0]}:{key[1]}" if key else None


def _failure_text(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "Interrupted; the next run resumes from the last saved page."
    return f"{type(exc).__name__}: {exc}"
