"""The stand-in's entities of one env, their keyset paging, and an entity's answer.

An entity is stored as Autumn stores it (its own plans, balances and flags) and tied to its
customer's store record, not to the customer's id: a renamed customer keeps its entities,
as on Autumn (which links them by internal id), and a deleted customer's entities are gone
with it (they are skipped when served, and dropped the next time the store is written).

The answer is composed when served, from the entity and its customer as the server merges
them (``server/src/internal/entities/repos/hydrateEntityRowsWithCustomerData.ts``;
autumn-api.md, "Entities and seats"): the entity's own subscriptions and purchases
(``scope: "entity"``) then the customer's ``scope: "customer"`` ones; its own balances with
the customer's pooled in (a feature in both: granted, remaining and usage summed, the
breakdowns joined; a feature only the customer has: the customer's balance); the
customer's flags plus its own.

Limitation: the customer objects do not change when entities do. At 2.3 Autumn folds an
entity's plans, balances and flags into its customer's answer; here a customer answers
exactly what it was seeded or modified with, whatever its entities are.

Order: ``entities.list`` is newest first, by ``(created_at, id)`` descending
(``repos/cursorListEntitiesQuery.ts``). Among entities of one millisecond, those without an
id come first, as PostgreSQL sorts NULLs first in a descending order; the insertion sequence
breaks the remaining ties. A cursor is the last entity's ``(created_at, id)``; the page after
it holds the entities strictly below it. The server's defect is reproduced:
``next_cursor`` is null when a full page ends with an entity without an id
(``handlers/handleListEntitiesV2.ts``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import threading
from bisect import bisect_left, insort
from collections.abc import Callable
from typing import Any

from .store import Record, Store, dumps, now_ms

EntityMatch = Callable[[dict, dict], bool]  # (entity, customer) -> listed?


def _key(data: dict, seq: int) -> tuple:
    created = data.get("created_at")
    created = created if isinstance(created, (int, float)) and not isinstance(created, bool) else 0
    entity_id = data.get("id")
    # Ascending here, read backwards for the list: an id-less entity sorts above every id
    # of its millisecond, so it comes first newest-first (NULLS FIRST).
    return (created, 1, "", seq) if entity_id is None else (created, 0, str(entity_id), seq)


def encode_cursor(data: dict) -> str:
    raw = json.dumps({"t": data.get("created_at"), "id": data.get("id")}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple | None:
    """The sort key a cursor points at (entities strictly below it follow), or None."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        value = json.loads(raw)
        t, entity_id = value["t"], value["id"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        return None
    ok_t = isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t)
    if not ok_t or not isinstance(entity_id, str) or not entity_id:
        return None
    return (t, 0, entity_id)


def _pooled(own: dict, inherited: dict) -> dict:
    """One feature's balance of an entity that also draws on its customer's."""
    resets = [b.get("next_reset_at") for b in (own, inherited) if b.get("next_reset_at") is not None]
    total = {}
    for name in ("granted", "remaining", "usage"):
        a, b = own.get(name), inherited.get(name)
        numbers = isinstance(a, (int, float)) and isinstance(b, (int, float))
        total[name] = a + b if numbers else a
    return {
        **own, **total,
        "unlimited": bool(own.get("unlimited") or inherited.get("unlimited")),
        "overage_allowed": bool(own.get("overage_allowed") or inherited.get("overage_allowed")),
        "max_purchase": own.get("max_purchase") if own.get("max_purchase") is not None
        else inherited.get("max_purchase"),
        "next_reset_at": min(resets) if resets else None,
        "breakdown": [*(own.get("breakdown") or []), *(inherited.get("breakdown") or [])],
    }  # fmt: skip


def compose(entity: dict, customer: dict) -> dict:
    """The entity as the API answers it: its own data with its customer's pooled in."""
    def customer_level(items: Any) -> list:
        return [i for i in items or [] if not isinstance(i, dict) or i.get("scope", "customer") == "customer"]

    own_balances = entity.get("balances") or {}
    inherited = customer.get("balances") or {}
    balances = {}
    for feature, balance in own_balances.items():
        theirs = inherited.get(feature)
        both = isinstance(balance, dict) and isinstance(theirs, dict)
        balances[feature] = _pooled(balance, theirs) if both else balance
    for feature, balance in inherited.items():
        balances.setdefault(feature, balance)
    answer = {
        "id": entity.get("id"), "name": entity.get("name"),
        "customer_id": customer.get("id"), "feature_id": entity.get("feature_id"),
        "created_at": entity.get("created_at"), "env": customer.get("env"),
        "subscriptions": [*(entity.get("subscriptions") or []),
                          *customer_level(customer.get("subscriptions"))],
        "purchases": [*(entity.get("purchases") or []), *customer_level(customer.get("purchases"))],
        "balances": balances,
        "flags": {**(customer.get("flags") or {}), **(entity.get("flags") or {})},
        "billing_controls": entity.get("billing_controls") or {},
    }  # fmt: skip
    if answer["feature_id"] is None:  # the server leaves it out rather than say null
        del answer["feature_id"]
    return answer


class EntityRecord:
    __slots__ = ("customer", "data", "key", "row", "row_of", "seq")

    def __init__(self, seq: int, customer: Record, data: dict) -> None:
        self.seq = seq
        self.customer = customer  # the customer's store record: follows renames
        self.data = data
        self.key = _key(data, seq)
        self.row: bytes | None = None  # the answer's JSON, for ``row_of``'s data
        self.row_of: dict | None = None

    def address(self) -> tuple[Any, Any]:
        """``(customer_id, entity_id)``, as the API and the fault switches name it."""
        return self.customer.data.get("id"), self.data.get("id")

    def answer(self) -> dict:
        return compose(self.data, self.customer.data)

    def answer_bytes(self, patch: dict | None = None) -> bytes:
        customer = self.customer.data
        if patch:
            return dumps({**self.answer(), **patch})
        # Stored objects are replaced, never edited, so "same objects" means "same answer".
        if self.row is None or self.row_of is not customer:
            self.row, self.row_of = dumps(compose(self.data, customer)), customer
        return self.row


class EntityStore:
    """All entities of one env, beside (and locked with) that env's customer ``Store``."""

    def __init__(self, customers: Store) -> None:
        self.customers = customers
        self.lock: threading.RLock = customers.lock  # one lock: answers read both
        self._recs: dict[int, EntityRecord] = {}
        self._keys: list[tuple] = []
        self._by_customer: dict[int, set[EntityRecord]] = {}  # customer record seq -> its entities
        self._next_seq = 0

    # -- writes ---------------------------------------------------------------------
    def _customer(self, customer_id: Any) -> Record:
        if not isinstance(customer_id, str) or not customer_id:
            raise ValueError(f"an entity needs the customer_id of a customer with an id, not {customer_id!r}")
        rec = self.customers.find(customer_id)
        if rec is None:
            raise KeyError(f"no customer {customer_id!r} in the {self.customers.env} store")
        return rec

    def _prepare(self, entity: Any) -> dict:
        if not isinstance(entity, dict):
            raise TypeError("an entity must be a dict")
        if "id" not in entity:
            raise ValueError("an entity needs an 'id' key (it may be None)")
        entity_id = entity["id"]
        if entity_id is not None and not (isinstance(entity_id, str) and entity_id):
            raise ValueError(f"an entity id is a non-empty string or None, not {entity_id!r}")
        data = {"name": None, "feature_id": None, "subscriptions": [], "purchases": [], "balances": {},
                "flags": {}, "billing_controls": {}, **entity}  # fmt: skip
        if data.get("created_at") is None:
            data["created_at"] = now_ms()
        data["env"] = self.customers.env
        return data

    def add(self, entity: dict) -> EntityRecord:
        with self.lock:
            self._purge()
            data = self._prepare(entity)
            customer = self._customer(data.get("customer_id"))
            if data["id"] is not None and self.find(customer.data["id"], data["id"]) is not None:
                raise ValueError(f"entity {data['id']!r} of customer {customer.data['id']!r} already exists")
            rec = EntityRecord(self._next_seq, customer, data)
            self._next_seq += 1
            self._recs[rec.seq] = rec
            self._by_customer.setdefault(customer.seq, set()).add(rec)
            insort(self._keys, rec.key)
            return rec

    def seed(self, entities: list[dict]) -> None:
        """Add many entities at once (one sort). Each names an existing customer."""
        with self.lock:
            keys = self._keys
            for entity in entities:
                data = self._prepare(entity)
                customer = self._customer(data.get("customer_id"))
                rec = EntityRecord(self._next_seq, customer, data)
                self._next_seq += 1
                self._recs[rec.seq] = rec
                self._by_customer.setdefault(customer.seq, set()).add(rec)
                keys.append(rec.key)
            keys.sort()

    def replace(self, rec: EntityRecord, data: dict) -> None:
        with self.lock:
            new_id = data.get("id")
            if new_id is not None and new_id != rec.data.get("id"):
                if not (isinstance(new_id, str) and new_id):
                    raise ValueError(f"an entity id is a non-empty string or None, not {new_id!r}")
                if self.find(rec.customer.data.get("id"), new_id) is not None:
                    owner = rec.customer.data.get("id")
                    raise ValueError(f"entity {new_id!r} of customer {owner!r} already exists")
            old_key = rec.key
            rec.data = {**data, "env": self.customers.env}
            rec.row = rec.row_of = None
            rec.key = _key(rec.data, rec.seq)
            if rec.key != old_key:
                del self._keys[bisect_left(self._keys, old_key)]
                insort(self._keys, rec.key)

    def remove(self, rec: EntityRecord) -> None:
        with self.lock:
            if self._recs.pop(rec.seq, None) is None:
                return
            del self._keys[bisect_left(self._keys, rec.key)]
            mine = self._by_customer.get(rec.customer.seq)
            if mine is not None:
                mine.discard(rec)
                if not mine:
                    del self._by_customer[rec.customer.seq]

    def _alive(self, rec: EntityRecord) -> bool:
        """Its customer is still in the store (a deleted customer's entities are gone)."""
        return self.customers._recs.get(rec.customer.seq) is rec.customer

    def _purge(self) -> None:
        for seq in [s for s, recs in self._by_customer.items() if not self._alive(next(iter(recs)))]:
            for rec in list(self._by_customer[seq]):
                self.remove(rec)

    # -- reads ----------------------------------------------------------------------
    def of_customer(self, customer_id: str) -> list[EntityRecord]:
        """The customer's live entities, newest first."""
        with self.lock:
            customer = self.customers.find(customer_id)
            if customer is None:
                return []
            return sorted(self._by_customer.get(customer.seq, ()), key=lambda r: r.key, reverse=True)

    def find(self, customer_id: Any, entity_id: str | None) -> EntityRecord | None:
        """The entity ``entity_id`` of ``customer_id`` (None: of any customer, newest
        first). ``entity_id`` None finds the customer's one id-less entity, if it has one."""
        with self.lock:
            if customer_id is None:
                if entity_id is None:
                    return None
                for i in range(len(self._keys) - 1, -1, -1):
                    rec = self._recs[self._keys[i][3]]
                    if rec.data.get("id") == entity_id and self._alive(rec):
                        return rec
                return None
            if not isinstance(customer_id, str):
                return None
            same = [r for r in self.of_customer(customer_id) if r.data.get("id") == entity_id]
            if entity_id is None and len(same) > 1:
                raise ValueError(f"customer {customer_id!r} has {len(same)} entities without an id")
            return same[0] if same else None

    def records(self) -> list[EntityRecord]:
        """Every live entity, in list order (newest first)."""
        with self.lock:
            recs = (self._recs[k[3]] for k in reversed(self._keys))
            return [r for r in recs if self._alive(r)]

    def __len__(self) -> int:
        return len(self.records())

    def cursor_page(self, *, after: tuple | None, limit: int, customer_id: str | None,
                    match: EntityMatch | None, patches: dict | None = None) -> tuple[list[bytes], str | None]:
        """One page, newest first: the answers' JSON bytes and the ``next_cursor`` (None on
        the last page, and, the server's defect, after a full page ending id-less)."""
        patches = patches or {}
        with self.lock:
            if customer_id is not None:
                pool: Any = [r for r in self.of_customer(customer_id) if after is None or r.key < after]
            else:
                end = len(self._keys) if after is None else bisect_left(self._keys, after)
                pool = (self._recs[self._keys[i][3]] for i in range(end - 1, -1, -1))
            chosen: list[EntityRecord] = []
            for rec in pool:
                if not self._alive(rec) or (match is not None and not match(rec.data, rec.customer.data)):
                    continue
                chosen.append(rec)
                if len(chosen) > limit:
                    break
            more = len(chosen) > limit
            chosen = chosen[:limit]
            rows = [r.answer_bytes(patches.get(r.address())) for r in chosen]
            last = chosen[-1] if chosen else None
            if not more or last is None or not last.data.get("id"):
                return rows, None
            return rows, encode_cursor(last.data)


def build_entity_match(search: str | None) -> EntityMatch | None:
    """entities.list's ``search``: a substring of the entity's id or name, any case
    (``repos/cursorListEntitiesQuery.ts``: ``e.id ILIKE`` or ``e.name ILIKE``)."""
    needle = (search or "").strip().lower()
    if not needle:
        return None

    def by_search(entity: dict, customer: dict) -> bool:
        return any(isinstance(entity.get(f), str) and needle in entity[f].lower() for f in ("id", "name"))

    return by_search
