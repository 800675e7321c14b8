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

import logging
import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

from ..client import AutumnClient, ListPage, ListPosition
from ..exceptions import AutumnError, NotFoundError
from .fingerprints import Fingerprints, key_fingerprint, state_fingerprint
from .records import (
    LIST_PRODUCT_CAP,
    TIME_STYLES,
    CustomerRecord,
    RecordError,
    adapt_times,
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


# Customers at the list's product cap are re-read with customers.get; these requests wait
# on the network, so a few threads overlap them (0.5% of customers: ~500 per 100,000).
CAPPED_FETCH_THREADS = 4


class PagePreparer:
    """Pages of parsed, classified customers. ``known`` gives the mirror's state
    fingerprints; it is called once, before the first page is classified. ``time_style``
    (a key of ``TIME_STYLES``) puts times in the database's parameter form here."""

    def __init__(self, client: AutumnClient, known: Callable[[], Fingerprints],
                 time_style: str | None = None) -> None:
        self.client = client
        self._load_known = known
        self._known: Fingerprints | None = None
        self._adapt_time = TIME_STYLES[time_style] if time_style else None

    def pages(self, position: ListPosition, limit: int) -> Iterator[PreparedPage]:
        for page in self.client.customers.iter_pages(limit=limit, position=position):
            yield self.prepare(page)

    def prepare(self, page: ListPage) -> PreparedPage:
        if self._known is None:
            self._known = self._load_known()
        prepared = PreparedPage(page=page, records=[], problems=[])
        full = self._fetch_capped(page.customers)
        for data in page.customers:
            key = record_key(data)
            try:
                if key is not None and key in full:
                    data = full[key]
                    if isinstance(data, Exception):
                        raise data
                record = parse_customer(data) if key is None else self._parse_if_changed(key, data)
            except RecordError as exc:
                prepared.problems.append(exc)
            except NotFoundError:
                continue  # deleted since the page was read; the deletion pass will see it
            else:
                if record is None:
                    prepared.unchanged += 1
                else:
                    if self._adapt_time is not None:
                        adapt_times(record, self._adapt_time)
                    prepared.records.append(record)
            if key is not None:
                prepared.seen.append(key_fingerprint(key))
            created_at = data.get("created_at") if isinstance(data, dict) else None
            if isinstance(created_at, int) and not isinstance(created_at, bool):
                prepared.reached_created_at = max(created_at, prepared.reached_created_at or created_at)
        page.customers = []
        return prepared

    def _fetch_capped(self, customers: list) -> dict[tuple[str, str], Any]:
        """The full ``customers.get`` answer (or its NotFoundError) of each customer at the
        list's product cap: only that answer has all its subscriptions and purchases."""
        ids = [c["id"] for c in customers
               if isinstance(c, dict) and isinstance(c.get("id"), str) and _at_product_cap(c)]
        if not ids:
            return {}

        def fetch(customer_id: str) -> Any:
            try:
                return self.client.customers.get(customer_id)
            except NotFoundError as exc:
                return exc

        with ThreadPoolExecutor(max_workers=CAPPED_FETCH_THREADS) as pool:
            answers = pool.map(fetch, ids)
            return {("id", customer_id): answer for customer_id, answer in zip(ids, answers, strict=True)}

    def _parse_if_changed(self, key: tuple[str, str], data: dict) -> CustomerRecord | None:
        """None when the mirror holds exactly this."""
        canonical = canonical_json(data)
        if state_fingerprint(canonical[1]) in self._known:
            return None
        return parse_customer(data, canonical)


def _at_product_cap(data: dict) -> bool:
    subscriptions, purchases = data.get("subscriptions"), data.get("purchases")
    count = (len(subscriptions) if isinstance(subscriptions, list) else 0) + (
        len(purchases) if isinstance(purchases, list) else 0)
    return count >= LIST_PRODUCT_CAP


# -- the child process ----------------------------------------------------------------------


def prepared_pages(client: AutumnClient, position: ListPosition, limit: int,
                   known: Callable[[], Fingerprints], *, time_style: str | None = None,
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
                                   "time_style": time_style})
        # Computed while the child already fetches its first page.
        _write_frame(child.stdin, known().to_bytes())
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
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    config = _read_frame(source)
    try:
        with AutumnClient(**config["client"]) as client:
            preparer = PagePreparer(client, lambda: Fingerprints(frozen=_read_frame(source)),
                                    time_style=config["time_style"])
            for prepared in preparer.pages(config["position"], config["limit"]):
                _write_frame(sink, ("page", prepared))
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
