"""Bulk row writing for the sync's hot path: the one module that bypasses the ORM.

Why: the ORM's per-value preparation costs ~10 µs a value, which made
``bulk_create(update_conflicts=True)`` 17-33x slower than fetching the data against 6.7-11x
for plain SQL (design.md, "Performance notes", 100,000 customers, 2 cores). Every table
and column name here comes from the models' ``_meta``; every value is a parameter.

Data read earlier never overwrites data read later: every upsert updates a stored row
only where the database finds it holds data read no later (``Customer.read_at``; see
``_upsert_sql`` and ``trust``), in the statement itself, so a refresh committing at the
same moment is never overwritten by an older page, whatever the timing. The upserts say
which rows they inserted or updated (``RETURNING``); the others were left as they were.

Each backend gets what it does fastest, measured with ``benchmarks/run.sh``:
- SQLite: customers by ``executemany`` of one single-row statement (sqlite3 loops over the
  rows in C). Child rows ``CHILD_ROWS_PER_STATEMENT`` to a statement, the rest one by
  one: 24,778 subscription rows took 0.23 s so against 0.38 s by ``executemany`` of one
  row, which gives the GIL up and takes it back at every row; the sync process of a first
  sync of 20,000 customers used 4.75-4.94 CPU-s against 5.66. Statements of one length
  per table keep sqlite3's statement cache small (multi-row statements of varying length
  filled it with up to 128 programs of thousands of parameters each: +91% peak memory
  from 2,000 to 10,000 customers). Upserts run one row at a time, with ``RETURNING``
  (which ``executemany`` cannot give): only changed customers are upserted, a few per
  page after the first sync, whose new customers are plain inserts.
- PostgreSQL: ``COPY`` (psycopg 3). New customers go straight into the table, changed
  ones into a temporary staging table and then one ``INSERT ... SELECT ... ON CONFLICT
  DO UPDATE RETURNING``; children by ``COPY`` too. Rows come as COPY text formatted in the
  prefetch process (``copytext``). Django's psycopg cursors bind parameters on the client,
  quoting each value in Python, which made the multi-row-VALUES path 20x fetch-only on
  10,000 customers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from django.db import IntegrityError, models, transaction

from ..models import Customer

Key = tuple[str, str]
# Rows: sequences of values, or (where takes_copy_text) their PostgreSQL COPY text, given
# as an iterator of pieces (copytext.in_pieces).
Rows = Sequence[Sequence[Any]] | Iterator[str]
# SQLite: child rows inserted by one statement (see the module's docstring).
CHILD_ROWS_PER_STATEMENT = 500


class AppearedMeanwhile(Exception):
    """A customer looked up as new was stored by someone else (a signup's
    ``get_or_create``) before it could be inserted; nothing was written."""


class BulkWriter:
    """Row-level SQL for one connection; ``for_connection`` picks the backend's subclass."""

    def __init__(self, connection) -> None:
        self.connection = connection
        self.qn = connection.ops.quote_name
        self.max_params = _max_query_params(connection)
        meta = Customer._meta
        self.customer_table = self.qn(meta.db_table)
        self.col = {f.name: self.qn(f.column) for f in meta.concrete_fields}

    takes_copy_text = False  # rows may be given as COPY text (copytext)

    @staticmethod
    def for_connection(connection) -> BulkWriter:
        if connection.vendor == "postgresql":
            return PostgresBulkWriter(connection)
        if connection.vendor == "sqlite":
            return SQLiteBulkWriter(connection)
        return BulkWriter(connection)

    # -- reading --------------------------------------------------------------------------

    def stored_by_id(self, cursor, env: str, ids: Sequence[str]) -> Iterator[tuple]:
        """``(pk, autumn_id, raw_hash, deleted_at)`` of these customers."""
        col = self.col
        for chunk in chunks(ids, self.max_params - 1):
            cursor.execute(
                f"SELECT {col['id']}, {col['autumn_id']}, {col['raw_hash']}, {col['deleted_at']} "
                f"FROM {self.customer_table} "
                f"WHERE {col['env']} = %s AND {col['autumn_id']} IN ({marks(len(chunk))})",
                [env, *chunk],
            )
            yield from cursor.fetchall()

    def present_hashes(self, cursor, env: str) -> Iterator[str]:
        """The stored JSON hash of every present customer of ``env``."""
        col = self.col
        cursor.execute(
            f"SELECT {col['raw_hash']} FROM {self.customer_table} "
            f"WHERE {col['env']} = %s AND {col['deleted_at']} IS NULL",
            [env],
        )
        while rows := cursor.fetchmany(5000):
            for (raw_hash,) in rows:
                yield raw_hash

    def read_by_get_between(self, cursor, env: str, ids: Sequence[str], after: Any,
                            until: Any) -> Iterator[tuple]:
        """``(autumn_id, raw_hash, deleted_at)`` of these customers whose stored data was
        read by ``customers.get`` after ``after`` and no later than ``until`` (parameters)."""
        col = self.col
        for chunk in chunks(ids, self.max_params - 3):
            cursor.execute(
                f"SELECT {col['autumn_id']}, {col['raw_hash']}, {col['deleted_at']} "
                f"FROM {self.customer_table} WHERE {col['env']} = %s AND {col['read_via']} = 'get' "
                f"AND {col['read_at']} > %s AND {col['read_at']} <= %s "
                f"AND {col['autumn_id']} IN ({marks(len(chunk))})",
                [env, after, until, *chunk],
            )
            yield from cursor.fetchall()

    # -- writing --------------------------------------------------------------------------

    def claim(self, cursor, claims: Sequence[tuple[str, int]]) -> None:
        """Give id-less rows the id Autumn gave them: ``(autumn_id, pk)`` pairs."""
        cursor.executemany(
            f"UPDATE {self.customer_table} SET {self.col['autumn_id']} = %s WHERE {self.col['id']} = %s",
            claims,
        )

    def reserve_pks(self, cursor, count: int) -> list[int] | None:
        """Primary keys for ``count`` new customers, taken before they are inserted so
        that no lookup follows the insert; None where the database numbers the rows as it
        inserts them (then ``insert_new_customers`` looks them up)."""
        return None

    def insert_new_customers(self, cursor, env: str, names: Sequence[str], rows: Rows,
                             keys: Sequence[Key], pks: Sequence[int] | None = None) -> dict[Key, int]:
        """Insert customers the mirror did not hold when the page was looked up: ``rows``
        of values in ``names`` order (``env`` among them), or their COPY text where
        ``takes_copy_text``; ``keys`` are their record keys, ``pks`` their primary keys
        when reserved (``reserve_pks``; ``id`` is then the first name). Returns the primary
        key of each by its key. Raises ``AppearedMeanwhile``, having written nothing, when
        one was stored since."""
        if not keys:
            return {}
        try:
            with transaction.atomic(using=self.connection.alias):  # a savepoint
                self._insert_customers(cursor, names, rows)
        except (IntegrityError, self.connection.Database.IntegrityError):
            raise AppearedMeanwhile from None
        if pks is not None:
            return dict(zip(keys, pks, strict=True))
        return self.pks_of(cursor, env, keys)

    def _insert_customers(self, cursor, names: Sequence[str], rows: Rows) -> None:
        cursor.executemany(
            f"INSERT INTO {self.customer_table} ({self._columns(Customer, names)}) "
            f"{self._placeholders(Customer, names)}",
            rows,
        )

    def upsert_customers(self, cursor, env: str, names: Sequence[str], rows: Rows,
                         keys: Sequence[Key], *, lag_seconds: float) -> dict[Key, int]:
        """Insert or update customers (``rows`` and ``keys`` as for ``insert_new_customers``,
        ``read_at`` and ``read_via`` among the names); returns the primary key of each it
        inserted or updated, by record key. A stored customer whose data was read later, or
        by ``customers.get`` less than ``lag_seconds`` before a list row, is left as it was
        and is not in the answer (``_upsert_sql``)."""
        if not keys:
            return {}
        written: dict[Key, int] = {}
        lag = self._lag_parameter(lag_seconds)
        for kind, kind_rows in _split_by_key_kind(names, rows).items():
            if not kind_rows:
                continue
            sql = self._upsert_sql(names, kind, values=self._placeholders(Customer, names))
            sql += f" RETURNING {self.col['id']}, {self.col[_KEY_FIELDS[kind]]}"
            for row in kind_rows:
                cursor.execute(sql, [*row, lag])
                for pk, key_value in cursor.fetchall():
                    written[(kind, key_value)] = pk
        return written

    def delete_children(self, cursor, model: type[models.Model], owner_pks: Sequence[int],
                        owner: str = "customer") -> None:
        """Delete the rows of ``model`` that belong to these customers (or, with ``owner=
        "entity"``, entities). Customers' and entities' rows share the table, each with the
        other's column NULL (``models``): no ``IN`` list of one matches the other's."""
        table, fk = self.qn(model._meta.db_table), self.qn(model._meta.get_field(owner).column)
        for chunk in chunks(owner_pks, self.max_params):
            cursor.execute(f"DELETE FROM {table} WHERE {fk} IN ({marks(len(chunk))})", chunk)

    def insert_children(self, cursor, model: type[models.Model], names: Sequence[str],
                        rows: Rows, owner: str = "customer") -> None:
        """Rows of ``(owner_pk, *values in names order)``, or their COPY text. The other
        owner's column is left out, so NULL, as the models' one-owner check wants."""
        insert = f"INSERT INTO {self.qn(model._meta.db_table)} ({self._columns(model, [owner, *names])}) "
        width = len(names) + 1
        per = max(1, min(CHILD_ROWS_PER_STATEMENT, self.max_params // width))
        full = len(rows) - len(rows) % per if self.connection.vendor == "sqlite" else 0
        if full:
            one = f"({', '.join(['?'] * width)})"
            sql = insert + f"VALUES {', '.join([one] * per)}"
            # sqlite3's own execute, with its own placeholders: Django's rewrites %s to ? with
            # a regular expression at every call (0.3 s over these long statements for
            # 10,000 entities' rows). Its query log and execute_wrapper do not see them.
            execute = sqlite3.Cursor.execute
            for start in range(0, full, per):
                execute(cursor.cursor, sql, [value for row in rows[start:start + per] for value in row])
        cursor.executemany(insert + f"VALUES ({marks(width)})", rows[full:] if full else rows)

    # -- SQL ------------------------------------------------------------------------------

    def _upsert_sql(self, names: Sequence[str], kind: str, *, values: str) -> str:
        """The upsert of customers keyed by ``kind``; its one parameter after ``values``'
        is the replica-lag margin (``_lag_parameter``).

        A stored row is updated only if it holds data read no later than the new data, and
        a list row never replaces one that ``customers.get`` read less than the margin
        before it: the list's replica may not have caught up yet (``trust``). A row written
        before read times were kept (``read_at`` null) is always updated.
        """
        key_field = _KEY_FIELDS[kind]
        conflict = f"({self.col['env']}, {self.col[key_field]})"
        if kind == "email":
            conflict += f" WHERE {self.col['autumn_id']} IS NULL"
        updates = ", ".join(f"{self.col[n]} = EXCLUDED.{self.col[n]}"
                            for n in names if n not in ("env", key_field))
        read_at, read_via = (f"{self.customer_table}.{self.col['read_at']}",
                             f"{self.customer_table}.{self.col['read_via']}")
        new_read_at, new_read_via = f"EXCLUDED.{self.col['read_at']}", f"EXCLUDED.{self.col['read_via']}"
        return (f"INSERT INTO {self.customer_table} ({self._columns(Customer, names)}) {values} "
                f"ON CONFLICT {conflict} DO UPDATE SET {updates} "
                f"WHERE {read_at} IS NULL OR ({read_at} <= {new_read_at} AND ("
                f"{new_read_via} <> 'list' OR {read_via} <> 'get' "
                f"OR {read_at} < {self._minus_lag(new_read_at)}))")

    def _minus_lag(self, read_at: str) -> str:
        """SQL for the time ``read_at`` (a stored time) less the lag parameter. SQLite keeps
        times as text ("2024-05-01 12:00:00.123456"), which strftime reads and writes."""
        return f"strftime('%%Y-%%m-%%d %%H:%%M:%%f', {read_at}, %s)"

    def _lag_parameter(self, lag_seconds: float) -> Any:
        return f"{-float(lag_seconds)} seconds"  # an SQLite date modifier

    def pks_of(self, cursor, env: str, keys: Sequence[Key]) -> dict[Key, int]:
        ids = [value for kind, value in keys if kind == "id"]
        emails = [value for kind, value in keys if kind == "email"]
        pks: dict[Key, int] = {}
        col = self.col
        for pk, autumn_id, *_ in self.stored_by_id(cursor, env, ids):
            pks[("id", autumn_id)] = pk
        for chunk in chunks(emails, self.max_params - 1):
            cursor.execute(
                f"SELECT {col['id']}, {col['email']} FROM {self.customer_table} WHERE {col['env']} = %s "
                f"AND {col['autumn_id']} IS NULL AND {col['email']} IN ({marks(len(chunk))})",
                [env, *chunk],
            )
            for pk, email in cursor.fetchall():
                pks[("email", email)] = pk
        return pks

    def _columns(self, model: type[models.Model], names: Sequence[str]) -> str:
        return ", ".join(self.qn(model._meta.get_field(n).column) for n in names)

    def _placeholders(self, model: type[models.Model], names: Sequence[str]) -> str:
        return f"VALUES ({marks(len(names))})"


class SQLiteBulkWriter(BulkWriter):
    def reserve_pks(self, cursor, count: int) -> list[int] | None:
        # An AUTOINCREMENT table's last key is in sqlite_sequence, which SQLite lets an
        # UPDATE move on; the UPDATE also takes the write lock, so no other connection
        # inserts until the page commits. Looking the rows up after the insert took 4.5%
        # of the writer's time in a first sync of 100,000 customers (py-spy). A table
        # with no row there yet (nothing ever inserted) numbers its rows as it inserts.
        if not count or not self.connection.features.can_return_columns_from_insert:  # SQLite < 3.35
            return None
        cursor.execute("UPDATE sqlite_sequence SET seq = seq + %s WHERE name = %s RETURNING seq",
                       [count, Customer._meta.db_table])
        row = cursor.fetchone()
        return None if row is None else list(range(row[0] - count + 1, row[0] + 1))


class PostgresBulkWriter(BulkWriter):
    STAGE = "autumn_django_customer_stage"

    def __init__(self, connection) -> None:
        super().__init__(connection)
        # psycopg 3 has COPY; with psycopg2, parameterised statements instead.
        self.takes_copy_text = connection.Database.__name__ == "psycopg"

    def stored_by_id(self, cursor, env: str, ids: Sequence[str]) -> Iterator[tuple]:
        # One array parameter rather than a thousand: Django splits and binds each one.
        if not ids:
            return
        col = self.col
        cursor.execute(
            f"SELECT {col['id']}, {col['autumn_id']}, {col['raw_hash']}, {col['deleted_at']} "
            f"FROM {self.customer_table} WHERE {col['env']} = %s AND {col['autumn_id']} = ANY(%s)",
            [env, list(ids)],
        )
        yield from cursor.fetchall()

    def reserve_pks(self, cursor, count: int) -> list[int] | None:
        # From the table's own sequence, as the inserts would have taken them. Looking the
        # rows up after COPY read each one back from the heap: at 100,000 customers, 3.9 s
        # of the server's time in a first sync (pg_stat_statements), ~35 ms a page.
        if not self.takes_copy_text or not count:
            return None
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                       [Customer._meta.db_table, Customer._meta.pk.column, count])
        return [pk for (pk,) in cursor.fetchall()]

    def _insert_customers(self, cursor, names: Sequence[str], rows: Rows) -> None:
        # COPY straight into the table. The server's cost is that of the staged upsert
        # (the rows themselves: compression, JSON checks and indexes), but a customer
        # stored meanwhile fails the statement rather than being merged into.
        if not self.takes_copy_text:
            return super()._insert_customers(cursor, names, rows)
        self._copy(cursor, self.customer_table, self._columns(Customer, names), rows)
        return None

    def read_by_get_between(self, cursor, env: str, ids: Sequence[str], after: Any,
                            until: Any) -> Iterator[tuple]:
        col = self.col
        cursor.execute(
            f"SELECT {col['autumn_id']}, {col['raw_hash']}, {col['deleted_at']} "
            f"FROM {self.customer_table} WHERE {col['env']} = %s AND {col['read_via']} = 'get' "
            f"AND {col['read_at']} > %s AND {col['read_at']} <= %s AND {col['autumn_id']} = ANY(%s)",
            [env, after, until, list(ids)],
        )
        yield from cursor.fetchall()

    def upsert_customers(self, cursor, env: str, names: Sequence[str], rows: Rows,
                         keys: Sequence[Key], *, lag_seconds: float) -> dict[Key, int]:
        if not keys:
            return {}
        if not self.takes_copy_text:
            return super().upsert_customers(cursor, env, names, rows, keys, lag_seconds=lag_seconds)
        columns = self._columns(Customer, names)
        # A session-private table that empties itself at each commit.
        cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.STAGE} ON COMMIT DELETE ROWS "
                       f"AS SELECT {columns} FROM {self.customer_table} WITH NO DATA")
        cursor.execute(f"TRUNCATE {self.STAGE}")
        self._copy(cursor, self.STAGE, columns, rows)
        pks: dict[Key, int] = {}
        for kind, condition in (("id", "IS NOT NULL"), ("email", "IS NULL")):
            select = f"SELECT {columns} FROM {self.STAGE} WHERE {self.col['autumn_id']} {condition}"
            # Only the rows it inserted or updated come back.
            cursor.execute(self._upsert_sql(names, kind, values=select)
                           + f" RETURNING {self.col['id']}, {self.col[_KEY_FIELDS[kind]]}",
                           [self._lag_parameter(lag_seconds)])
            for pk, key_value in cursor.fetchall():
                pks[(kind, key_value)] = pk
        return pks

    def insert_children(self, cursor, model: type[models.Model], names: Sequence[str],
                        rows: Rows, owner: str = "customer") -> None:
        if not self.takes_copy_text:
            return super().insert_children(cursor, model, names, rows, owner)
        self._copy(cursor, self.qn(model._meta.db_table), self._columns(model, [owner, *names]), rows)

    def _minus_lag(self, read_at: str) -> str:
        return f"{read_at} - %s * INTERVAL '1 second'"

    def _lag_parameter(self, lag_seconds: float) -> Any:
        return float(lag_seconds)

    def _placeholders(self, model: type[models.Model], names: Sequence[str]) -> str:
        # Only for the psycopg2 fallback: JSON arrives as text that must be read as JSON.
        fields = [model._meta.get_field(n) for n in names]
        values = (f"CAST(%s AS {f.db_type(self.connection)})" if isinstance(f, models.JSONField) else "%s"
                  for f in fields)
        return f"VALUES ({', '.join(values)})"

    def _copy(self, cursor, table: str, columns: str, rows: Rows) -> None:
        """COPY rows of values, or their text (``copytext``)."""
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            if isinstance(rows, Iterator):
                for piece in rows:
                    copy.write(piece)
                return
            for row in rows:
                copy.write_row(row)


_KEY_FIELDS = {"id": "autumn_id", "email": "email"}  # the column each kind of key is in


def _split_by_key_kind(names: Sequence[str], rows: Sequence[list[Any]]) -> dict[str, list]:
    """Rows keyed by id, and id-less rows keyed by email: each kind has its own conflict target."""
    id_at = names.index("autumn_id")
    by_kind: dict[str, list] = {"id": [], "email": []}
    for row in rows:
        by_kind["id" if row[id_at] is not None else "email"].append(row)
    return by_kind


def _max_query_params(connection) -> int:
    if connection.vendor == "sqlite":
        import sqlite3

        connection.ensure_connection()
        try:
            return connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        except AttributeError:  # Python < 3.11
            return 999
    return connection.features.max_query_params or 65535


def marks(count: int) -> str:
    return ", ".join(["%s"] * count)


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
