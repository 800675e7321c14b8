"""The stand-in's in-memory customer store for one env, and its keyset paging.

Customers are ordered by ``(created_at, insertion sequence)``. The sequence is the
tie-breaker the real server gets from its row ids: many customers can share one
``created_at`` millisecond (bulk imports), and a cursor must still land between them.

Speed matters because benchmarks page through 100k customers: each customer's list-row JSON
is serialized once and cached as bytes (dropped whenever the customer changes), and pages
are built by joining those bytes. A sorted key list plus ``bisect`` finds a cursor's place.

Stored objects are never mutated in place: a change builds a new top-level dict, and nested
values are replaced, not edited. That is what lets the store keep (shallow copies of) the
caller's seed objects without a costly deep copy of 100k customers, and a lagging replica
share them (``set_list_lag``).
"""

from __future__ import annotations

import base64
import binascii
import copy
import gc
import heapq
import json
import math
import threading
import time
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from .resets import apply_due_resets, earliest_reset

LIST_ITEM_CAP = 15  # subscriptions + purchases carried by one list row

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)

# Top-level fields every 2.3 Customer has; filled in for objects added with fewer.
# ``processors`` is not one: the real server omits it when the customer has none.
_DEFAULTS: dict[str, Any] = {
    "name": None, "email": None, "fingerprint": None, "stripe_id": None, "metadata": {},
    "send_email_receipts": False, "billing_controls": {}, "config": {},
    "subscriptions": [], "purchases": [], "licenses": [], "balances": {}, "flags": {},
}  # fmt: skip

Match = Callable[[dict], bool]


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as the real (Node) server writes it."""
    try:
        return _ENCODER.encode(obj).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: fall back to \\u escapes
        return json.dumps(obj, separators=(",", ":")).encode("ascii")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


now_ms_ = now_ms  # for methods with an argument of that name


def _sort_value(created_at: Any) -> float:
    if isinstance(created_at, (int, float)) and not isinstance(created_at, bool):
        return created_at
    return 0


def list_row(data: dict) -> dict:
    """The customer as a list row: at most 15 subscriptions + purchases, subscriptions first."""
    subs = data.get("subscriptions")
    purchases = data.get("purchases")
    if not isinstance(subs, list) or not isinstance(purchases, list):
        return data
    if len(subs) + len(purchases) <= LIST_ITEM_CAP:
        return data
    row = dict(data)
    row["subscriptions"] = subs[:LIST_ITEM_CAP]
    row["purchases"] = purchases[: max(0, LIST_ITEM_CAP - len(subs))]
    return row


def encode_cursor(key: tuple) -> str:
    raw = json.dumps([key[0], key[1]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple | None:
    """The ``(created_at, seq)`` a cursor points after, or None if it does not decode."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        c, s = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        return None
    ok_c = isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c)
    if not ok_c or not isinstance(s, int) or isinstance(s, bool):
        return None
    return (c, s)


class Record:
    __slots__ = ("data", "due_at", "key", "row", "seq")

    def __init__(self, seq: int, data: dict) -> None:
        self.seq = seq
        self.data = data
        self.key = (_sort_value(data.get("created_at")), seq)
        self.row: bytes | None = None  # cached list-row JSON
        # Epoch ms of the customer's earliest balance reset (None: nothing resets), so a
        # page can tell its due customers by one comparison each.
        self.due_at = earliest_reset(data)

    def reset_due(self, now_ms: int) -> bool:
        return self.due_at is not None and self.due_at <= now_ms

    def row_bytes(self) -> bytes:
        if self.row is None:
            self.row = dumps(list_row(self.data))
        return self.row


def _email_key(email: Any) -> str | None:
    return email.strip().lower() if isinstance(email, str) and email.strip() else None


class Store:
    """All customers of one env. Methods lock; callers doing check-then-act hold ``lock``."""

    def __init__(self, env: str) -> None:
        self.env = env
        self.lock = threading.RLock()
        self._recs: dict[int, Record] = {}
        self._keys: list[tuple] = []
        self._by_id: dict[str, Record] = {}
        self._idless: dict[str, list[Record]] = {}  # email -> id-less customers
        # customers.list's lagging copy (``set_list_lag``), and the changes it has not
        # applied yet: (monotonic time it sees them, seq, the new data; None: removed).
        self._replica: Store | None = None
        self._lag_seconds = 0.0
        self._unseen: deque[tuple[float, int, dict | None]] = deque()
        self._next_seq = 0
        # Background resets queued by customers.list: (monotonic time it lands, seq).
        self._queued: list[tuple[float, int]] = []
        self._queued_seqs: set[int] = set()

    # -- indexing -------------------------------------------------------------------
    def _prepare(self, customer: dict) -> dict:
        if not isinstance(customer, dict):
            raise TypeError("a customer must be a dict")
        data = dict(customer)
        if "id" not in data:
            raise ValueError("a customer needs an 'id' key (it may be None)")
        for k, v in _DEFAULTS.items():
            if k not in data:
                data[k] = copy.copy(v)
        if data.get("created_at") is None:
            data["created_at"] = now_ms()
        data["env"] = self.env  # one store is one env, whatever the object said
        return data

    def _index(self, rec: Record) -> None:
        cid = rec.data.get("id")
        if cid is not None:
            if cid in self._by_id:
                raise ValueError(f"customer id {cid!r} already exists")
            self._by_id[cid] = rec
        else:
            email = _email_key(rec.data.get("email"))
            if email:
                self._idless.setdefault(email, []).append(rec)

    def _unindex(self, rec: Record) -> None:
        cid = rec.data.get("id")
        if cid is not None:
            self._by_id.pop(cid, None)
            return
        email = _email_key(rec.data.get("email"))
        same = self._idless.get(email or "")
        if same and rec in same:
            same.remove(rec)
            if not same:
                del self._idless[email]

    # -- writes ---------------------------------------------------------------------
    def seed(self, customers: Iterable[dict]) -> None:
        """Add many customers at once: one sort instead of an insort per customer."""
        if self._replica is not None:  # each must reach the replica late
            for customer in customers:
                self.add(customer)
            return
        was_enabled = gc.isenabled()
        gc.disable()  # 100k new objects would trigger repeated full-heap GC scans
        try:
            with self.lock:
                for customer in customers:
                    rec = Record(self._next_seq, self._prepare(customer))
                    self._index(rec)
                    self._next_seq += 1
                    self._recs[rec.seq] = rec
                    self._keys.append(rec.key)
                self._keys.sort()
        finally:
            if was_enabled:
                gc.enable()

    def add(self, customer: dict) -> Record:
        with self.lock:
            rec = Record(self._next_seq, self._prepare(customer))
            self._index(rec)
            self._next_seq += 1
            self._recs[rec.seq] = rec
            insort(self._keys, rec.key)
            self._to_replica(rec.seq, rec.data)
            return rec

    def replace(self, rec: Record, data: dict) -> None:
        """Swap in a new top-level dict for ``rec`` (re-keying and re-indexing as needed)."""
        with self.lock:
            if self._recs.get(rec.seq) is not rec:
                raise KeyError("customer is no longer in the store")
            new_id = data.get("id")
            if new_id is not None and new_id != rec.data.get("id") and new_id in self._by_id:
                raise ValueError(f"customer id {new_id!r} already exists")
            self._unindex(rec)
            old_key = rec.key
            rec.data = data
            rec.row = None
            rec.due_at = earliest_reset(data)
            rec.key = (_sort_value(data.get("created_at")), rec.seq)
            if rec.key != old_key:
                del self._keys[bisect_left(self._keys, old_key)]
                insort(self._keys, rec.key)
            self._index(rec)
            self._to_replica(rec.seq, data)

    def remove(self, rec: Record) -> None:
        with self.lock:
            if self._recs.pop(rec.seq, None) is None:
                return
            self._unindex(rec)
            del self._keys[bisect_left(self._keys, rec.key)]
            self._to_replica(rec.seq, None)

    # -- the list's lagging replica -------------------------------------------------------
    def set_list_lag(self, milliseconds: float) -> None:
        """From now on ``listed()`` is a copy of the store that shows every change
        (creations, updates, renames, deletions) ``milliseconds`` late, as the replica
        Autumn's customers.list reads can; 0 makes it the store itself again."""
        with self.lock:
            if milliseconds <= 0:
                self._replica, self._lag_seconds, self._unseen = None, 0.0, deque()
                return
            if self._replica is None:
                replica = Store(self.env)
                replica.lock = self.lock  # one lock: the replica changes only under the store's
                for rec in self._recs.values():
                    replica._put(rec.seq, rec.data)
                replica._keys.sort()
                self._replica = replica
            self._lag_seconds = milliseconds / 1000

    def listed(self) -> Store:
        """What customers.list reads: this store, or its replica with the changes that are
        due by now (``set_list_lag``)."""
        replica = self._replica
        if replica is None:
            return self
        with self.lock:
            now = time.monotonic()
            while self._unseen and self._unseen[0][0] <= now:
                _, seq, data = self._unseen.popleft()
                replica._copy_change(seq, data)
            return replica

    def _to_replica(self, seq: int, data: dict | None) -> None:
        if self._replica is not None:
            self._unseen.append((time.monotonic() + self._lag_seconds, seq, data))

    def _put(self, seq: int, data: dict) -> Record:
        rec = Record(seq, data)
        self._index(rec)
        self._recs[seq] = rec
        self._keys.append(rec.key)
        return rec

    def _copy_change(self, seq: int, data: dict | None) -> None:
        """Apply, to this replica, a change its store made to customer ``seq``."""
        rec = self._recs.get(seq)
        if data is None:
            if rec is not None:
                self.remove(rec)
        elif rec is None:
            self._put(seq, data)
            self._keys.sort()
        else:
            self.replace(rec, data)

    # -- balance resets (see resets.py) ----------------------------------------------
    def apply_resets(self, rec: Record, now_ms: int | None = None) -> bool:
        """Apply every reset of ``rec`` that is due (as customers.get does); True if any was."""
        now_ms = now_ms_() if now_ms is None else now_ms
        with self.lock:
            if not rec.reset_due(now_ms) or self._recs.get(rec.seq) is not rec:
                return False
            data = apply_due_resets(rec.data, now_ms)
            if data is None:
                return False
            self.replace(rec, data)
            return True

    def queue_resets(self, recs: Iterable[Record], now_ms: int, lands_in_ms: float | None) -> None:
        """Queue the background reset of each of ``recs`` that is due (as customers.list
        does), to land ``lands_in_ms`` from now; None: it never lands."""
        if lands_in_ms is None:
            return
        lands_at = time.monotonic() + lands_in_ms / 1000
        with self.lock:
            for rec in recs:
                if rec.reset_due(now_ms) and rec.seq not in self._queued_seqs:
                    self._queued_seqs.add(rec.seq)
                    heapq.heappush(self._queued, (lands_at, rec.seq))

    def land_resets(self) -> int:
        """Apply the queued background resets whose time has come; how many changed a customer."""
        if not self._queued:  # unlocked peek: the common case costs nothing
            return 0
        landed = 0
        with self.lock:
            now, now_ms = time.monotonic(), now_ms_()
            while self._queued and self._queued[0][0] <= now:
                _, seq = heapq.heappop(self._queued)
                self._queued_seqs.discard(seq)
                rec = self._recs.get(seq)
                if rec is not None and self.apply_resets(rec, now_ms):
                    landed += 1
        return landed

    # -- reads ----------------------------------------------------------------------
    def find(self, customer_id: str) -> Record | None:
        return self._by_id.get(customer_id)

    def find_idless(self, email: str) -> Record | None:
        same = self._idless.get(_email_key(email) or "")
        return min(same, key=lambda r: r.key) if same else None

    def records(self) -> list[Record]:
        with self.lock:
            return [self._recs[k[1]] for k in self._keys]

    def __len__(self) -> int:
        return len(self._recs)

    def _bounds(self, lo_ca: float | None, hi_ca: float | None) -> tuple[int, int]:
        keys = self._keys
        lo = 0 if lo_ca is None else bisect_left(keys, (lo_ca,))
        hi = len(keys) if hi_ca is None else bisect_right(keys, (hi_ca, math.inf))
        return lo, hi

    @staticmethod
    def _row(rec: Record, patches: dict) -> bytes:
        if patches:
            patch = patches.get(rec.data.get("id"))
            if patch is not None:
                return dumps({**list_row(rec.data), **patch})
        return rec.row_bytes()

    def cursor_page(
        self,
        *,
        after: tuple | None,
        limit: int,
        desc: bool,
        match: Match | None,
        lo_ca: float | None = None,
        hi_ca: float | None = None,
        patches: dict | None = None,
        picked: Callable[[list[Record]], None] | None = None,
    ) -> tuple[list[bytes], str | None]:
        """One 2.3 page: the rows' JSON bytes and the ``next_cursor``. ``picked`` is
        called with the page's records before their rows are written (under the lock).

        ``next_cursor`` is None on the last page, and also (the real server's defect,
        reproduced on purpose) when a full page ends with a customer whose id is null.
        """
        patches = patches or {}
        with self.lock:
            keys, recs = self._keys, self._recs
            lo, hi = self._bounds(lo_ca, hi_ca)
            if desc:
                end = hi if after is None else min(hi, bisect_left(keys, after))
                positions: Iterable[int] = range(end - 1, lo - 1, -1)
            else:
                start = lo if after is None else max(lo, bisect_right(keys, after))
                positions = range(start, hi)
            if match is None:  # fast path: a slice, plus "is there one more?"
                chosen = [recs[keys[i][1]] for i in positions[: limit + 1]]
            else:
                chosen = []
                for i in positions:
                    rec = recs[keys[i][1]]
                    if match(rec.data):
                        chosen.append(rec)
                        if len(chosen) > limit:
                            break
            more = len(chosen) > limit
            chosen = chosen[:limit]
            if picked is not None:
                picked(chosen)
            rows = [self._row(r, patches) for r in chosen]
            last = chosen[-1] if chosen else None
            if not more or last is None or last.data.get("id") is None:
                return rows, None
            return rows, encode_cursor(last.key)

    def offset_page(
        self,
        *,
        offset: int,
        limit: int,
        desc: bool,
        match: Match | None,
        lo_ca: float | None = None,
        hi_ca: float | None = None,
        patches: dict | None = None,
        picked: Callable[[list[Record]], None] | None = None,
    ) -> tuple[list[bytes], int]:
        """One 2.1/2.2 page: the rows' JSON bytes and the total count of matches."""
        with self.lock:
            lo, hi = self._bounds(lo_ca, hi_ca)
            chosen = [self._recs[k[1]] for k in self._keys[lo:hi]]
            if desc:
                chosen.reverse()
            if match is not None:
                chosen = [r for r in chosen if match(r.data)]
            page = chosen[offset : offset + limit]
            if picked is not None:
                picked(page)
            rows = [self._row(r, patches or {}) for r in page]
            return rows, len(chosen)


def build_match(
    search: str | None,
    plans: list[dict] | None,
    subscription_status: str | None,
    processors: list[str] | None,
) -> Match | None:
    """A predicate for the list filters (all given filters must hold), or None for none."""
    tests: list[Match] = []
    if search:
        needle = search.lower()

        def by_search(c: dict) -> bool:
            return any(isinstance(c.get(f), str) and needle in c[f].lower() for f in ("id", "name", "email"))

        tests.append(by_search)
    if plans:
        wanted = {p["id"]: p.get("versions") for p in plans}

        def plan_ok(item: Any) -> bool:
            if not isinstance(item, dict) or item.get("plan_id") not in wanted:
                return False
            versions = wanted[item["plan_id"]]
            # Items carry no version in this shape; a version filter only bites when they do.
            return not versions or item.get("version") is None or item["version"] in versions

        def by_plan(c: dict) -> bool:
            items = (c.get("subscriptions") or []) + (c.get("purchases") or [])
            return any(plan_ok(i) for i in items)

        tests.append(by_plan)
    if subscription_status:

        def by_status(c: dict) -> bool:
            return any(
                isinstance(s, dict) and s.get("status") == subscription_status
                for s in c.get("subscriptions") or []
            )

        tests.append(by_status)
    if processors:

        def by_processor(c: dict) -> bool:
            procs = c.get("processors") or {}
            return isinstance(procs, dict) and any(procs.get(p) for p in processors)

        tests.append(by_processor)
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    return lambda c: all(t(c) for t in tests)
