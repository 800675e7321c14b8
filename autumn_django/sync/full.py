"""The full sync: every customer of the key's env, page by page, into the mirror."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

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
        _crawl(client, run, MirrorWriter(client.env, using), progress, using)
    except BaseException as exc:  # Ctrl-C too: release the lock now, not after the timeout
        if not isinstance(exc, runs.LeaseLost):
            runs.finish_run(run, failure=_failure_text(exc))
        raise
    return run


def _crawl(client: AutumnClient, run: SyncRun, writer: MirrorWriter,
           progress: ProgressCallback | None, using: str) -> None:
    position = ListPosition(run.cursor, run.created_at_start)
    first_created_at = last_created_at = None
    identified_everyone = True
    while True:
        try:
            for page in client.customers.iter_pages(limit=run.page_size, position=position):
                run.page_size = page.limit  # Autumn may have lowered it to the org's maximum
                records, problems = _parse_page(client, page.customers)
                identified_everyone &= all(problem.key for problem in problems)
                previous_balances, before_replace = events.balance_recorder(using)
                with transaction.atomic(using=using):
                    result = writer.write(records, run_id=run.pk, now=timezone.now(),
                                          before_replace=before_replace)
                    writer.stamp_seen([p.key for p in problems if p.key], run.pk)
                    run.pages += 1
                    run.created += len(result.created)
                    run.updated += len(result.updated)
                    run.undeleted += len(result.undeleted)
                    run.unchanged += len(result.unchanged)
                    run.skipped += len(problems)
                    run.errors += [{"customer": _key_text(p.key), "error": p.problem}
                                   for p in problems] + [{"warning": w} for w in page.warnings]
                    runs.save_page(run, page.next_position)
                    events.send_write_events_on_commit(result, records, previous_balances, using)
                if records:
                    first_created_at = first_created_at or _epoch_ms(records[0])
                    last_created_at = _epoch_ms(records[-1])
                if progress:
                    progress(SyncProgress(run, page, first_created_at, last_created_at))
            break
        except InvalidCursorError:
            if position == ListPosition():
                raise
            # Autumn no longer understands the saved cursor: start the pass over. Nothing
            # is lost; already-mirrored customers come back unchanged.
            logger.warning("Autumn rejected run #%s's saved cursor; restarting its pass.", run.pk)
            run.errors.append({"warning": "The saved cursor was rejected; the pass restarted."})
            position = ListPosition()
    if identified_everyone:
        with transaction.atomic(using=using):
            deleted = writer.mark_missing_deleted(run.pk, run.started_at, timezone.now())
            run.deleted = len(deleted)
            runs.finish_run(run)
            transaction.on_commit(lambda: events.send_deleted_events(deleted, using), using=using)
        # Users whose signup task never ran (or that predate the app) get their link now.
        linked = link_users_to_customers(run.env)
        if linked:
            logger.info("Linked %d users to their Autumn customers.", linked)
    else:
        run.errors.append({"warning": "Records without an id or email were skipped, so no "
                                      "customer was marked deleted by this run."})
        runs.finish_run(run)


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
