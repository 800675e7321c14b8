"""Compact fingerprints of customers: which ones a pass saw, and what the mirror holds."""

from __future__ import annotations

import hashlib
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from ... import jsonlib

Key = tuple[str, str]


def key_fingerprint(key: Key) -> int:
    """64 bits naming a customer key; collisions among 10^6 customers: ~3e-8."""
    digest = hashlib.blake2b(f"{key[0]}\0{key[1]}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def state_fingerprint(raw_hash: str) -> int:
    """64 bits naming a customer as stored: the first half of the hash of its JSON, which
    holds the customer's id or email, so key and content are named together."""
    return int(raw_hash[:16], 16)


class Fingerprints:
    """A set of 64-bit fingerprints in 8 bytes each (a Python set of ints costs ~70):
    memory that stays small next to the page being worked on, even at 10^6 customers."""

    def __init__(self, values: Iterable[int] = (), *, frozen: bytes | None = None) -> None:
        self._values = array("Q")
        if frozen is not None:
            self._values.frombytes(frozen)
        else:
            self._values.extend(values)
        self._sorted = frozen is not None

    def add_many(self, values: Iterable[int]) -> None:
        self._values.extend(values)
        self._sorted = False

    def sort(self) -> Fingerprints:
        """Sort now (lookups need it): after this, threads that only look up may share it."""
        if not self._sorted:
            self._values = array("Q", sorted(self._values))
            self._sorted = True
        return self

    def __contains__(self, value: int) -> bool:
        self.sort()
        i = bisect_left(self._values, value)
        return i < len(self._values) and self._values[i] == value

    def __len__(self) -> int:
        return len(self._values)

    def to_bytes(self) -> bytes:
        return self.sort()._values.tobytes()


class StateMemo:
    """What a stored page memo names of each record on the page (customers, or entities):
    its key and state fingerprints, and its bytes' (``raws``; 0: unknown). Subclasses add
    what the crawl needs to go on from the page, as the header of their ``FORMAT``."""

    FORMAT: bytes

    def __init__(self, keys: Iterable[int] = (), states: Iterable[int] = (),
                 raws: Iterable[int] = ()) -> None:
        self.keys, self.states, self.raws = array("Q", keys), array("Q", states), array("Q", raws)

    def held_by(self, mirror: Fingerprints) -> bool:
        """Whether the mirror holds every record of the page as the page shows it."""
        return all(state in mirror for state in self.states)

    def __len__(self) -> int:
        return len(self.states)

    def _packed(self, header: dict[str, Any]) -> bytes:
        return pack_memo(self.FORMAT, header, self.keys, self.states, self.raws)

    @classmethod
    def _unpacked(cls, data: bytes) -> tuple[dict[str, Any], list[array]] | None:
        """The header and the key, state and raw columns of bytes ``_packed`` made, or None."""
        return unpack_memo(data, cls.FORMAT, 3)


def pack_memo(form: bytes, header: dict[str, Any], *columns: array) -> bytes:
    """A page memo as stored: its format line, its JSON header, then its columns of 64-bit
    fingerprints (equally long), one after another."""
    return form + jsonlib.dumps_bytes(header) + b"\n" + b"".join(column.tobytes() for column in columns)


def unpack_memo(data: bytes, form: bytes, columns: int) -> tuple[dict[str, Any], list[array]] | None:
    """``pack_memo``'s header and ``columns`` columns, or None for bytes of another format
    (an older version's: the page is simply read again) or damaged ones."""
    if not data.startswith(form):
        return None
    try:
        end = data.index(b"\n", len(form))
        header = jsonlib.loads(data[len(form):end])
        every = array("Q")
        every.frombytes(data[end + 1:])
    except ValueError:
        return None
    if not isinstance(header, dict) or len(every) % columns:
        return None
    size = len(every) // columns
    return header, [every[i * size:(i + 1) * size] for i in range(columns)]
