"""What the sync writes for entities: ``entities.list`` objects into ``Entity`` rows and
their subscriptions, purchases, balances and flags (the customer's child models, linked
through ``entity``). Reading an object into an ``EntityRecord`` is ``pages.entityrecords``'
(it runs in the prefetch child too); child rows are built only for an entity the mirror
does not hold as it is.

The rules are the customers': an unchanged entity (same JSON) is not written; data read
earlier never overwrites data read later (``read_at``: ``entities.list`` reads a replica,
the list filtered by customer the primary), a rule the UPDATE itself applies; a record
that cannot be parsed is skipped and reported, and only a record that cannot be keyed at
all can hide a mirrored entity. The SQL is in ``entity_sql``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction

from ..models import Balance, Entity, Flag, Purchase, Subscription
from .bulk import BulkWriter, Rows
from .entity_sql import EntitySQL, StoredEntity
from .pages.copytext import in_pieces
from .pages.entityrecords import EntityKey, EntityRecord
from .pages.fingerprints import Fingerprints, state_fingerprint
from .pages.records import CHILD_FIELDS, TIME_FIELDS, RecordError, RowForm
from .writer import time_adapter

# An entity's kinds of child rows (``CHILD_KINDS``' order) and their models.
_CHILD_MODELS = {"subscriptions": Subscription, "purchases": Purchase, "balances": Balance,
                 "flags": Flag}
_TIME_POSITIONS = {attribute: {i for i, name in enumerate(fields) if name in TIME_FIELDS}
                   for attribute, fields in CHILD_FIELDS.items()}
# A page whose new entities someone else stored meanwhile is planned again; twice in a row
# would take a writer racing this one entity by entity.
_PLAN_ATTEMPTS = 3


@dataclass
class EntityWriteResult:
    created: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)  # undeleted ones too
    unchanged: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)  # the row holds data read later
    # Records whose customer the mirror does not hold (yet): not written.
    orphans: list[EntityRecord] = field(default_factory=list)
    # New or changed records whose child rows could not be parsed: not written, their
    # rows (if any) left as they were.
    problems: list[RecordError] = field(default_factory=list)

    @property
    def seen(self) -> list[int]:
        return self.created + self.updated + self.unchanged + self.kept


class EntityWriter:
    """Writes entities of one env; call ``write`` inside a transaction.

    Entity rows and their child rows go through hand-written SQL (``entity_sql``, the
    customers' ``bulk``): through the ORM, ``bulk_create``'s per-value preparation of an
    entity page took 0.4 s on SQLite (10,000 entities: 4.3 of a 15.9 s pass under
    cProfile), and its child rows 3 ms an entity. Parse records' children in its ``form``
    to hand their times over as the database takes them."""

    def __init__(self, env: str, using: str = DEFAULT_DB_ALIAS) -> None:
        self.env, self.using = env, using
        connection = connections[using]
        self._bulk = BulkWriter.for_connection(connection)
        time_style, self._adapt_time = time_adapter(connection)
        # On PostgreSQL with psycopg 3 (and times parsed as its text), child rows are COPY
        # text, built where they are parsed (ahead, on the fetching thread): psycopg's
        # write_row took 0.9 s of the writer's thread for 10,000 entities' 105,000 rows.
        self.form = RowForm(time_style, copy_text=self._bulk.takes_copy_text and time_style is not None)
        self._sql = EntitySQL(self._bulk, self._adapt_time)

    def write(self, records: Sequence[EntityRecord], *, now: datetime) -> EntityWriteResult:
        records = list({record.key: record for record in records}.values())
        for attempt in range(_PLAN_ATTEMPTS):
            try:
                with transaction.atomic(using=self.using):  # a savepoint: a failed attempt writes nothing
                    return self._write(records, now)
            except (IntegrityError, connections[self.using].Database.IntegrityError):
                # Someone (a refresh of one customer) stored one of the new entities after
                # the lookup: look again; it is then an update, under the read_at rule.
                # (COPY goes through psycopg's own cursor: its error is not Django's.)
                if attempt == _PLAN_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _write(self, records: list[EntityRecord], now: datetime) -> EntityWriteResult:
        result = EntityWriteResult()
        with connections[self.using].cursor() as cursor:
            customer_pks = self._sql.customer_pks(cursor, self.env, {r.customer_id for r in records})
            linked = []
            for record in records:
                (linked if record.customer_id in customer_pks else result.orphans).append(record)
            stored = self._sql.stored(cursor, [(customer_pks[r.customer_id], r) for r in linked])
            new: list[EntityRecord] = []
            changed: list[tuple[EntityRecord, StoredEntity]] = []
            for record in linked:
                row = stored.get(_row_key(record, customer_pks))
                if row is not None and row.raw_hash == record.raw_hash and not row.deleted:
                    result.unchanged.append(row.pk)
                elif self._parsed(record, result):
                    if row is None:
                        new.append(record)
                    else:
                        changed.append((record, row))
            synced = self._adapt_time(now)
            if new:
                pks = self._sql.insert(cursor, self.env, [
                    (customer_pks[record.customer_id], record, self._read_at(record, now)) for record in new
                ], synced)
                result.created = [pks[_row_key(record, customer_pks)] for record in new]
            written = list(zip(result.created, new, strict=True))
            for record, row in changed:
                if self._sql.update(cursor, row.pk, record, self._read_at(record, now), synced):
                    result.updated.append(row.pk)
                    written.append((row.pk, record))
                else:  # the row holds data read later: left as it is, children and all
                    result.kept.append(row.pk)
            for model in _CHILD_MODELS.values():
                self._bulk.delete_children(cursor, model, result.updated, owner="entity")
            for attribute, model in _CHILD_MODELS.items():
                if not any(record.children[attribute] for _, record in written):  # type: ignore[index]
                    continue
                rows: Rows
                if self.form.copy_text:
                    rows = in_pieces(f"{pk}\t{line}\n" for pk, record in written
                                     for line in record.children[attribute])  # type: ignore[index]
                else:
                    rows = [(pk, *self._times(attribute, values)) for pk, record in written
                            for values in record.children[attribute]]  # type: ignore[index]
                self._sql.insert_children(cursor, model, CHILD_FIELDS[attribute], rows)
        return result

    def _parsed(self, record: EntityRecord, result: EntityWriteResult) -> bool:
        try:
            record.parse_children(self.form)
        except RecordError as exc:
            result.problems.append(exc)
            return False
        return True

    def _read_at(self, record: EntityRecord, now: datetime) -> Any:
        return self._adapt_time(record.read_at or now)

    def _times(self, attribute: str, values: tuple) -> tuple:
        """A child row's values with its times in this database's form."""
        if self.form.time_style is not None:
            return values  # parsed in that form (``parse_children(form)``)
        positions = _TIME_POSITIONS[attribute]
        return tuple(self._adapt_time(v) if i in positions and isinstance(v, datetime) else v
                     for i, v in enumerate(values))

    def state_fingerprints(self) -> Fingerprints:
        """What the mirror holds of every present entity of the env, in 8 bytes each (the
        first half of its JSON's hash, which holds its customer's id and its own)."""
        found = Fingerprints()
        with connections[self.using].cursor() as cursor:
            hashes = self._sql.present_hashes(cursor, self.env)
            found.add_many(state_fingerprint(raw_hash) for raw_hash in hashes)
        return found

    def customer_pks(self, customer_ids: Iterable[str]) -> dict[str, int]:
        """The mirror's customers (present or not) of these Autumn ids, by id."""
        with connections[self.using].cursor() as cursor:
            return self._sql.customer_pks(cursor, self.env, set(customer_ids))

    def pks_of(self, keys: Iterable[EntityKey | None]) -> list[int]:
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


def _row_key(record: EntityRecord, customer_pks: dict[str, int]) -> tuple:
    """The record's key with its customer's primary key for its Autumn id (``entity_sql``'s
    ``stored`` keys rows so)."""
    customer_pk = customer_pks[record.customer_id]
    if record.autumn_id is not None:
        return (customer_pk, record.autumn_id)
    return (customer_pk, None, record.values["created_at"], record.values["name"])
