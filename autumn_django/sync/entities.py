"""What the sync writes for entities: ``entities.list`` objects into ``Entity`` rows and
their subscriptions, purchases, balances and flags (the customer's child models, linked
through ``entity``).

Entities are about as many as customers in an org that uses them, far fewer where it does
not, and an entity page is written once a run: the ORM's ``bulk_create`` and
``bulk_update`` do it (a 1,000-entity page in one transaction, a handful of queries),
without the customer path's hand-written SQL.

The rules are the customers': an unchanged entity (same JSON) is not written; data read
earlier never overwrites data read later (``read_at``: ``entities.list`` reads a replica,
the list filtered by customer the primary); a record that cannot be parsed is skipped
and reported, and only a record that cannot be keyed at all can hide a mirrored entity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Q

from .. import jsonlib
from ..models import Balance, Customer, Entity, Flag, Purchase, Subscription
from .bulk import BulkWriter
from .records import CHILD_FIELDS, DATETIME_ROWS, EPOCH, TIME_FIELDS, RecordError, RowForm, child_rows
from .writer import time_adapter

# Entity rows are keyed by (customer's Autumn id, entity id); entities without an id (they
# exist, as customers without one do) by (customer's Autumn id, created_at, name).
EntityKey = tuple[Any, ...]

_CHILD_MODELS = {"subscriptions": Subscription, "purchases": Purchase, "balances": Balance,
                 "flags": Flag}
_TIME_POSITIONS = {attribute: {i for i, name in enumerate(fields) if name in TIME_FIELDS}
                   for attribute, fields in CHILD_FIELDS.items()}
_ROW_FIELDS = ("autumn_id", "name", "feature_id", "created_at")


@dataclass(slots=True)
class EntityRecord:
    key: EntityKey
    customer_id: str  # the customer's Autumn id
    values: dict[str, Any]  # _ROW_FIELDS
    raw: dict[str, Any]
    raw_hash: str
    children: dict[str, list[tuple]]  # by CHILD_FIELDS attribute, times as aware datetimes
    read_at: datetime | None = None

    @property
    def autumn_id(self) -> str | None:
        return self.values["autumn_id"]

    def describe(self) -> str:
        return entity_key_text(self.key)


def entity_key_text(key: EntityKey | None) -> str:
    if key is None:
        return "an entity that cannot be keyed"
    if key[1] is not None:
        return f"entity {key[1]!r} of customer {key[0]!r}"
    return f"entity without an id (created_at {key[2]}, name {key[3]!r}) of customer {key[0]!r}"


def parse_entity(data: Any, *, read_at: datetime | None = None,
                 form: RowForm = DATETIME_ROWS) -> EntityRecord:
    """Validate an entity object and build its rows; ``RecordError`` naming the bad field.
    An error whose ``key`` is None is an object that might stand for any mirrored entity."""
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
    key: EntityKey = known or (customer_id, None, created_at, name)
    feature_id = data.get("feature_id")
    if feature_id is not None and (not isinstance(feature_id, str) or len(feature_id) > 255):
        raise RecordError("feature_id: expected text of at most 255 characters or null", key)
    subscriptions, purchases, balances, flags = child_rows(data, key, form.time_style)
    raw_json = jsonlib.dumps_sorted_bytes(data)
    return EntityRecord(
        key=key, customer_id=customer_id,
        values={"autumn_id": autumn_id, "name": name, "feature_id": feature_id,
                "created_at": EPOCH + timedelta(milliseconds=created_at)},
        raw=data, raw_hash=hashlib.blake2b(raw_json, digest_size=16).hexdigest(),
        children={"subscriptions": subscriptions, "purchases": purchases, "balances": balances,
                  "flags": flags},
        read_at=read_at,
    )


@dataclass
class EntityWriteResult:
    created: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)  # undeleted ones too
    unchanged: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)  # the row holds data read later
    # Records whose customer the mirror does not hold (yet): not written.
    orphans: list[EntityRecord] = field(default_factory=list)

    @property
    def seen(self) -> list[int]:
        return self.created + self.updated + self.unchanged + self.kept


@dataclass
class _Stored:
    pk: int
    raw_hash: str
    deleted: bool
    read_at: datetime | None


class EntityWriter:
    """Writes entities of one env; call ``write`` inside a transaction.

    The entities themselves go through the ORM (``bulk_create``/``bulk_update``); their
    child rows, ten or more an entity since its answer repeats its customer's plans and
    balances, through the customers' SQL (``bulk``): through the ORM they cost 3 ms an
    entity on SQLite (2,075 entities with 22,000 rows: 6.7 of the pass's 11.3 s went to
    ``bulk_create``'s per-value preparation). Parse records in its ``form`` to hand their
    times over as the database takes them (only times: entity rows never go as COPY text)."""

    def __init__(self, env: str, using: str = DEFAULT_DB_ALIAS) -> None:
        self.env, self.using = env, using
        connection = connections[using]
        self._bulk = BulkWriter.for_connection(connection)
        time_style, self._adapt_time = time_adapter(connection)
        self.form = RowForm(time_style)

    def write(self, records: Sequence[EntityRecord], *, now: datetime) -> EntityWriteResult:
        result = EntityWriteResult()
        records = list({record.key: record for record in records}.values())
        customer_pks = self.customer_pks({record.customer_id for record in records})
        linked = []
        for record in records:
            (linked if record.customer_id in customer_pks else result.orphans).append(record)
        stored = self._stored(linked, customer_pks)
        new, changed = [], []
        for record in linked:
            row = stored.get(_row_key(record, customer_pks))
            if row is None:
                new.append(record)
            elif row.read_at and record.read_at and row.read_at > record.read_at:
                result.kept.append(row.pk)
            elif row.raw_hash == record.raw_hash and not row.deleted:
                result.unchanged.append(row.pk)
            else:
                changed.append((record, row))
        entities = self._entities()
        created = entities.bulk_create([
            Entity(env=self.env, customer_id=customer_pks[record.customer_id], **_row_values(record, now))
            for record in new
        ])
        result.created = [entity.pk for entity in created]
        with connections[self.using].cursor() as cursor:
            if changed:
                updates = [Entity(pk=row.pk, **_row_values(record, now)) for record, row in changed]
                entities.bulk_update(updates, [*_ROW_FIELDS, "raw", "raw_hash", "synced_at", "deleted_at",
                                               "read_at"])
                result.updated = [row.pk for _, row in changed]
                for model in _CHILD_MODELS.values():
                    self._bulk.delete_children(cursor, model, result.updated, owner="entity")
            written = list(zip(result.created, new, strict=True)) + [(row.pk, r) for r, row in changed]
            for attribute, model in _CHILD_MODELS.items():
                rows = [(pk, *self._times(attribute, values)) for pk, record in written
                        for values in record.children[attribute]]
                if rows:
                    self._bulk.insert_children(cursor, model, CHILD_FIELDS[attribute], rows, owner="entity")
        return result

    def _times(self, attribute: str, values: tuple) -> tuple:
        """A child row's values with its times in this database's form."""
        if self.form.time_style is not None:
            return values  # parsed in that form (``parse_entity(form=...)``)
        positions = _TIME_POSITIONS[attribute]
        return tuple(self._adapt_time(v) if i in positions and isinstance(v, datetime) else v
                     for i, v in enumerate(values))

    def customer_pks(self, customer_ids: Iterable[str]) -> dict[str, int]:
        """The mirror's customers (present or not) of these Autumn ids, by id."""
        ids = list(customer_ids)
        found: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            found.update(Customer.objects.using(self.using).filter(
                env=self.env, autumn_id__in=ids[start:start + 500]).values_list("autumn_id", "pk"))
        return found

    def pks_of(self, keys: Iterable[EntityKey]) -> list[int]:
        """The mirror's entities of these keys (``(customer id, entity id)``): a record that
        was skipped still stands for its row, which must not be taken for deleted."""
        wanted = {key for key in keys if key is not None and key[1] is not None}
        if not wanted:
            return []
        rows = self._entities().filter(
            env=self.env, customer__autumn_id__in={key[0] for key in wanted},
            autumn_id__in={key[1] for key in wanted},
        ).values_list("pk", "customer__autumn_id", "autumn_id")
        return [pk for pk, customer_id, autumn_id in rows if (customer_id, autumn_id) in wanted]

    def mark_deleted(self, pks: Iterable[int], *, now: datetime) -> int:
        """Mark these entities gone from Autumn; returns how many were present."""
        return self._entities().filter(pk__in=list(pks), deleted_at__isnull=True).update(deleted_at=now)

    def _entities(self):
        return Entity.objects.using(self.using)

    def _stored(self, records: list[EntityRecord], customer_pks: dict[str, int]) -> dict[tuple, _Stored]:
        with_id = [record.autumn_id for record in records if record.autumn_id is not None]
        idless = [record.values["created_at"] for record in records if record.autumn_id is None]
        wanted = {customer_pks[record.customer_id] for record in records}
        conditions = Q()
        if with_id:
            conditions |= Q(autumn_id__in=with_id)
        if idless:
            conditions |= Q(autumn_id__isnull=True, created_at__in=idless)
        if not conditions:
            return {}
        rows = self._entities().filter(conditions, customer_id__in=wanted).values_list(
            "pk", "customer_id", "autumn_id", "created_at", "name", "raw_hash", "deleted_at", "read_at")
        stored = {}
        for pk, customer_pk, autumn_id, created_at, name, raw_hash, deleted_at, read_at in rows:
            key = (customer_pk, autumn_id) if autumn_id is not None else (customer_pk, None, created_at, name)
            stored[key] = _Stored(pk, raw_hash, deleted_at is not None, read_at)
        return stored


def _row_key(record: EntityRecord, customer_pks: dict[str, int]) -> tuple:
    customer_pk = customer_pks[record.customer_id]
    if record.autumn_id is not None:
        return (customer_pk, record.autumn_id)
    return (customer_pk, None, record.values["created_at"], record.values["name"])


def _row_values(record: EntityRecord, now: datetime) -> dict[str, Any]:
    return {**record.values, "raw": record.raw, "raw_hash": record.raw_hash, "synced_at": now,
            "deleted_at": None, "read_at": record.read_at or now}
