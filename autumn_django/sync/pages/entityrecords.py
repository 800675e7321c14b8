"""One ``entities.list`` object read for the mirror (no Django here: the prefetch child
reads entity pages too).

An entity is read in two steps. ``read_entity`` checks what keys it and hashes its JSON;
its child rows are built (``EntityRecord.parse_children``) only for an entity the mirror
does not hold as it is: on a re-sync most entities are neither new nor changed, and
building the rows of all of them was two thirds of a no-change pass (10,000 entities:
6.3 of 9.0 s under cProfile).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ... import jsonlib
from .copytext import copy_line
from .records import DATETIME_ROWS, RecordError, RowForm, child_rows
from .timeforms import EPOCH

# Entity rows are keyed by (customer's Autumn id, entity id); entities without an id (they
# exist, as customers without one do) by (customer's Autumn id, None, created_at, name).
EntityKey = tuple[Any, ...]

# An entity's kinds of child rows, in ``child_rows``' order.
CHILD_KINDS = ("subscriptions", "purchases", "balances", "flags")


@dataclass(slots=True)
class EntityRecord:
    key: EntityKey
    customer_id: str  # the customer's Autumn id
    values: dict[str, Any]  # autumn_id, name, feature_id, created_at (an aware datetime)
    raw: dict[str, Any] | None  # None once ``travel_light`` dropped it (``raw_json`` stays)
    raw_json: str  # the JSON as stored: compact, keys sorted (what ``raw_hash`` hashes)
    raw_hash: str
    created_ms: int  # ``created_at`` as Autumn sent it (epoch ms)
    read_at: datetime | None = None
    # By CHILD_KINDS; None until ``parse_children``.
    children: dict[str, list] | None = None
    raw_print: int = 0  # the fingerprint of its bytes as the page showed them (0: unknown)

    @property
    def autumn_id(self) -> str | None:
        return self.values["autumn_id"]

    def describe(self) -> str:
        return entity_key_text(self.key)

    def parse_children(self, form: RowForm = DATETIME_ROWS) -> dict[str, list]:
        """The entity's child rows in ``form`` (times as it says; with ``copy_text``, each
        row a COPY text line); ``RecordError`` naming a bad field."""
        if self.children is None:
            data = self.raw if self.raw is not None else jsonlib.loads(self.raw_json)
            rows = dict(zip(CHILD_KINDS, child_rows(data, self.key, form.time_style), strict=True))
            if form.copy_text:
                rows = {kind: [copy_line(row) for row in kind_rows] for kind, kind_rows in rows.items()}
            self.children = rows
        return self.children

    def travel_light(self) -> EntityRecord:
        """Drop the decoded JSON before the record crosses the prefetch pipe: the writer
        needs only ``raw_json``, and decodes it again in the rare case it must build the
        rows of an entity the child took for unchanged. Pickling the decoded object too
        would double what crosses."""
        self.raw = None
        return self


def entity_key_text(key: EntityKey | None) -> str:
    if key is None:
        return "an entity that cannot be keyed"
    if key[1] is not None:
        return f"entity {key[1]!r} of customer {key[0]!r}"
    return f"entity without an id (created_at {key[2]}, name {key[3]!r}) of customer {key[0]!r}"


def read_entity(data: Any, *, read_at: datetime | None = None) -> EntityRecord:
    """Check an entity object's own fields and hash its JSON, without its child rows
    (``parse_children``); ``RecordError`` naming the bad field. An error whose ``key`` is
    None is an object that might stand for any mirrored entity."""
    if not isinstance(data, dict):
        raise RecordError(f"expected an entity object, got {type(data).__name__}", None)
    customer_id, autumn_id = data.get("customer_id"), data.get("id")
    created_at, name = data.get("created_at"), data.get("name")
    if not isinstance(customer_id, str) or not customer_id:
        # Autumn gives id-less customers' entities no customer id: nothing to link them to.
        keyless = customer_id is None
        raise RecordError("it has no customer_id (text) to link it to its customer", None, keyless=keyless)
    if autumn_id is not None and (not isinstance(autumn_id, str) or not autumn_id or len(autumn_id) > 255):
        raise RecordError("id: expected text of at most 255 characters or null", None)
    # Without an id, created_at and name are the key: an entity whose are bad may be any.
    known = (customer_id, autumn_id) if autumn_id is not None else None
    if not isinstance(created_at, int) or isinstance(created_at, bool):
        raise RecordError("created_at: expected epoch milliseconds", known)
    if name is not None and not isinstance(name, str):
        raise RecordError("name: expected text or null", known)
    created = EPOCH + timedelta(milliseconds=created_at)
    key: EntityKey = known or (customer_id, None, created, name)
    feature_id = data.get("feature_id")
    if feature_id is not None and (not isinstance(feature_id, str) or len(feature_id) > 255):
        raise RecordError("feature_id: expected text of at most 255 characters or null", key)
    raw_json = jsonlib.dumps_sorted_bytes(data)
    return EntityRecord(
        key=key, customer_id=customer_id,
        values={"autumn_id": autumn_id, "name": name, "feature_id": feature_id, "created_at": created},
        raw=data, raw_json=raw_json.decode(), raw_hash=hashlib.blake2b(raw_json, digest_size=16).hexdigest(),
        created_ms=created_at, read_at=read_at,
    )


def parse_entity(data: Any, *, read_at: datetime | None = None,
                 form: RowForm = DATETIME_ROWS) -> EntityRecord:
    """``read_entity`` and its child rows at once (``RecordError`` for either)."""
    record = read_entity(data, read_at=read_at)
    record.parse_children(form)
    return record
