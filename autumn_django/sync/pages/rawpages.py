"""``customers.list`` pages as the sync reads them: bytes first, decoded only as far as
needed (no Django: the prefetch child runs this).

The client hands over each answer undecoded (``customers.page_response``). Here a page's
SHA-256 is looked up among the pages the mirror holds (``pagememo``): bytes read before
are not decoded at all. Other pages are decoded by msgspec into one ``msgspec.Raw`` slice
per customer, and each slice into a ``_Head`` of the few fields the crawl and the
preparer look at first (key, ``created_at``, product count, reset times). A customer whose
bytes a stored page showed, in a state the mirror holds, goes no further
(``pagememo.RawIndex``); only the others are decoded in full.

The mirror still hashes each customer's key-sorted JSON, not the bytes received: that hash
is how it knows a customer did not change whatever call read it, and ``customers.get``
answers, webhooks and refreshes (sometimes merged with the list's catalogue fields,
``trust``) are not the list row's bytes. Hashing the bytes alone made every such customer
look changed to the next list sync: tests in ``test_sync_read_order`` and ``test_sync``
caught it. The bytes' fingerprint is kept beside, in the page memos.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import requests

from ...client import AutumnClient, list_answer
from ...listing import Key, ListCrawl, ListPosition, PageOutline, crawl_key, created_at_ms
from .records import key_of, record_key

Recall = Callable[[bytes], PageOutline | None]


class _Reset(msgspec.Struct):
    resets_at: Any = None


class _Entry(msgspec.Struct):
    reset: _Reset | None = None


class _Balance(msgspec.Struct):
    next_reset_at: Any = None
    breakdown: list[_Entry] | None = None


class _Head(msgspec.Struct):
    """The fields of a list row the sync looks at before knowing whether it changed."""

    id: Any = None
    email: Any = None
    created_at: Any = None
    subscriptions: list[msgspec.Raw] | None = None
    purchases: list[msgspec.Raw] | None = None
    balances: dict[str, _Balance] | None = None


class ListEnvelope(msgspec.Struct):
    """A page of a list endpoint (``customers.list``, ``entities.list``): each item's bytes
    apart, none decoded."""

    items: list[msgspec.Raw] = msgspec.field(name="list")
    next_cursor: str | None = None


list_envelope = msgspec.json.Decoder(ListEnvelope)
_head = msgspec.json.Decoder(_Head)
_any = msgspec.json.Decoder()
_UNDECODED = object()


@dataclass(slots=True)
class Row:
    """One customer of a list page, with what the sync looks at before knowing whether it changed."""

    raw: Any  # its bytes as received (a msgspec.Raw); None when the page was read as dicts
    crawl_key: Key
    key: tuple[str, str] | None  # how the mirror names it (``records.record_key``); None: it cannot
    created_at: int | None
    products: int  # subscriptions and purchases shown (the list caps them: ``records.LIST_PRODUCT_CAP``)
    earliest_reset: int | None  # the first balance reset time on it (epoch ms)
    _data: Any = _UNDECODED

    @property
    def autumn_id(self) -> str | None:
        """Its id when that is a string: what ``customers.get`` can be asked for."""
        name, value = self.crawl_key
        return value if name == "id" and type(value) is str else None

    @property
    def data(self) -> Any:
        """The customer, decoded in full (once)."""
        if self._data is _UNDECODED:
            self._data = _any.decode(self.raw)
        return self._data

    def take_data(self) -> Any:
        """The customer decoded in full, not kept on the row when its bytes are (a page's
        customers decoded and kept until the page was done were ~9 MB of 1,000)."""
        data = self.data
        if self.raw is not None:
            self._data = _UNDECODED
        return data


def read_row(raw: Any, position: int) -> Row:
    """The row of a customer's bytes, the ``position``-th on its page. One that is not the
    expected shape is decoded whole and read as a dict, so the record parser names what is
    wrong with it."""
    try:
        head = _head.decode(raw)
    except msgspec.DecodeError:
        return row_of(_any.decode(raw), position, raw)
    earliest = None
    for balance in (head.balances or {}).values():
        earliest = _earlier(earliest, balance.next_reset_at)
        for entry in balance.breakdown or ():
            if entry.reset is not None:
                earliest = _earlier(earliest, entry.reset.resets_at)
    created_at = head.created_at if type(head.created_at) is int else None
    products = len(head.subscriptions or ()) + len(head.purchases or ())
    return Row(raw, crawl_key(head, position), key_of(head.id, head.email), created_at, products, earliest)


def row_of(data: Any, position: int, raw: Any = None) -> Row:
    """The row of a decoded customer, the ``position``-th on its page (``raw``: its bytes)."""
    earliest = None
    if type(data) is dict:
        for balance in (data.get("balances") if type(data.get("balances")) is dict else {}).values():
            if type(balance) is not dict:
                continue
            earliest = _earlier(earliest, balance.get("next_reset_at"))
            for entry in balance.get("breakdown") or ():
                reset = entry.get("reset") if type(entry) is dict else None
                earliest = _earlier(earliest, reset.get("resets_at") if type(reset) is dict else None)
        products = sum(len(data[name]) for name in ("subscriptions", "purchases")
                       if type(data.get(name)) is list)
    else:
        products = 0
    return Row(raw, crawl_key(data, position), record_key(data), created_at_ms(data), products, earliest,
               data)


def _earlier(earliest: int | None, at: Any) -> int | None:
    if type(at) is int and (earliest is None or at < earliest):
        return at
    return earliest


@dataclass
class RawPage:
    """A page of the sync's crawl: its rows, or none when it was ``recalled`` (the same
    bytes as a page the mirror holds, not decoded: ``outline`` is the stored one)."""

    rows: list[Row]
    position: ListPosition
    next_position: ListPosition | None  # None: this was the last page
    limit: int
    warnings: list[str] = field(default_factory=list)
    # SHA-256 of the answer's bytes when the crawl remembers pages: equal bytes, equal
    # customers. None off the cursor (past the null-cursor defect) or when rows were dropped.
    digest: bytes | None = None
    outline: PageOutline | None = None
    recalled: bool = False
    reached: int | None = None  # the latest created_at on the page (epoch ms), when known
    requested_at: datetime | None = None  # when its request was sent (UTC)


def raw_pages(client: AutumnClient, crawl: ListCrawl, recall: Recall | None = None) -> Iterator[RawPage]:
    """Every page of ``crawl``. With ``recall``, a page whose digest it knows the outline
    of is not decoded, unless only its rows can tell where the crawl goes. A page's rows
    are sliced, not decoded: each customer is decoded when it is asked for (``Row.data``)."""
    while not crawl.done:
        response = client.customers.page_response(crawl)
        digest = outline = None
        if recall is not None and crawl.on_cursor:
            digest = hashlib.sha256(response.content).digest()
            outline = recall(digest)
        step = crawl.recognise(outline) if outline is not None else None
        if step is not None:
            page = RawPage([], step.position, step.next_position, crawl.limit, [], digest, outline,
                           recalled=True, reached=outline.reached, requested_at=response.requested_at)
        else:
            rows, next_cursor = _decode(response)
            step = crawl.advance(next_cursor, [(row.crawl_key, row.created_at) for row in rows])
            warnings = [] if step.stuck_at is None else client.customers.crowding_warnings(
                step.stuck_at, crawl.limit, crawl.filters)
            if step.dropped:
                digest = None  # not the page as Autumn sent it
            page = RawPage(step.kept(rows), step.position, step.next_position, crawl.limit, warnings, digest,
                           PageOutline(next_cursor, len(rows)) if digest else None, reached=step.reached,
                           requested_at=response.requested_at)
            del rows
        # Nothing of this page stays referenced here while the consumer has it: a crawler
        # waiting for its next answer held the last one's bytes and decoded rows, ~10 MiB
        # of 1,000 customers, times every window in flight.
        del response
        yield page
        del page


def _decode(response: requests.Response) -> tuple[list[Row], str | None]:
    try:
        envelope = list_envelope.decode(response.content)
    except msgspec.DecodeError:
        # Not the shape expected: the client's own decoding names what is wrong, or, if the
        # page is fine by it after all, it is read as dicts.
        answer = list_answer(response)
        return [row_of(data, n) for n, data in enumerate(answer["list"])], answer["next_cursor"]
    return [read_row(raw, n) for n, raw in enumerate(envelope.items)], envelope.next_cursor
