"""Fetch, decode, hash and parse pages in a child process, overlapped with the writes.

Decoding, hashing and row building all hold the GIL, so threads would not overlap them
with the database writes; a child process does (design.md, "Performance notes": 3.7x
fetch-only instead of 6.7x on SQLite). The parent sends the child compact fingerprints of
what the mirror holds, so the child does not even parse a customer that did not change:
a no-change re-sync costs little more than fetching.

The child needs no Django setup and no database: it gets the client's arguments (the key
through its stdin, never its command line) and sends back pickled ``PreparedPage`` frames.
``PagePreparer`` is the same work for the in-process path.
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, Generic, TypeVar

from ..client import AutumnClient, ListPage, ListPosition, PageOutline
from ..exceptions import AutumnError, NotFoundError
from .fingerprints import Fingerprints, key_fingerprint, state_fingerprint
from .pagememo import PageMemo
from .records import (
    LIST_PRODUCT_CAP,
    CustomerRecord,
    RecordError,
    as_copy_text,
    canonical_json,
    parse_customer,
    record_key,
)

logger = logging.getLogger(__name__)


@dataclass
class PreparedPage:
    page: ListPage  # its customers list emptied: what matters was parsed below
    records: list[CustomerRecord]  # new or changed customers, fully parsed
    problems: list[RecordError]  # customers that did not parse
    unchanged: int = 0  # customers whose stored JSON is the same; not parsed
    seen: list[int] = field(default_factory=list)  # key fingerprints of every identified customer
    reached_created_at: int | None = None  # epoch ms of the page's last customer, changed or not
    memo: bytes | None = None  # a new PageMemo of the page, to store under page.digest
    memo_reused: bool = False  # the stored PageMemo of page.digest was still right


# Customers at the list's product cap are re-read with customers.get; these requests wait
# on the network, so a few threads overlap them (0.5% of customers: ~500 per 100,000).
CAPPED_FETCH_THREADS = 4

# Set to a file path, the prefetch process writes its cProfile statistics there.
PROFILE_ENV = "AUTUMN_DJANGO_PREFETCH_PROFILE"

T = TypeVar("T")
MirrorState = Callable[[], Fingerprints]
StoredMemos = Callable[[], dict[bytes, bytes]]


class PagePreparer:
    """Pages of parsed, classified customers. ``known`` gives the mirror's state
    fingerprints and ``memos`` the stored ``PageMemo`` bytes by page digest; each is called
    once, before the first page is classified. ``time_style`` (a key of ``TIME_FORMS``)
    parses times straight into the database's parameter form; ``child_text`` formats child
    rows as PostgreSQL COPY text."""

    def __init__(self, client: AutumnClient, known: MirrorState, memos: StoredMemos | None = None,
                 time_style: str | None = None, child_text: bool = False) -> None:
        self.client = client
        self._load_known, self._load_memos = known, memos or dict
        self._known: Fingerprints | None = None
        self._memos: dict[bytes, bytes] = {}
        self._loaded = threading.Event()
        self._held: dict[bytes, PageMemo | None] = {}  # judged for the crawl, not yet prepared
        self._readers: ThreadPoolExecutor | None = None
        self.time_style, self.child_text = time_style, child_text

    def pages(self, position: ListPosition, limit: int) -> Iterator[PreparedPage]:
        crawl = self.client.customers.iter_pages(limit=limit, position=position, recall=self._recall)
        pages = _OneAhead(crawl)  # the first page is on its way while the mirror's state loads
        try:
            self._load()
            for page in pages:
                yield self.prepare(page)
        finally:
            pages.stop()
            if self._readers is not None:
                self._readers.shutdown(cancel_futures=True)
                self._readers = None

    def prepare(self, page: ListPage) -> PreparedPage:
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
        else:
            rows = page.customers
            capped_ids = [data["id"] for data in rows if _needs_get(data)]
            reached = _reached_created_at(rows)
            if page.digest and page.outline:
                new_memo = PageMemo(page.outline, reached_created_at=reached, capped_ids=capped_ids)
        if self._classify(rows, capped_ids, prepared, new_memo) and new_memo is not None:
            prepared.memo = new_memo.to_bytes()
        prepared.reached_created_at = reached
        page.customers = []
        return prepared

    def _load(self) -> None:
        """Load the mirror's state, on the thread that called ``pages`` or ``prepare``: the
        loaders may use the database connection (or, in the prefetch process, a pipe)."""
        if self._loaded.is_set():
            return
        try:
            self._known = self._load_known()
            self._memos = self._load_memos()
        finally:
            self._loaded.set()  # a failure is raised here; the crawl's thread must not wait on

    def _recall(self, digest: bytes) -> PageOutline | None:
        """For the crawl (on its thread): the outline of a page whose bytes the mirror
        still holds. What it judged is kept for ``prepare``, so each page is judged once."""
        self._loaded.wait()
        stored = self._held[digest] = self._held_memo(digest)
        return stored.outline if stored is not None else None

    def _held_memo(self, digest: bytes) -> PageMemo | None:
        """The stored memo of these bytes, if the mirror still holds every state in it."""
        if digest in self._held:
            return self._held.pop(digest)
        if self._known is None:  # loading failed
            return None
        data = self._memos.get(digest)
        stored = PageMemo.from_bytes(data) if data is not None else None
        return stored if stored is not None and stored.held_by(self._known) else None

    def _classify(self, rows: list, capped_ids: list[str], prepared: PreparedPage,
                  memo: PageMemo | None) -> bool:
        """Parse the new and changed customers of ``rows`` (list rows) and of ``capped_ids``
        (read in full) into ``prepared``, counting the others as unchanged, and note each
        uncapped one's fingerprints in ``memo``. False when a customer did not parse: such
        a page is never skipped, so it is reported every run."""
        reading = self._read_in_full(capped_ids)
        # A capped customer's full answer stands in for its list row (a page that was not
        # decoded has only those). The others come first: the answers arrive meanwhile.
        entries: list[tuple[Any, Any]] = [
            (key, data) for data in rows if (key := record_key(data)) is None or key not in reading]
        entries += reading.items()
        parsed_all = True
        for key, data in entries:
            capped = isinstance(data, Future)
            state = None
            try:
                if capped:
                    data = data.result()
                    if isinstance(data, NotFoundError):
                        raise data
                if key is None:
                    record = parse_customer(data, time_style=self.time_style)
                else:
                    state, record = self._parse_if_changed(data)
            except RecordError as exc:
                prepared.problems.append(exc)
                parsed_all = False
            except NotFoundError:
                continue  # deleted since the page was read; the deletion pass will see it
            else:
                if record is None:
                    prepared.unchanged += 1
                else:
                    if self.child_text:
                        as_copy_text(record)
                    prepared.records.append(record)
            if key is not None:
                key_print = key_fingerprint(key)
                prepared.seen.append(key_print)
                if memo is not None and state is not None and not capped:
                    memo.add(key_print, state)
        return parsed_all

    def _read_in_full(self, ids: list[str]) -> dict[tuple[str, str], Future]:
        """Start reading each customer at the list's product cap with ``customers.get``
        (only that answer has all its subscriptions and purchases); each future gives the
        answer, or the NotFoundError of a customer deleted since the page was read."""
        if not ids:
            return {}
        if self._readers is None:
            self._readers = ThreadPoolExecutor(max_workers=CAPPED_FETCH_THREADS,
                                               thread_name_prefix="autumn-capped")
        return {("id", customer_id): self._readers.submit(self._read_one, customer_id) for customer_id in ids}

    def _read_one(self, customer_id: str) -> Any:
        try:
            return self.client.customers.get(customer_id)
        except NotFoundError as exc:
            return exc

    def _parse_if_changed(self, data: dict) -> tuple[int, CustomerRecord | None]:
        """The customer's state fingerprint, and its record unless the mirror holds exactly this."""
        canonical = canonical_json(data)
        state = state_fingerprint(canonical[1])
        if state in self._known:
            return state, None
        return state, parse_customer(data, canonical, time_style=self.time_style)


class _OneAhead(Generic[T]):
    """``items``, each one produced on a thread while the caller works on the one before;
    the thread starts on the first item at once. Call ``stop`` when done with it.

    The crawl fetches and decodes page N+1 while page N is parsed, so the server's time
    and the network's overlap with this process's work. One ahead and no more: a decoded
    page is some 15 MB of objects, and memory must not grow with the crawl.
    """

    def __init__(self, items: Iterator[T]) -> None:
        self._items = items
        self._ready: queue.SimpleQueue = queue.SimpleQueue()
        self._wanted = threading.Semaphore(1)
        self._stopping = threading.Event()
        threading.Thread(target=self._produce, name="autumn-crawl", daemon=True).start()

    def __iter__(self) -> Iterator[T]:
        while True:
            done, item, error = self._ready.get()
            if error is not None:
                raise error
            if done:
                return
            self._wanted.release()
            yield item

    def stop(self) -> None:
        """The thread ends after the request it may be making, and closes ``items``."""
        self._stopping.set()
        self._wanted.release()

    def _produce(self) -> None:
        try:
            while self._wanted.acquire() and not self._stopping.is_set():
                try:
                    item = next(self._items)
                except StopIteration:
                    self._ready.put((True, None, None))
                    return
                self._ready.put((False, item, None))
        except BaseException as exc:  # raised again in the caller's thread
            self._ready.put((True, None, exc))
        finally:
            if self._stopping.is_set():
                self._items.close()


def _reached_created_at(customers: list) -> int | None:
    """The latest ``created_at`` (epoch ms) on the page, changed or not."""
    reached = None
    for data in customers:
        created_at = data.get("created_at") if isinstance(data, dict) else None
        if isinstance(created_at, int) and not isinstance(created_at, bool):
            reached = created_at if reached is None else max(reached, created_at)
    return reached


def _needs_get(data: Any) -> bool:
    """Whether only ``customers.get`` shows all of this list row's products."""
    return isinstance(data, dict) and isinstance(data.get("id"), str) and _at_product_cap(data)


def _at_product_cap(data: dict) -> bool:
    subscriptions, purchases = data.get("subscriptions"), data.get("purchases")
    count = (len(subscriptions) if isinstance(subscriptions, list) else 0) + (
        len(purchases) if isinstance(purchases, list) else 0)
    return count >= LIST_PRODUCT_CAP


# -- the child process ----------------------------------------------------------------------


def prepared_pages(client: AutumnClient, position: ListPosition, limit: int,
                   known: MirrorState, memos: StoredMemos, *, time_style: str | None = None,
                   child_text: bool = False,
                   ) -> Iterator[PreparedPage]:
    """``PagePreparer.pages`` run in a child process. Errors raised there (an
    ``AutumnError`` such as an invalid cursor) are raised here."""
    env = dict(os.environ)
    # The parent may import this package from a path only its sys.path knows (manage.py
    # adds the project root); the child must find the same code.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    child = subprocess.Popen(
        [sys.executable, "-m", "autumn_django.sync.prefetch"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
    )
    try:
        _write_frame(child.stdin, {"client": client.arguments(), "position": position, "limit": limit,
                                   "time_style": time_style, "child_text": child_text})
        # Computed while the child already fetches its first page.
        _write_frame(child.stdin, known().to_bytes())
        _write_frame(child.stdin, memos())
        child.stdin.close()
        while True:
            kind, payload = _read_frame(child.stdout)
            if kind == "page":
                yield payload
            elif kind == "error":
                raise payload
            else:
                return
    except EOFError:
        code = child.wait()
        raise AutumnError(f"The sync's prefetch process stopped unexpectedly (exit code {code}).") from None
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()


def _write_frame(stream: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack(">Q", len(data)))
    stream.write(data)
    stream.flush()


def _read_frame(stream: IO[bytes]) -> Any:
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError
    size = struct.unpack(">Q", header)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)  # noqa: S301  (our own child, over a private pipe)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="autumn_django prefetch: %(message)s")
    profile_to = os.environ.get(PROFILE_ENV)
    if profile_to:  # the benchmark's --profile: cProfile in the parent cannot see this process
        import cProfile

        cProfile.runctx("_serve()", globals(), {"_serve": _serve}, profile_to)
    else:
        _serve()


def _serve() -> None:
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    config = _read_frame(source)
    try:
        with AutumnClient(**config["client"]) as client:
            preparer = PagePreparer(client, lambda: Fingerprints(frozen=_read_frame(source)),
                                    lambda: _read_frame(source), time_style=config["time_style"],
                                    child_text=config["child_text"])
            # Automatic collections while orjson builds a page's ~40,000 containers cost
            # ~7% of this process's time (measured over 20,000 customers). It holds one
            # page at a time: with its start-up objects frozen, one collection per page
            # walks little, and still frees any cycle (a bad record's traceback).
            gc.freeze()
            gc.disable()
            for prepared in preparer.pages(config["position"], config["limit"]):
                _write_frame(sink, ("page", prepared))
                del prepared  # sent: a collection need not walk its records
                gc.collect()
        _write_frame(sink, ("end", None))
    except AutumnError as exc:
        _write_frame(sink, ("error", exc))
    except BrokenPipeError:
        pass  # the parent stopped reading: it failed or was interrupted, and says why


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: pickled pages must name
    # their classes as autumn_django.sync.prefetch for the parent to load them.
    from autumn_django.sync.prefetch import main as module_main

    module_main()
