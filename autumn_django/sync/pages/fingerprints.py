"""Compact fingerprints of customers: which ones a pass saw, and what the mirror holds."""

from __future__ import annotations

import hashlib
from array import array
from bisect import bisect_left
from collections.abc import Iterable

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
