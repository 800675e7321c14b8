"""What the sync writes: parsed customers into mirror rows, one page at a time.

Per page, inside the caller's transaction:
1. load the stored hash of the page's customers (one query by id; id-less customers and
   claims by email), unless the mirror held none of the env's customers when the writer
   was built (a first sync: every customer is new until an insert finds otherwise);
2. customers whose hash is unchanged are not written at all;
3. new customers are inserted; should one have been stored since step 1 (a signup's),
   nothing is written and the page is looked up again;
4. changed customers are upserted (``INSERT ... ON CONFLICT DO UPDATE``), undeleting them,
   except where the stored row holds data read later: the database leaves those as they
   are (``bulk``; the rules are in ``trust``), and they are counted as kept, not updated;
5. the children of the customers written are replaced; new customers have none to delete.

Each row records when its data was read from Autumn and through which call
(``Customer.read_at``, ``read_via``): the record's, or the write's time for a record
that does not say.

The SQL itself, and why it bypasses the ORM, is in ``bulk.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Q
from django.utils import timezone

from ..conf import autumn_settings
from ..models import Balance, Customer, Flag, License, Purchase, Subscription
from .bulk import AppearedMeanwhile, BulkWriter, Rows, chunks
from .pages.copytext import NULL, copy_line, copy_value, in_pieces
from .pages.fingerprints import Fingerprints, key_fingerprint, state_fingerprint
from .pages.records import (
    BALANCE_FIELDS,
    CUSTOMER_FIELDS,
    FLAG_FIELDS,
    LICENSE_FIELDS,
    PURCHASE_FIELDS,
    SUBSCRIPTION_FIELDS,
    CustomerRecord,
    RowForm,
    convert_times,
    customer_copy_line,
)
from .pages.timeforms import EPOCH, TIME_FORMS

ONE_MS = timedelta(milliseconds=1)

# Columns every upsert writes besides CUSTOMER_FIELDS.
_BOOKKEEPING_FIELDS = ("raw", "raw_hash", "env", "synced_at", "deleted_at", "read_at", "read_via")
_CHILDREN = (
    (Subscription, SUBSCRIPTION_FIELDS, "subscriptions"),
    (Purchase, PURCHASE_FIELDS, "purchases"),
    (Balance, BALANCE_FIELDS, "balances"),
    (Flag, FLAG_FIELDS, "flags"),
    (License, LICENSE_FIELDS, "licenses"),
)


@dataclass
class WriteResult:
    created: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    undeleted: list[int] = field(default_factory=list)  # also counted in ``updated``
    unchanged: list[int] = field(default_factory=list)
    # Rows holding data read later than the record's (or by customers.get less than the
    # replica-lag margin before a list row): left as they were, children and all.
    kept: list[int] = field(default_factory=list)
    pk_by_key: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass
class _Existing:
    pk: int
    raw_hash: str
    deleted: bool


@dataclass
class _Plan:
    result: WriteResult  # with the unchanged customers
    new: list[CustomerRecord]  # not in the mirror
    changed: list[tuple[CustomerRecord, _Existing]]  # in it, with other JSON, or deleted
    claims: list[tuple[str, int]]  # (autumn_id, pk) of id-less rows Autumn gave an id


class MirrorWriter:
    """Writes customers of one env. Build it once per run: it prepares its SQL up front."""

    def __init__(self, env: str, using: str = DEFAULT_DB_ALIAS) -> None:
        self.env = env
        self.connection = connections[using]
        self._bulk = BulkWriter.for_connection(self.connection)
        time_style, self._adapt_time = time_adapter(self.connection)
        # Whether child rows go to the database as COPY text (PostgreSQL with psycopg 3).
        # The form records are parsed into for this database: times as it takes them, and
        # on PostgreSQL with psycopg 3 a customer's rows as COPY text.
        self.form = RowForm(time_style, copy_text=self._bulk.takes_copy_text)
        self.lag_seconds = autumn_settings.SYNC_REPLICA_LAG_SECONDS
        customers = Customer.objects.using(using).filter(env=env)
        # Into a mirror that held none of the env's customers (a first sync), a page's
        # customers are inserted without looking them up first: the crawl reads each once,
        # and one stored meanwhile (a signup's, or one a page read again) fails the insert,
        # which then looks the page up (``write``). That lookup found nothing but cost
        # PostgreSQL's server 18.5 ms a page (2 s of a first sync of 100,000 customers) and
        # SQLite's writer 4-5% of its time.
        self._mirror_was_empty = not customers.exists()
        # Claims concern id-less rows the mirror held before; with none, skip their lookup
        # (it would look up every page's emails for nothing).
        self._claims_possible = (not self._mirror_was_empty
                                 and customers.filter(autumn_id__isnull=True).exists())

    # -- public -----------------------------------------------------------------------

    def write(self, records: Sequence[CustomerRecord], *, now: datetime,
              before_replace: Callable[[list[int]], None] | None = None) -> WriteResult:
        """Bring these customers' rows in line with ``records``, but where a row holds data
        read later. Call inside a transaction.

        ``before_replace`` is called with the primary keys of changed customers before
        their children are replaced (to read what they were).
        """
        records = list({r.key: r for r in records}.values())  # a page never repeats a key
        for record in records:
            if record.time_style is None:  # not parsed in this writer's form
                convert_times(record, self._adapt_time, self.form.time_style or "database")
            if record.read_at is None:
                record.read_at = now
        names = [*CUSTOMER_FIELDS, *_BOOKKEEPING_FIELDS]
        with self.connection.cursor() as cursor:
            plan = self._plan(records)
            pks = self._bulk.reserve_pks(cursor, len(plan.new))
            try:
                written = self._bulk.insert_new_customers(
                    cursor, self.env, names if pks is None else ["id", *names],
                    self._customer_rows(plan.new, now, pks), _keys(plan.new), pks)
            except AppearedMeanwhile:
                # A signup stored one of them after the lookup, or since the mirror was
                # empty (nothing of this page is written yet): look again, and upsert
                # whatever is still new. Later pages are looked up too.
                self._mirror_was_empty = False
                plan = self._plan(records)
                written = self._upsert(cursor, names, plan.new, now)
            if plan.claims:
                # An id-less customer that Autumn gave an id keeps its row (and owner link).
                self._bulk.claim(cursor, plan.claims)
            changed = [record for record, _ in plan.changed]
            written.update(self._upsert(cursor, names, changed, now))
            result = plan.result
            kept_new = [record.key for record in plan.new if record.key not in written]
            stored = self._bulk.pks_of(cursor, self.env, kept_new) if kept_new else {}
            for record in plan.new:
                if record.key in written:
                    result.created.append(written[record.key])
                else:  # stored meanwhile, with data read later
                    result.kept.append(stored[record.key])
                result.pk_by_key[record.key] = written.get(record.key) or stored[record.key]
            for record, row in plan.changed:
                result.pk_by_key[record.key] = row.pk
                if record.key not in written:
                    result.kept.append(row.pk)
                    continue
                result.updated.append(row.pk)
                if row.deleted:
                    result.undeleted.append(row.pk)
            if before_replace is not None:
                before_replace([row.pk for record, row in plan.changed if record.key in written])
            self._replace_children(cursor, plan, written)
        return result

    def _upsert(self, cursor, names: list[str], records: Sequence[CustomerRecord],
                now: datetime) -> dict[tuple[str, str], int]:
        """Upsert ``records``; the primary key of each one written (the others' stored rows
        hold data read later)."""
        return self._bulk.upsert_customers(cursor, self.env, names, self._customer_rows(records, now),
                                           _keys(records), lag_seconds=self.lag_seconds)

    def _plan(self, records: Sequence[CustomerRecord]) -> _Plan:
        """Which customers are new, changed or unchanged, from what the mirror holds now."""
        plan = _Plan(WriteResult(), [], [], [])
        if self._mirror_was_empty:
            plan.new.extend(records)
            return plan
        existing, plan.claims = self._load_existing(records)
        for record in records:
            row = existing.get(record.key)
            if row is None:
                plan.new.append(record)
            elif row.raw_hash == record.raw_hash and not row.deleted:
                plan.result.unchanged.append(row.pk)
                plan.result.pk_by_key[record.key] = row.pk
            else:
                plan.changed.append((record, row))
        return plan

    def state_fingerprints(self) -> Fingerprints:
        """What the mirror holds of every present customer, in 8 bytes each: the
        prefetcher skips customers whose key and JSON hash are in it."""
        found = Fingerprints()
        with self.connection.cursor() as cursor:
            found.add_many(state_fingerprint(raw_hash)
                           for raw_hash in self._bulk.present_hashes(cursor, self.env))
        return found

    def read_by_get_between(self, records: Sequence[CustomerRecord], after: datetime,
                            until: datetime) -> dict[tuple[str, str], _Existing]:
        """The stored rows of these (id'd) customers whose data ``customers.get`` read after
        ``after`` and no later than ``until``, by key (``pk`` is not looked up: 0)."""
        ids = [record.key[1] for record in records if record.key[0] == "id"]
        found: dict[tuple[str, str], _Existing] = {}
        with self.connection.cursor() as cursor:
            for autumn_id, raw_hash, deleted_at in self._bulk.read_by_get_between(
                    cursor, self.env, ids, self._adapt_time(after), self._adapt_time(until)):
                found[("id", autumn_id)] = _Existing(0, raw_hash, deleted_at is not None)
        return found

    def mark_deleted_by_get(self, autumn_ids: Sequence[str], *, read_at: datetime,
                            now: datetime) -> list[int]:
        """Customers ``customers.get`` answered 404 for, at ``read_at``: see ``mark_deleted_by_get``."""
        return mark_deleted_by_get(self.env, autumn_ids, read_at=read_at, now=now,
                                   using=self.connection.alias)

    def mark_missing_deleted(self, seen: Fingerprints, *, pass_started_at: datetime,
                             judged: Q | None, now: datetime) -> list[int]:
        """After a completed pass: present customers it did not see are gone from Autumn.

        Only customers in the part of the key space this attempt crawled whole are judged
        (``judged``, None: all; a resumed attempt's windows after where they stood, as an
        earlier attempt's sightings died with its process). Rows written after the pass
        began (a signup's ``get_or_create``) are spared: the crawl may have passed their
        place before they existed. So are rows ``customers.get`` read less than the
        replica-lag margin before the pass began: the list's replica may not show them
        yet. Seen customers are never rewritten to say so.
        """
        customers = Customer.objects.using(self.connection.alias)
        present = customers.filter(env=self.env, deleted_at__isnull=True, synced_at__lt=pass_started_at)
        present = present.exclude(read_via="get",
                                  read_at__gt=pass_started_at - timedelta(seconds=self.lag_seconds))
        if judged is not None:
            present = present.filter(judged)
        missing = [
            pk for pk, autumn_id, email in present.values_list("pk", "autumn_id", "email")
            .iterator(chunk_size=5000)
            if key_fingerprint(_row_key(autumn_id, email)) not in seen
        ]
        for chunk in chunks(missing, self._bulk.max_params - 1):
            customers.filter(pk__in=chunk).update(deleted_at=now)
        return missing

    # -- reading what is stored -----------------------------------------------------------

    def _load_existing(self, records: Sequence[CustomerRecord]
                       ) -> tuple[dict[tuple[str, str], _Existing], list[tuple[str, int]]]:
        keys = [r.key for r in records]
        # Emails of id'd customers not yet mirrored under their id: they may be claims of
        # an id-less row. Which those are is only known after the id lookup, so look up all.
        claim_candidates = ([r for r in records if r.key[0] == "id" and r.email]
                            if self._claims_possible else [])
        existing, idless = self._load_existing_keys(keys, [r.email for r in claim_candidates])
        claims: list[tuple[str, int]] = []
        matched_idless = {k for k in existing if k[0] == "email"}
        for record in claim_candidates:
            candidate = idless.get(record.email)
            if (record.key not in existing and candidate is not None
                    and ("email", record.email) not in matched_idless
                    and (candidate[1] - EPOCH) // ONE_MS == record.created_at_ms):
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
        with self.connection.cursor() as cursor:
            for pk, autumn_id, raw_hash, deleted_at in self._bulk.stored_by_id(cursor, self.env, ids):
                existing[("id", autumn_id)] = _Existing(pk, raw_hash, deleted_at is not None)
        if emails:
            # Rare (id-less customers and claims): the ORM's datetime handling is worth it.
            for chunk in chunks(sorted(set(emails)), self._bulk.max_params - 1):
                rows = Customer.objects.using(self.connection.alias).filter(
                    env=self.env, autumn_id__isnull=True, email__in=chunk
                ).values_list("pk", "email", "raw_hash", "deleted_at", "created_at")
                for pk, email, raw_hash, deleted_at, created_at in rows:
                    idless[email] = (_Existing(pk, raw_hash, deleted_at is not None), created_at)
            for kind, value in keys:
                if kind == "email" and value in idless:
                    existing[(kind, value)] = idless[value][0]
        return existing, idless

    # -- writing --------------------------------------------------------------------------

    def _customer_rows(self, records: Sequence[CustomerRecord], now: datetime,
                       pks: Sequence[int] | None = None) -> Rows:
        """Customer rows in ``CUSTOMER_FIELDS + _BOOKKEEPING_FIELDS`` order, after their
        primary keys if given: value lists, or COPY text where the backend takes it."""
        synced = self._adapt_time(now)
        reads: dict[tuple[datetime | None, str], Any] = {}  # a page's records share one

        def read_of(record: CustomerRecord) -> Any:
            read = (record.read_at, record.read_via)
            if read not in reads:
                read_at = self._adapt_time(record.read_at)
                reads[read] = (f"\t{copy_value(read_at)}\t{copy_value(record.read_via)}\n"
                               if self.form.copy_text else (read_at, record.read_via))
            return reads[read]

        if self.form.copy_text:
            bookkeeping = f"\t{copy_value(self.env)}\t{copy_value(synced)}\t{NULL}"
            lines = (customer_copy_line(record) + bookkeeping + read_of(record) for record in records)
            if pks is not None:
                lines = (f"{pk}\t{line}" for pk, line in zip(pks, lines, strict=True))
            return in_pieces(lines)
        rows = [[*(record.values[name] for name in CUSTOMER_FIELDS),
                 record.raw_json, record.raw_hash, self.env, synced, None, *read_of(record)]
                for record in records]
        return rows if pks is None else [[pk, *row] for pk, row in zip(pks, rows, strict=True)]

    def _replace_children(self, cursor, plan: _Plan, written: dict[tuple[str, str], int]) -> None:
        # New customers have no children to delete; rows left as they were keep theirs.
        stale = [written[record.key] for record, _ in plan.changed if record.key in written]
        records = [record for record in (*plan.new, *(record for record, _ in plan.changed))
                   if record.key in written]
        for model, fields, attribute in _CHILDREN:
            if stale:
                self._bulk.delete_children(cursor, model, stale)
            if not any(getattr(record, attribute) for record in records):
                continue
            rows: Rows
            if self.form.copy_text:
                rows = in_pieces(
                    f"{written[record.key]}\t{child if record.child_text else copy_line(child)}\n"
                    for record in records for child in getattr(record, attribute))
            else:
                rows = [(written[record.key], *child)
                        for record in records for child in getattr(record, attribute)]
            self._bulk.insert_children(cursor, model, fields, rows)


def mark_deleted_by_get(env: str, autumn_ids: Sequence[str], *, read_at: datetime, now: datetime,
                        using: str = DEFAULT_DB_ALIAS) -> list[int]:
    """Customers ``customers.get`` answered 404 for, at ``read_at``: their present rows
    are marked deleted, and read then, unless one holds data read later (the condition is
    the UPDATE's own). Returns the primary keys marked. Call inside a transaction."""
    customers = Customer.objects.using(using)
    customers.filter(env=env, autumn_id__in=autumn_ids, deleted_at__isnull=True).filter(
        Q(read_at__isnull=True) | Q(read_at__lte=read_at)
    ).update(deleted_at=now, read_at=read_at, read_via="get")
    # The rows this transaction just marked, which no one else can change before it ends.
    return list(customers.filter(env=env, autumn_id__in=autumn_ids, deleted_at=now, read_at=read_at,
                                 read_via="get").values_list("pk", flat=True))


def time_adapter(connection) -> tuple[str | None, Callable[[datetime], Any]]:
    """How this backend wants a datetime parameter, and the name of that form in
    ``TIME_FORMS`` when records can be parsed straight into it (None: only Django's own
    adapter will do, in this process).

    SQLite stores naive UTC text: formatting it directly costs ~1 µs against ~3 µs through
    ``adapt_datetimefield_value`` (350,000 calls for 20,000 customers).
    """
    if connection.vendor == "postgresql" and settings.USE_TZ:
        return "iso", TIME_FORMS["iso"].from_datetime
    adapt = connection.ops.adapt_datetimefield_value
    if not settings.USE_TZ:
        return None, lambda value: adapt(timezone.make_naive(value)) if value is not None else None
    if connection.vendor == "sqlite" and connection.timezone_name == "UTC":
        return "sqlite-utc", TIME_FORMS["sqlite-utc"].from_datetime
    return None, adapt


def _keys(records: Sequence[CustomerRecord]) -> list[tuple[str, str]]:
    return [record.key for record in records]


def _row_key(autumn_id: str | None, email: str | None) -> tuple[str, str]:
    return ("id", autumn_id) if autumn_id is not None else ("email", email)
