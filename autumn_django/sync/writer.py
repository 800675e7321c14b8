"""The sync's hot write path: parsed customers into mirror rows with plain SQL.

This is the one place the app bypasses the ORM, and it does so on measurement: for a
page of 1,000 customers (about 5,000 rows) the ORM's per-value preparation costs ~10 µs a
value, which made ``bulk_create(update_conflicts=True)`` 17-33x slower than just fetching
the data, against 6.7-11x for parameterised multi-row SQL (design.md, "Performance
notes", 100,000 customers on 2 cores). Table and column names all come from the models'
``_meta``; nothing here types a column name twice.

Per page, inside the caller's transaction:
1. load the stored hash of every customer on the page (one query by id, one by email
   for id-less customers and for claims);
2. customers whose hash is unchanged are not written at all;
3. new and changed customers are upserted (``INSERT ... ON CONFLICT DO UPDATE``, so a
   row written meanwhile by a signup is updated, not duplicated), undeleting them;
4. the children of changed customers are replaced; new customers have none to delete.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.utils import timezone

from ..models import Balance, Customer, Flag, Purchase, Subscription
from .records import (
    BALANCE_FIELDS,
    CUSTOMER_FIELDS,
    FLAG_FIELDS,
    PURCHASE_FIELDS,
    SUBSCRIPTION_FIELDS,
    CustomerRecord,
)

# Columns every upsert writes besides CUSTOMER_FIELDS.
_BOOKKEEPING_FIELDS = ("env", "raw", "raw_hash", "synced_at", "deleted_at")
_CHILDREN = (
    (Subscription, SUBSCRIPTION_FIELDS, "subscriptions"),
    (Purchase, PURCHASE_FIELDS, "purchases"),
    (Balance, BALANCE_FIELDS, "balances"),
    (Flag, FLAG_FIELDS, "flags"),
)


@dataclass
class WriteResult:
    created: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    undeleted: list[int] = field(default_factory=list)  # also counted in ``updated``
    unchanged: list[int] = field(default_factory=list)
    pk_by_key: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass
class _Existing:
    pk: int
    raw_hash: str
    deleted: bool


class MirrorWriter:
    """Writes customers of one env. Build it once per run: it prepares its SQL up front."""

    def __init__(self, env: str, using: str = DEFAULT_DB_ALIAS) -> None:
        self.env = env
        self.connection = connections[using]
        self._qn = self.connection.ops.quote_name
        self._is_postgres = self.connection.vendor == "postgresql"
        self._adapt_time = _datetime_adapter(self.connection)
        self._max_params = _max_query_params(self.connection)
        meta = Customer._meta
        self._customer_table = self._qn(meta.db_table)
        self._col = {f.name: self._qn(f.column) for f in meta.concrete_fields}

    # -- public -----------------------------------------------------------------------

    def write(self, records: Sequence[CustomerRecord], *, now: datetime,
              before_replace: Callable[[list[int]], None] | None = None) -> WriteResult:
        """Bring these customers' rows in line with ``records``. Call inside a transaction.

        ``before_replace`` is called with the primary keys of changed customers before
        their children are replaced (to read what they were).
        """
        records = list({r.key: r for r in records}.values())  # a page never repeats a key
        result = WriteResult()
        existing, claims = self._load_existing(records)
        to_write: list[tuple[CustomerRecord, _Existing | None]] = []
        for record in records:
            row = existing.get(record.key)
            if row is not None and row.raw_hash == record.raw_hash and not row.deleted:
                result.unchanged.append(row.pk)
                result.pk_by_key[record.key] = row.pk
            else:
                to_write.append((record, row))
        with self.connection.cursor() as cursor:
            if claims:
                # An id-less customer that Autumn gave an id keeps its row (and user link).
                cursor.executemany(
                    f"UPDATE {self._customer_table} SET {self._col['autumn_id']} = %s "
                    f"WHERE {self._col['id']} = %s",
                    claims,
                )
            written = self._upsert_customers(cursor, [r for r, _ in to_write], now)
            for record, row in to_write:
                pk = written[record.key]
                result.pk_by_key[record.key] = pk
                if row is None:
                    result.created.append(pk)
                else:
                    result.updated.append(pk)
                    if row.deleted:
                        result.undeleted.append(pk)
            if before_replace is not None:
                before_replace([row.pk for _, row in to_write if row is not None])
            self._replace_children(cursor, to_write, written)
        return result

    def pks_for(self, keys: Iterable[tuple[str, str]]) -> list[int]:
        """The stored rows of these customers, if any (records that failed to parse are
        still seen: their rows stay as they were and must not be taken for deleted)."""
        existing, _ = self._load_existing_keys(list(keys), ())
        return [row.pk for row in existing.values()]

    def mark_missing_deleted(self, seen: set[int], *, pass_started_at: datetime,
                             crawled_after: datetime | None, now: datetime) -> list[int]:
        """After a completed pass: present customers it did not see are gone from Autumn.

        Only customers in the part of the key space this attempt crawled are judged
        (``created_at`` after ``crawled_after``, the point a resumed attempt started from;
        an earlier attempt's sightings died with its process). Rows written after the pass
        began (a signup's ``get_or_create``) are spared: the crawl may have passed their
        place before they existed. Seen customers are never rewritten to say so.
        """
        present = Customer.objects.using(self.connection.alias).filter(
            env=self.env, deleted_at__isnull=True, synced_at__lt=pass_started_at)
        if crawled_after is not None:
            present = present.filter(created_at__gt=crawled_after)
        missing = [pk for pk in present.values_list("pk", flat=True).iterator(chunk_size=5000)
                   if pk not in seen]
        for chunk in _chunks(missing, self._max_params - 1):
            Customer.objects.using(self.connection.alias).filter(pk__in=chunk).update(deleted_at=now)
        return missing

    # -- reading what is stored -----------------------------------------------------------

    def _load_existing(self, records: Sequence[CustomerRecord]
                       ) -> tuple[dict[tuple[str, str], _Existing], list[tuple[str, int]]]:
        keys = [r.key for r in records]
        # Emails of id'd customers not yet mirrored under their id: they may be claims of
        # an id-less row. Which those are is only known after the id lookup, so look up all.
        claim_candidates = [r for r in records if r.key[0] == "id" and r.email]
        existing, idless = self._load_existing_keys(keys, [r.email for r in claim_candidates])
        claims: list[tuple[str, int]] = []
        matched_idless = {k for k in existing if k[0] == "email"}
        for record in claim_candidates:
            candidate = idless.get(record.email)
            if (record.key not in existing and candidate is not None
                    and ("email", record.email) not in matched_idless
                    and candidate[1] == record.created_at):
                # Same email and same creation instant: Autumn's claim of an id-less
                # customer (it keeps everything but gains the id).
                row = candidate[0]
                existing[record.key] = row
                matched_idless.add(("email", record.email))
                claims.append((record.autumn_id, row.pk))
        return existing, claims

    def _load_existing_keys(self, keys: Sequence[tuple[str, str]], extra_emails: Sequence[str]):
        ids = [value for kind, value in keys if kind == "id"]
        emails = [value for kind, value in keys if kind == "email"] + list(extra_emails)
        existing: dict[tuple[str, str], _Existing] = {}
        idless: dict[str, tuple[_Existing, datetime]] = {}
        col = self._col
        with self.connection.cursor() as cursor:
            for chunk in _chunks(ids, self._max_params - 1):
                cursor.execute(
                    f"SELECT {col['id']}, {col['autumn_id']}, {col['raw_hash']}, "
                    f"{col['deleted_at']} FROM {self._customer_table} "
                    f"WHERE {col['env']} = %s AND {col['autumn_id']} IN ({_marks(len(chunk))})",
                    [self.env, *chunk],
                )
                for pk, autumn_id, raw_hash, deleted_at in cursor.fetchall():
                    existing[("id", autumn_id)] = _Existing(pk, raw_hash, deleted_at is not None)
        if emails:
            # Rare (id-less customers and claims): the ORM's datetime handling is worth it.
            for chunk in _chunks(sorted(set(emails)), self._max_params - 1):
                rows = Customer.objects.filter(
                    env=self.env, autumn_id__isnull=True, email__in=chunk
                ).values_list("pk", "email", "raw_hash", "deleted_at", "created_at")
                for pk, email, raw_hash, deleted_at, created_at in rows:
                    idless[email] = (_Existing(pk, raw_hash, deleted_at is not None), created_at)
            for kind, value in keys:
                if kind == "email" and value in idless:
                    existing[(kind, value)] = idless[value][0]
        return existing, idless

    # -- writing --------------------------------------------------------------------------

    def _upsert_customers(self, cursor, records: Sequence[CustomerRecord],
                          now: datetime) -> dict[tuple[str, str], int]:
        """Insert or update these customers; returns their primary keys by record key."""
        names = list(CUSTOMER_FIELDS) + list(_BOOKKEEPING_FIELDS)
        synced = self._adapt_time(now)
        rows_by_kind: dict[str, list[list[Any]]] = {"id": [], "email": []}
        for record in records:
            values = [record.values[name] for name in CUSTOMER_FIELDS]
            values[CUSTOMER_FIELDS.index("created_at")] = self._adapt_time(record.created_at)
            values += [self.env, record.raw_json, record.raw_hash, synced, None]
            rows_by_kind[record.key[0]].append(values)
        pks: dict[tuple[str, str], int] = {}
        for kind, rows in rows_by_kind.items():
            if not rows:
                continue
            key_field = "autumn_id" if kind == "id" else "email"
            conflict = f"({self._col['env']}, {self._col[key_field]})"
            if kind == "email":
                conflict += f" WHERE {self._col['autumn_id']} IS NULL"
            updates = ", ".join(f"{self._col[n]} = EXCLUDED.{self._col[n]}"
                                for n in names if n not in ("env", key_field))
            placeholders = self._placeholders(Customer, names)
            prefix = (f"INSERT INTO {self._customer_table} "
                      f"({', '.join(self._col[n] for n in names)}) VALUES ")
            suffix = (f" ON CONFLICT {conflict} DO UPDATE SET {updates} "
                      f"RETURNING {self._col['id']}, {self._col[key_field]}")
            for chunk in _chunks(rows, max(1, self._max_params // len(names))):
                cursor.execute(prefix + ", ".join([placeholders] * len(chunk)) + suffix,
                               [value for row in chunk for value in row])
                for pk, key_value in cursor.fetchall():
                    pks[(kind, key_value)] = pk
        return pks

    def _replace_children(self, cursor, to_write, written: dict[tuple[str, str], int]) -> None:
        stale = [written[record.key] for record, row in to_write if row is not None]
        for model, fields, attribute in _CHILDREN:
            table = self._qn(model._meta.db_table)
            fk = self._qn(model._meta.get_field("customer").column)
            for chunk in _chunks(stale, self._max_params):
                cursor.execute(f"DELETE FROM {table} WHERE {fk} IN ({_marks(len(chunk))})", chunk)
            time_positions = [i for i, name in enumerate(fields)
                              if isinstance(model._meta.get_field(name), models.DateTimeField)]
            rows = []
            for record, _ in to_write:
                pk = written[record.key]
                for child in getattr(record, attribute):
                    values = list(child)
                    for i in time_positions:
                        values[i] = self._adapt_time(values[i])
                    rows.append([pk, *values])
            if not rows:
                continue
            columns = [fk] + [self._qn(model._meta.get_field(n).column) for n in fields]
            placeholders = "(%s, " + self._placeholders(model, fields)[1:]
            prefix = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
            for chunk in _chunks(rows, max(1, self._max_params // len(columns))):
                cursor.execute(prefix + ", ".join([placeholders] * len(chunk)),
                               [value for row in chunk for value in row])

    def _placeholders(self, model: type[models.Model], names: Sequence[str]) -> str:
        """``(%s, %s, ...)``; JSON arrives as text, which PostgreSQL must be told is jsonb."""
        marks = []
        for name in names:
            is_json = isinstance(model._meta.get_field(name), models.JSONField)
            marks.append("CAST(%s AS jsonb)" if is_json and self._is_postgres else "%s")
        return "(" + ", ".join(marks) + ")"


def _datetime_adapter(connection):
    """How this backend wants a datetime parameter (SQLite: naive UTC text)."""
    adapt = connection.ops.adapt_datetimefield_value
    if settings.USE_TZ:
        return adapt
    return lambda value: adapt(timezone.make_naive(value)) if value is not None else None


def _max_query_params(connection) -> int:
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        try:
            return connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        except AttributeError:  # Python < 3.11
            return 999
    return connection.features.max_query_params or 65535


def _marks(count: int) -> str:
    return ", ".join(["%s"] * count)


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
