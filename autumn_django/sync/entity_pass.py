"""The full sync's second part: every entity of the key's env, through ``entities.list``.

``entities.list`` pages newest first and has no ``sort_order``, so an entity created while
the crawl runs sorts ahead of the cursor and is not seen: the next run catches it (or a
refresh of its customer, which webhooks and staff trigger, does sooner). It shares
Autumn's rate budget with ``customers.list``; the client waits out a 429.

As for customers: one transaction per page with the run's resume point (``entity_cursor``);
unchanged entities are not rewritten; deletions are settled only after a complete pass,
and only among entities this attempt could have seen. A refresh of one customer reads its
entities through ``entities.list`` filtered by customer (which reads Autumn's primary).

Speed: pages after the first are read (decoded, keyed, hashed, rows built) in the
prefetch child, as the customers' are, while the writer stores the page before
(``pages.entityreader``). The first page, and every page when
``AUTUMN_SYNC_PREFETCH_PROCESS`` is off, is read in this process, the next page fetched
on a thread meanwhile. An entity the mirror holds as it is costs a hash and a lookup, not
its ~10 child rows; rows go through SQL (``entity_sql``, ``bulk``). A page whose bytes
equal those of a page a pass read before, while the mirror still holds every entity on it
as it was, is not even decoded (``pages.entitypages``: its memo names its entities and
where the crawl goes next). So deletions are judged by key fingerprint: a remembered
page's entities are seen without being looked up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone

from ..client import AutumnClient
from ..conf import autumn_settings
from ..entity_listing import EntityCrawl
from ..exceptions import InvalidCursorError
from ..models import Entity, SyncRun
from . import memos, runs
from .entities import EntityRecord, EntityWriter, EntityWriteResult
from .pages import prefetch
from .pages.entitypages import entity_key_fingerprint
from .pages.entityreader import ReadEntityPage, read_entities, read_entity_pages, read_next_entity_page
from .pages.entityrecords import entity_key_text
from .pages.fingerprints import Fingerprints
from .pages.records import RecordError
from .pages.timeforms import EPOCH

logger = logging.getLogger(__name__)

EntityProgress = Callable[[SyncRun], None]
# Called first in each of the pass's transactions; raises (``runs.LeaseLost``) when the
# caller no longer holds the pass (the workflow's claim on its last stage).
EntityGuard = Callable[[], None]


class EntityPass:
    """One attempt at a run's entities phase: from the saved cursor to the end."""

    def __init__(self, client: AutumnClient, run: SyncRun, using: str = DEFAULT_DB_ALIAS,
                 progress: EntityProgress | None = None, guard: EntityGuard | None = None) -> None:
        self.client, self.run, self.using, self.progress = client, run, using, progress
        self.guard = guard or (lambda: None)
        self.writer = EntityWriter(client.env, using)
        # Key fingerprints (``entity_key_fingerprint``) of every entity this attempt saw,
        # 8 bytes each: a remembered page's entities are seen without being looked up.
        self.seen = Fingerprints()
        # A resumed attempt sees only entities older than where the last one stopped.
        self.crawled_before = run.entities_reached_created_at if run.entity_cursor else None
        self.identified_everyone = True
        self.complete = True
        self.started_at = timezone.now()
        self.client_lock = threading.Lock()

    def execute(self) -> None:
        cursor = self.run.entity_cursor
        while True:
            try:
                self._crawl(cursor)
                break
            except InvalidCursorError:
                if not cursor:
                    raise
                logger.warning("Autumn rejected run #%s's saved entities cursor; restarting its pass.",
                               self.run.pk)
                self.run.errors.append({"warning": "The saved entities cursor was rejected; "
                                                   "the entities pass restarted."})
                cursor, self.crawled_before, self.seen = "", None, Fingerprints()
        with transaction.atomic(using=self.using):
            self.guard()
            self._settle_deletions()
            if self.complete:
                memos.prune_entity_memos(self.run.env, self.run.started_at, self.using)

    def _crawl(self, cursor: str) -> None:
        # What the mirror holds when the pass begins, and the memos of the pages it read
        # before: a page recalled by one is neither decoded nor read (``pages.entitypages``).
        def stored_memos() -> dict[bytes, bytes]:
            return memos.stored_entity_memos(self.client.env, self.using)

        crawl = EntityCrawl(self.run.page_size or autumn_settings.SYNC_PAGE_SIZE, cursor)
        known, stored = self.writer.state_fingerprints(), stored_memos()
        if autumn_settings.SYNC_PREFETCH_PROCESS:
            pages = self._first_page_here_then_child(crawl, known, stored)
        else:
            pages = read_entity_pages(self.client, crawl, known, stored, self.writer.form,
                                      lock=self.client_lock)
        try:
            for page in pages:
                self._write_page(page)
        finally:
            pages.close()

    def _first_page_here_then_child(self, crawl: EntityCrawl, known: Fingerprints,
                                    stored: dict[bytes, bytes]) -> Generator[ReadEntityPage, None, None]:
        """The first page read in this process and, if the crawl goes on, the others in the
        prefetch child. Reading entities (decoding, hashing, building rows) is most of a
        large first pass's work and holds the GIL: in the child it overlaps with the
        writes. But most orgs' entities fit one page, and the child's start-up (~0.4 s, an
        interpreter and imports) would then be most of the pass."""
        first = read_next_entity_page(self.client, crawl, known, stored, self.writer.form)
        if first is not None:
            yield first
        if not crawl.done:
            # The pass's first view of the mirror, as if one process read every page.
            rest = prefetch.read_entity_pages(self.client, crawl, lambda: known, lambda: stored,
                                              form=self.writer.form)
            try:
                yield from rest
            finally:
                rest.close()

    def _write_page(self, read: ReadEntityPage) -> None:
        page = read.page
        if page.memo is not None:
            records, orphaned = [], []
        else:
            records, orphaned = self._with_customers(read.records)
        run = self.run
        now = timezone.now()
        with transaction.atomic(using=self.using):
            self.guard()
            if page.memo is not None:  # the same bytes as a page the mirror holds
                result, oldest = EntityWriteResult(), page.memo.oldest
                run.entities_unchanged += len(page.memo)
            else:
                result = self.writer.write(records, now=now)
                # With the entities whose bytes the mirror holds as they are: not decoded.
                oldest = min([record.created_ms for record in records]
                             + [entity.created_ms for entity in page.known], default=None)
                run.entities_unchanged += len(page.known)
            problems = read.problems + result.problems
            orphaned += result.orphans
            self.identified_everyone &= all(problem.key is not None or not problem.may_be_mirrored
                                            for problem in problems)
            self.complete &= page.complete
            run.entity_pages += 1
            run.entities_created += len(result.created)
            run.entities_updated += len(result.updated)
            run.entities_unchanged += len(result.unchanged) + len(result.kept)
            run.entities_skipped += len(problems) + len(orphaned)
            run.errors += [{"entity": entity_key_text(p.key), "error": p.problem} for p in problems]
            run.errors += [{"entity": record.describe(), "error": "Autumn no longer has its customer"}
                           for record in orphaned]
            run.errors += [{"warning": warning} for warning in page.warnings]
            if oldest is not None:
                reached = EPOCH + timedelta(milliseconds=oldest)
                run.entities_reached_created_at = min(run.entities_reached_created_at or reached, reached)
            if page.digest is not None:
                # A new memo only where the mirror now holds every entity of the page as
                # the page shows it (none kept for data read later, none left out).
                remembered = read.memo is not None and not (problems or orphaned or result.kept)
                if page.memo is not None or remembered:
                    memos.save_entity_memo(run.env, page.digest, read.memo.to_bytes() if remembered else None,
                                           now, self.using)
            runs.save_entity_page(run, page.next_cursor or "")
        self.seen.add_many(page.memo.keys if page.memo is not None else read.seen)
        if self.progress:
            self.progress(run)

    def _with_customers(self, records: list[EntityRecord]) -> tuple[list[EntityRecord], list[EntityRecord]]:
        """The page's records whose customer is in the mirror, and those whose customer
        Autumn no longer has. A customer created after the customers were crawled is read
        through ``customers.get`` first (outside the page's transaction: it calls Autumn)."""
        wanted = {record.customer_id for record in records}
        missing = wanted - set(self.writer.customer_pks(wanted))
        if not missing:
            return records, []
        found = self._fetch_customers(missing)
        kept = [record for record in records if record.customer_id not in missing - found]
        return kept, [record for record in records if record.customer_id in missing - found]

    def _fetch_customers(self, customer_ids: set[str]) -> set[str]:
        from .single import sync_customer  # single imports this module

        found = set()
        # The fetching thread uses the same client (and HTTP session): not both at once.
        with self.client_lock:
            for customer_id in sorted(customer_ids):
                if sync_customer(customer_id, client=self.client, using=self.using, entities=False):
                    found.add(customer_id)
        return found

    def _settle_deletions(self) -> None:
        run = self.run
        if not self.complete:
            run.errors.append({"warning": "The entities crawl could not reach the end of the list, "
                                          "so no entity was marked deleted by this run."})
            return
        if not self.identified_everyone:
            run.errors.append({"warning": "Entity records that might stand for a mirrored entity "
                                          "were skipped, so no entity was marked deleted by this run."})
            return
        missing = Entity.objects.using(self.using).filter(
            env=run.env, deleted_at__isnull=True, synced_at__lt=run.started_at)
        if self.crawled_before is not None:
            # Strictly older: entities at the boundary instant were partly seen by the
            # attempt before this one, whose ``seen`` is gone.
            missing = missing.filter(created_at__lt=self.crawled_before)
        # Judged by key, as the pages named them (a remembered page was not looked up).
        # Times only of id-less rows: converting every row's took most of the time.
        with_id = missing.filter(autumn_id__isnull=False).values_list(
            "pk", "customer__autumn_id", "autumn_id")
        gone = [pk for pk, customer_id, autumn_id in with_id.iterator(chunk_size=5000)
                if entity_key_fingerprint(customer_id, autumn_id, None, None) not in self.seen]
        idless = missing.filter(autumn_id__isnull=True).values_list(
            "pk", "customer__autumn_id", "created_at", "name")
        gone += [pk for pk, customer_id, created_at, name in idless.iterator(chunk_size=5000)
                 if entity_key_fingerprint(customer_id, None, _aware(created_at), name) not in self.seen]
        run.entities_deleted += self.writer.mark_deleted(gone, now=timezone.now())


def _aware(value: datetime | None) -> datetime | None:
    # Without USE_TZ the database gives naive times in the project's time zone.
    if value is not None and not settings.USE_TZ and timezone.is_naive(value):
        return timezone.make_aware(value)
    return value


def sync_customer_entities(client: AutumnClient, customer_id: str, *, using: str = DEFAULT_DB_ALIAS
                           ) -> EntityWriteResult:
    """Refresh every entity of one customer (``entities.list`` filtered by customer); the
    customer's mirrored entities Autumn no longer lists, and that no later read wrote,
    are marked deleted. The customer must be in the mirror."""
    writer = EntityWriter(client.env, using)
    asked_at = timezone.now()
    records: list[EntityRecord] = []
    skipped: list[RecordError] = []
    complete = True
    for page in client.entities.iter_pages(customer_id=customer_id):
        complete &= page.complete
        page_records, problems = read_entities(page.entities, page.requested_at)
        records += page_records
        skipped += problems
    for problem in skipped:
        logger.warning("Skipped %s: %s", entity_key_text(problem.key), problem.problem)
        complete &= problem.key is not None or not problem.may_be_mirrored
    with transaction.atomic(using=using):
        result = writer.write(records, now=timezone.now())
        for problem in result.problems:
            logger.warning("Skipped %s: %s", entity_key_text(problem.key), problem.problem)
        skipped += result.problems
        if complete:
            pks = writer.customer_pks([customer_id])
            if customer_id in pks:
                missing = set(Entity.objects.using(using).filter(
                    customer_id=pks[customer_id], deleted_at__isnull=True,
                    read_at__lt=asked_at,
                ).values_list("pk", flat=True)) - set(result.seen) - set(
                    writer.pks_of(problem.key for problem in skipped))
                writer.mark_deleted(missing, now=timezone.now())
    return result


def mark_customer_entities_deleted(env: str, customer_pks: list[int], *, using: str = DEFAULT_DB_ALIAS,
                                   now: datetime | None = None) -> int:
    """A customer Autumn no longer has has no entities either."""
    present = Entity.objects.using(using).filter(env=env, customer_id__in=customer_pks)
    return present.filter(deleted_at__isnull=True).update(deleted_at=now or timezone.now())

