"""Pages of parsed, classified customers: what the sync writes, prepared for it.

For each ``customers.list`` page: decode it (unless its bytes are known, see
``pagememo``), hash each customer's JSON, and parse only those whose state the mirror
does not hold; customers at the list's product cap are read in full (with the list's
catalogue fields, ``trust``). Every record carries when and through which call it was
read: the page's request time, or that of its ``customers.get``. The crawl runs one
page ahead on a thread. ``prefetch`` runs this in a child process, overlapped with the
writes; ``PagePreparer`` runs it anywhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from ...client import AutumnClient, CustomerRead
from ...exceptions import NotFoundError
from ...listing import ListCrawl, ListPosition, PageOutline, Window
from .ahead import PagesAhead
from .fingerprints import Fingerprints, key_fingerprint, state_fingerprint
from .pagememo import PageMemo, RawIndex, raw_fingerprint
from .rawpages import RawPage, Row, raw_pages
from .records import (
    DATETIME_ROWS,
    LIST_PRODUCT_CAP,
    CustomerRecord,
    RecordError,
    RowForm,
    canonical_json,
)
from .trust import Catalogue, list_catalogue, with_list_catalogue


@dataclass
class PreparedPage:
    page: RawPage  # its rows emptied: what matters was parsed below
    records: list[CustomerRecord]  # new or changed customers, fully parsed
    problems: list[RecordError]  # customers that did not parse
    unchanged: int = 0  # customers whose stored JSON is the same; not parsed
    seen: list[int] = field(default_factory=list)  # key fingerprints of every identified customer
    reached_created_at: int | None = None  # epoch ms of the page's last customer, changed or not
    memo: bytes | None = None  # a new PageMemo of the page, to store under page.digest
    memo_reused: bool = False  # the stored PageMemo of page.digest was still right
    reread: int = 0  # customers of the page read again with customers.get
    # (autumn_id, when asked) of customers read again that customers.get no longer has
    gone: list[tuple[str, datetime]] = field(default_factory=list)
    # In a partitioned crawl: the window the page is of, and every window's bounds when it
    # was read (``sync.windows``).
    window: int | None = None
    bounds: dict[int, tuple[int | None, int | None]] | None = None

    @property
    def read_at(self) -> datetime | None:
        """When the page's request was sent: what its list rows say was true then or later."""
        return self.page.requested_at


# Customers at the list's product cap or due to reset are re-read with customers.get
# (Autumn allows thousands a second); these requests wait on the network, so threads
# overlap them. A page waits for its re-reads before it takes a slot (14 a page in the
# benchmark's data): with 4 threads that was 4 rounds of customers.get after each list
# request. 8, with the window's own list request, stay within the 10 connections requests
# keeps per host (each window's client has its own session). With 8 and a stricter
# balance of a re-sync's windows (``partition._balanced``), 50,000 customers at 250 ms a
# request (SQLite): first sync 21.1 -> 19.4 s, no-change re-sync 10.3 -> 6.1 s.
CAPPED_FETCH_THREADS = 8

T = TypeVar("T")
MirrorState = Callable[[], Fingerprints]
StoredMemos = Callable[[], dict[bytes, bytes]]


class MirrorView:
    """What the mirror holds, as the preparers of one crawl judge pages by: its state
    fingerprints (``known``) and stored ``PageMemo`` bytes by page digest (``memos``). The
    loaders run once, on the thread that calls ``load`` (they may use the database
    connection, or in the prefetch process a pipe); preparers on other threads ``wait``."""

    def __init__(self, known: MirrorState, memos: StoredMemos | None = None) -> None:
        self._load_known, self._load_memos = known, memos or dict
        self.known: Fingerprints | None = None
        self.memos: dict[bytes, bytes] = {}
        self.raws = RawIndex(())
        self._loaded = threading.Event()
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._loaded.is_set():
                return
            try:
                self.known = self._load_known()
                self.memos = self._load_memos()
                self.raws = RawIndex(memo for data in self.memos.values()
                                     if (memo := PageMemo.from_bytes(data)) is not None)
            finally:
                self._loaded.set()  # a failure is raised here; the crawl's threads must not wait on

    def wait(self) -> None:
        self._loaded.wait()


class PagePreparer:
    """Pages of parsed, classified customers. ``known`` gives the mirror's state
    fingerprints and ``memos`` the stored ``PageMemo`` bytes by page digest; each is called
    once, before the first page is classified (or give a shared ``view``, which another
    thread loads). Records come in the writer's ``form`` (``records.RowForm``)."""

    def __init__(self, client: AutumnClient, known: MirrorState | None = None,
                 memos: StoredMemos | None = None, form: RowForm = DATETIME_ROWS, *,
                 view: MirrorView | None = None, slots: threading.Semaphore | None = None) -> None:
        self.client = client
        # Shared by the preparers of one crawl: a page is prepared only with a slot, which
        # its consumer frees, so prepared pages in memory stay few however many windows run.
        self.slots = slots
        self._owns_view = view is None
        self.view = view or MirrorView(known, memos)
        self._held: dict[bytes, PageMemo | None] = {}  # judged for the crawl, not yet prepared
        self._readers: ThreadPoolExecutor | None = None
        self.form = form

    @property
    def _known(self) -> Fingerprints | None:
        return self.view.known

    @property
    def _memos(self) -> dict[bytes, bytes]:
        return self.view.memos

    def pages(self, position: ListPosition, limit: int,
              window: Window | None = None) -> Iterator[PreparedPage]:
        """The prepared pages of the crawl from ``position``. With ``slots``, each page
        waits for a slot before its customers are decoded (the slot is freed by whoever
        takes the prepared page), and the crawl goes no page ahead: other windows' crawls
        overlap the network's time. Without, the next page is fetched and decoded on a
        thread while this one is prepared."""
        crawl = raw_pages(self.client, ListCrawl(limit, position, window), recall=self._recall)
        pages = PagesAhead(crawl) if self.slots is None else _Inline(crawl)
        try:
            if self._owns_view or self.slots is None:
                # A shared view is loaded by another thread: meanwhile an inline crawl's
                # first request is already out (it waits for the view only to recall).
                self._load()
            for page in pages:
                prepared = self.prepare(page)
                del page  # the crawl's next answer is awaited without this page
                yield prepared
                del prepared
        finally:
            pages.stop()
            if self._readers is not None:
                self._readers.shutdown(cancel_futures=True)
                self._readers = None

    def prepare(self, page: RawPage) -> PreparedPage:
        self._load()
        prepared = PreparedPage(page=page, records=[], problems=[])
        stored = self._held_memo(page.digest) if page.digest else None
        new_memo = None
        if stored is not None:
            # The same bytes as a page the mirror holds (the crawl did not even decode them
            # when it could go on without): only its capped customers need a look.
            prepared.unchanged, prepared.memo_reused = len(stored), True
            prepared.seen.extend(stored.keys)
            rows, capped_ids, reached = [], stored.capped_ids, stored.reached_created_at
            catalogues = stored.capped_catalogues
        else:
            rows = page.rows
            capped_ids = [row.autumn_id for row in rows if row.autumn_id is not None
                          and row.products >= LIST_PRODUCT_CAP]
            # A row due to reset shows last period's usage: only get applies the reset.
            due_ids, due_at = _due_to_reset(rows, _now_ms(), capped_ids)
            capped_ids += due_ids
            reread = set(capped_ids)  # the list's catalogue fields of each customer read again
            catalogues = {row.autumn_id: list_catalogue(row.data) for row in rows if row.autumn_id in reread}
            reached = page.reached
            # Not of an empty page: every window of a partitioned crawl may end on one, all
            # byte for byte the same, and two write lanes storing a memo under one digest
            # wait on each other (test_an_empty_page_gets_no_memo).
            if page.digest and page.outline and page.outline.count:
                new_memo = PageMemo(page.outline, reached_created_at=reached, capped_ids=capped_ids,
                                    capped_catalogues=catalogues, due_at=due_at)
        reading = self._read_in_full(capped_ids)
        if self.slots is not None:
            # The re-reads wait on the network without a slot: a page holds only its bytes
            # and row heads meanwhile. A page that held its slot through them left only
            # QUEUE_PAGES windows past their answer at once: a no-change re-sync of 100,000
            # customers at 250 ms a request fetched 4.7 pages a second over 8 windows.
            wait(reading.values())
            self.slots.acquire()
        if self._classify(rows, reading, prepared, new_memo, catalogues) and new_memo is not None:
            prepared.memo = new_memo.to_bytes()
        prepared.reached_created_at = reached
        page.rows = []
        return prepared

    def _load(self) -> None:
        """Load the mirror's state on the thread that called ``pages`` or ``prepare``, or,
        with a shared view, wait for the thread that loads it."""
        if self._owns_view:
            self.view.load()
        else:
            self.view.wait()

    def _recall(self, digest: bytes) -> PageOutline | None:
        """For the crawl (on its thread): the outline of a page whose bytes the mirror
        still holds. What it judged is kept for ``prepare``, so each page is judged once."""
        self.view.wait()
        stored = self._held[digest] = self._held_memo(digest)
        if stored is None:
            return None
        return PageOutline(stored.outline.next_cursor, stored.outline.count, stored.reached_created_at)

    def _held_memo(self, digest: bytes) -> PageMemo | None:
        """The stored memo of these bytes, if the mirror still holds every state in it."""
        if digest in self._held:
            return self._held.pop(digest)
        if self._known is None:  # loading failed
            return None
        data = self._memos.get(digest)
        stored = PageMemo.from_bytes(data) if data is not None else None
        if stored is not None and stored.due_at is not None and stored.due_at <= _now_ms():
            return None  # a reset on the page came due since: its rows need a look
        return stored if stored is not None and stored.held_by(self._known) else None

    def _classify(self, rows: list[Row], reading: dict[tuple[str, str], Future], prepared: PreparedPage,
                  memo: PageMemo | None, catalogues: dict[str, Catalogue]) -> bool:
        """Parse the new and changed customers of ``rows`` (list rows) and of ``reading``
        (read in full, with the list's ``catalogues`` by id) into ``prepared``, counting the
        others as unchanged, and note each uncapped one's fingerprints in ``memo``. False
        when a customer did not parse: such a page is never skipped, so it is reported
        every run."""
        prepared.reread += len(reading)
        # A capped customer's full answer stands in for its list row (a page that was not
        # decoded has only those). The others come first: the answers arrive meanwhile.
        entries: list[tuple[Any, Any]] = [(row.key, row) for row in rows
                                          if row.key is None or row.key not in reading]
        entries += reading.items()
        parsed_all = True
        for key, row in entries:
            capped = isinstance(row, Future)
            state, raw_print = None, 0
            read_at, read_via = prepared.read_at, "list"
            try:
                if capped:
                    answer = row.result()
                    if isinstance(answer, NotFoundError):
                        raise answer
                    # The list is trusted for catalogue fields: its row's stand in get's.
                    data = with_list_catalogue(answer.customer, catalogues.get(key[1], {}))
                    read_at, read_via = answer.read_at, "get"
                else:
                    data = row.data if key is None else None  # decoded below only if needed
                if key is None:
                    record = self.form.parse(data, read_at=read_at, read_via=read_via)
                else:
                    raw_print = 0 if capped or row.raw is None else raw_fingerprint(row.raw)
                    state = self.view.raws.state_of(raw_print) if raw_print else None
                    if state is not None and state in self._known:
                        record = None  # bytes a stored page showed, in a state the mirror holds
                    else:
                        data = row.take_data() if data is None else data
                        canonical = canonical_json(data)
                        state = state_fingerprint(canonical[1])
                        record = None if state in self._known else self.form.parse(
                            data, canonical, read_at=read_at, read_via=read_via)
            except RecordError as exc:
                prepared.problems.append(exc)
                parsed_all = False
            except NotFoundError:
                continue  # deleted since the page was read; the deletion pass will see it
            else:
                if record is None:
                    prepared.unchanged += 1
                else:
                    prepared.records.append(record)
            if key is not None:
                key_print = key_fingerprint(key)
                prepared.seen.append(key_print)
                if memo is not None and state is not None and not capped:
                    memo.add(key_print, state, raw_print)
        return parsed_all

    def _read_in_full(self, ids: list[str]) -> dict[tuple[str, str], Future]:
        """Start reading each customer at the list's product cap with ``customers.get``
        (only that answer has all its subscriptions and purchases); each future gives the
        ``CustomerRead``, or the NotFoundError of a customer deleted since the page was read."""
        if not ids:
            return {}
        if self._readers is None:
            self._readers = ThreadPoolExecutor(max_workers=CAPPED_FETCH_THREADS,
                                               thread_name_prefix="autumn-capped")
        return {("id", customer_id): self._readers.submit(self._read_one, customer_id) for customer_id in ids}

    def _read_one(self, customer_id: str) -> CustomerRead | NotFoundError:
        try:
            return self.client.customers.get_read(customer_id)
        except NotFoundError as exc:
            return exc


class _Inline(Generic[T]):
    """``items`` on the caller's thread, with ``PagesAhead``'s ``stop``."""

    def __init__(self, items: Iterator[T]) -> None:
        self._items = items

    def __iter__(self) -> Iterator[T]:
        return self._items

    def stop(self) -> None:
        self._items.close()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _due_to_reset(rows: list[Row], now_ms: int, skip: list[str]) -> tuple[list[str], int | None]:
    """The ids of the list rows with a balance (or a breakdown entry) due to reset by
    ``now_ms`` (no earlier than the page was fetched), but those in ``skip``; and the
    earliest reset time after ``now_ms`` on the page (None: none), when its memo expires.

    Autumn resets balances lazily: a list row still shows last period's usage until its
    queued reset lands, while ``customers.get`` applies every due reset before answering
    (autumn-api.md, "Balance resets"). Each row's earliest reset time (whole epoch ms, as
    Autumn sends them) is read with its head (``rawpages``): this only compares them."""
    due: list[str] = []
    after: int | None = None
    for row in rows:
        earliest = row.earliest_reset
        if earliest is None:
            continue
        if earliest > now_ms:
            after = earliest if after is None or earliest < after else after
        elif row.autumn_id is not None and row.autumn_id not in skip:
            due.append(row.autumn_id)  # an id-less customer cannot be read through get
    return due, after

