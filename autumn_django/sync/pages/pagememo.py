"""What a ``customers.list`` page held, named by the digest of its bytes.

Equal bytes hold equal customers. So when a run reads bytes it has seen before and the
mirror still holds every state they showed, it needs neither to decode the page nor to hash
any of its customers: the memo says where the crawl goes next, which customers the page
named, and which of them only ``customers.get`` shows in full (those at the list's
product cap, whose products past the cap can change while the page stays the same), with
the catalogue fields the page showed for them (``trust``: ``get``'s answer is stored with
the list's).

A memo also names each customer's bytes on the page (``raw_fingerprint``). When a page
changed, most of its customers did not: ``RawIndex``, made of every stored memo, gives the
state of bytes seen before, so an unchanged customer on a changed page is neither decoded
nor hashed in its canonical form (``preparer``).
"""

from __future__ import annotations

import hashlib
from array import array
from bisect import bisect_left
from collections.abc import Iterable

from ...listing import PageOutline
from .fingerprints import StateMemo


class PageMemo(StateMemo):
    """The key and state fingerprints of a page's customers (but those at the product
    cap), with the page's outline, the ids of its capped customers and their catalogue
    fields (``trust.Catalogue`` by id), and the latest ``created_at`` (epoch ms) it reached."""

    # Bytes stored by an older version lack it and are ignored: the page is simply read again.
    FORMAT = b"autumn_django page memo 4\n"

    def __init__(self, outline: PageOutline, *, reached_created_at: int | None = None,
                 capped_ids: Iterable[str] = (), capped_catalogues: dict | None = None,
                 keys: Iterable[int] = (), states: Iterable[int] = (), raws: Iterable[int] = (),
                 due_at: int | None = None) -> None:
        self.outline, self.reached_created_at = outline, reached_created_at
        self.capped_ids = list(capped_ids)
        self.capped_catalogues = capped_catalogues or {}
        super().__init__(keys, states, raws)
        # The earliest balance reset (epoch ms) among the page's customers that are not
        # read again: once it is due, that row needs customers.get, so the memo is stale.
        self.due_at = due_at

    def add(self, key: int, state: int, raw: int = 0) -> None:
        """A customer of the page: its key and state fingerprints, and its bytes' (0: unknown)."""
        self.keys.append(key)
        self.states.append(state)
        self.raws.append(raw)

    def to_bytes(self) -> bytes:
        header = {"next_cursor": self.outline.next_cursor, "count": self.outline.count,
                  "reached_created_at": self.reached_created_at, "capped_ids": self.capped_ids,
                  "due_at": self.due_at, "capped_catalogues": self.capped_catalogues}
        return self._packed(header)

    @classmethod
    def from_bytes(cls, data: bytes) -> PageMemo | None:
        """The memo stored as ``data``; None for bytes of another format or damaged ones."""
        unpacked = cls._unpacked(data)
        if unpacked is None:
            return None
        header, (keys, states, raws) = unpacked
        if "due_at" not in header:
            return None  # written before memos knew of resets: the page is read again
        try:
            outline = PageOutline(header["next_cursor"], header["count"])
            return cls(outline, reached_created_at=header["reached_created_at"], due_at=header["due_at"],
                       capped_ids=header["capped_ids"], capped_catalogues=header["capped_catalogues"],
                       keys=keys, states=states, raws=raws)
        except (KeyError, TypeError):
            return None


def raw_fingerprint(raw: bytes | memoryview) -> int:
    """64 bits naming a customer's bytes as a list page showed them (never 0: 0 is unknown)."""
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big") or 1


class RawIndex:
    """The state fingerprint of each customer's bytes named in stored memos: 16 bytes a
    customer, sorted, so a lookup is a bisection."""

    def __init__(self, memos: Iterable[PageMemo]) -> None:
        pairs = sorted((raw, state) for memo in memos
                       for raw, state in zip(memo.raws, memo.states, strict=True) if raw)
        self._raws = array("Q", (raw for raw, _ in pairs))
        self._states = array("Q", (state for _, state in pairs))

    def state_of(self, raw: int) -> int | None:
        i = bisect_left(self._raws, raw)
        return self._states[i] if i < len(self._raws) and self._raws[i] == raw else None

    def __len__(self) -> int:
        return len(self._raws)
