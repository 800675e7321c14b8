"""The SQL of the entities writer (``entities.EntityWriter``): ``Entity`` rows looked up,
inserted and updated without the ORM, as ``bulk`` does for customers and every child row.

Why: the ORM's per-value preparation (``bulk_create`` of a 1,000-entity page with its
JSON took 0.4 s on SQLite) and its lookups' datetime conversions cost more than the
database's own work. Table and column names come from ``Entity._meta``; every value is a
parameter (hence the ``noqa: S608``: the f-strings hold only quoted names). What each
backend does fastest: on SQLite one statement run by ``executemany``; on PostgreSQL with
psycopg 3, ``COPY`` and array parameters (``= ANY``) rather than a list of thousands of
values that Django's client-side binding quotes one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import models

from ..models import Entity
from .bulk import BulkWriter, Rows, chunks

if TYPE_CHECKING:
    from .entities import EntityRecord

# The columns an inserted row gets, in this order (``customer`` is the customer's pk).
_INSERT_FIELDS = ("env", "customer", "autumn_id", "name", "feature_id", "created_at", "raw", "raw_hash",
                  "synced_at", "deleted_at", "read_at")


# Child rows in one INSERT on SQLite (fewer where its parameter limit says so).


@dataclass(slots=True)
class StoredEntity:
    pk: int
    raw_hash: str
    deleted: bool


class EntitySQL:
    """Entity rows of one connection, through ``bulk``'s connection and its backend's ways."""

    def __init__(self, bulk: BulkWriter, adapt_time: Callable[[Any], Any]) -> None:
        self.bulk, self.adapt_time = bulk, adapt_time
        self.connection = bulk.connection
        self.postgres = self.connection.vendor == "postgresql"
        qn, meta = bulk.qn, Entity._meta
        self.table = qn(meta.db_table)
        self.col = {f.name: qn(f.column) for f in meta.concrete_fields}
        self.alias = self.connection.alias
        col = self.col
        values = self._values(_INSERT_FIELDS)
        columns = ", ".join(col[n] for n in _INSERT_FIELDS)
        self._insert_sql = f"INSERT INTO {self.table} ({columns}) VALUES ({values})"  # noqa: S608 - names
        self._copy_columns = columns
        updated = ("autumn_id", "name", "feature_id", "created_at", "raw", "raw_hash", "synced_at", "read_at")
        assignments = ", ".join(f"{col[n]} = {mark}" for n, mark in zip(
            updated, self._values(updated).split(", "), strict=True))
        # The stored row is replaced only if it holds data read no later than the record's
        # (a refresh that committed meanwhile is not overwritten by an older page); a row
        # written before read times were kept (read_at null) always is.
        read_at = col["read_at"]
        self._update_sql = (f"UPDATE {self.table} SET {assignments}, {col['deleted_at']} = NULL "  # noqa: S608
                            f"WHERE {col['id']} = %s AND ({read_at} IS NULL OR {read_at} <= %s)")

    def _values(self, names: Sequence[str]) -> str:
        """Placeholders; on PostgreSQL a JSON one says so (the psycopg2 fallback and the
        UPDATE send JSON as text). Not on SQLite: CAST(... AS json) there is a number."""
        fields = [Entity._meta.get_field(n) for n in names]
        return ", ".join(f"CAST(%s AS {f.db_type(self.connection)})"
                         if self.postgres and isinstance(f, models.JSONField) else "%s" for f in fields)

    # -- reading --------------------------------------------------------------------------

    def present_hashes(self, cursor, env: str) -> Iterator[str]:
        """The stored JSON hash of every present entity of ``env``."""
        col = self.col
        cursor.execute(f"SELECT {col['raw_hash']} FROM {self.table} "  # noqa: S608
                       f"WHERE {col['env']} = %s AND {col['deleted_at']} IS NULL", [env])
        while rows := cursor.fetchmany(5000):
            for (raw_hash,) in rows:
                yield raw_hash

    def customer_pks(self, cursor, env: str, customer_ids: set[str]) -> dict[str, int]:
        """The mirror's customers (present or not) of these Autumn ids, by id."""
        rows = self.bulk.stored_by_id(cursor, env, sorted(customer_ids))
        return {autumn_id: pk for pk, autumn_id, *_ in rows}

    def stored(self, cursor, records: Sequence[tuple[int, EntityRecord]]) -> dict[tuple, StoredEntity]:
        """The stored rows of these ``(customer pk, record)``, by ``entities._row_key``."""
        found: dict[tuple, StoredEntity] = {}
        with_id = [(customer_pk, record.autumn_id) for customer_pk, record in records
                   if record.autumn_id is not None]
        for pk, customer_pk, autumn_id, raw_hash, deleted in self._with_ids(cursor, with_id):
            found[(customer_pk, autumn_id)] = StoredEntity(pk, raw_hash, bool(deleted))
        idless = [(customer_pk, record) for customer_pk, record in records if record.autumn_id is None]
        if idless:
            # Rare (entities without an id): the ORM's datetime handling is worth it here.
            rows = Entity.objects.using(self.alias).filter(
                customer_id__in={customer_pk for customer_pk, _ in idless}, autumn_id__isnull=True,
                created_at__in={record.values["created_at"] for _, record in idless},
            ).values_list("pk", "customer_id", "created_at", "name", "raw_hash", "deleted_at")
            for pk, customer_pk, created_at, name, raw_hash, deleted_at in rows:
                key = (customer_pk, None, created_at, name)
                found[key] = StoredEntity(pk, raw_hash, deleted_at is not None)
        return found

    def _with_ids(self, cursor, keys: Sequence[tuple[int, str]]) -> Iterator[tuple]:
        """``(pk, customer pk, autumn id, raw_hash, deleted)`` of the rows of these keys."""
        if not keys:
            return
        col = self.col
        select = (f"SELECT e.{col['id']}, e.{col['customer']}, e.{col['autumn_id']}, "  # noqa: S608
                  f"e.{col['raw_hash']}, e.{col['deleted_at']} IS NOT NULL FROM {self.table} ")
        if self.postgres:
            # Exact pairs, each found through the unique (customer, autumn_id) index.
            cursor.execute(select + f"e JOIN unnest(%s::bigint[], %s::text[]) AS k(c, a) "
                                    f"ON e.{col['customer']} = k.c AND e.{col['autumn_id']} = k.a",
                           [[c for c, _ in keys], [a for _, a in keys]])
            yield from cursor.fetchall()
            return
        # A join with the pairs as a table, for the same index: ``(customer, autumn_id) IN
        # (VALUES ...)`` had SQLite scan the table (37 ms a page at 10,000 entities; 12).
        for chunk in chunks(list(keys), max(1, (self.bulk.max_params - 1) // 2)):
            pairs = ", ".join(["(%s, %s)"] * len(chunk))
            cursor.execute(f"{select}e JOIN (VALUES {pairs}) AS k "
                           f"ON e.{col['customer']} = k.column1 AND e.{col['autumn_id']} = k.column2",
                           [value for pair in chunk for value in pair])
            yield from cursor.fetchall()

    # -- writing --------------------------------------------------------------------------

    def insert(self, cursor, env: str, rows: Sequence[tuple[int, EntityRecord, Any]], synced: Any
               ) -> dict[tuple, int]:
        """Insert ``(customer pk, record, read_at)`` rows (the mirror has none of them);
        their primary keys by ``entities._row_key``. An IntegrityError if one was stored
        meanwhile (the caller's savepoint undoes the rest)."""
        values = [(env, customer_pk, record.autumn_id, record.values["name"], record.values["feature_id"],
                   self.adapt_time(record.values["created_at"]), record.raw_json, record.raw_hash,
                   synced, None, read_at) for customer_pk, record, read_at in rows]
        if self.bulk.takes_copy_text:
            self.bulk._copy(cursor, self.table, self._copy_columns, values)
        else:
            cursor.executemany(self._insert_sql, values)
        stored = self.stored(cursor, [(customer_pk, record) for customer_pk, record, _ in rows])
        return {key: row.pk for key, row in stored.items()}

    def insert_children(self, cursor, model: type[models.Model], names: Sequence[str], rows: Rows) -> None:
        """Child rows of entities (``bulk.insert_children`` with ``owner="entity"``)."""
        self.bulk.insert_children(cursor, model, names, rows, owner="entity")

    def update(self, cursor, pk: int, record: EntityRecord, read_at: Any, synced: Any) -> bool:
        """Replace a stored row's values with the record's, undeleting it; False (nothing
        written) where the row holds data read later than ``read_at``."""
        values = record.values
        cursor.execute(self._update_sql, [
            values["autumn_id"], values["name"], values["feature_id"], self.adapt_time(values["created_at"]),
            record.raw_json, record.raw_hash, synced, read_at, pk, read_at])
        return cursor.rowcount == 1
