"""Turn one Autumn customer object into the values of its mirror rows.

Strict about types (a string where a number belongs is an error that names the field),
lenient about absence (a section Autumn left out is empty), and blind to fields it does
not model: those live on in ``Customer.raw``. The field tuples below are the single list
of mirrored columns; the writer builds its SQL from them and the models' ``_meta``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ... import jsonlib
from .copytext import copy_line
from .fieldreaders import (
    _FieldError,
    _flag,
    _integer,
    _list,
    _mapping,
    _number,
    _object,
    _scope,
    _text,
    _time,
)
from .timeforms import MsConverter, time_form
from .typedrows import ChildRows, customer_rows, owner_rows

CUSTOMER_FIELDS = ("autumn_id", "name", "email", "fingerprint", "stripe_id",
                   "send_email_receipts", "created_at")
SUBSCRIPTION_FIELDS = ("subscription_id", "plan_id", "status", "auto_enable", "add_on",
                       "past_due", "quantity", "started_at", "current_period_start",
                       "current_period_end", "canceled_at", "expires_at", "trial_ends_at", "scope")
PURCHASE_FIELDS = ("plan_id", "quantity", "started_at", "expires_at", "scope")
BALANCE_FIELDS = ("feature_id", "granted", "remaining", "usage", "unlimited",
                  "overage_allowed", "max_purchase", "next_reset_at", "breakdown")
FLAG_FIELDS = ("flag_id", "feature_id", "plan_id", "expires_at")
LICENSE_FIELDS = ("license_plan_id", "parent_plan_id", "license_plan_name", "granted", "usage",
                  "remaining", "paid_quantity")
# Each kind of child row, by its CustomerRecord attribute. The first four are a customer's
# or an entity's (``child_rows``); licenses (seat pools) only a customer's.
CHILD_FIELDS = {"subscriptions": SUBSCRIPTION_FIELDS, "purchases": PURCHASE_FIELDS,
                "balances": BALANCE_FIELDS, "flags": FLAG_FIELDS, "licenses": LICENSE_FIELDS}

# Autumn's list rows carry at most this many subscriptions + purchases.
LIST_PRODUCT_CAP = 15


class RecordError(ValueError):
    """A customer object that cannot be mirrored; ``key`` identifies it when possible.

    ``keyless`` says the object has neither an id nor an email: no mirror row can be
    keyed so (rows are keyed by id, else by email), so it cannot be one the sync would
    wrongly take for deleted. An object without a usable key for another reason (not an
    object, an id of the wrong type) might be a mirrored customer garbled."""

    def __init__(self, problem: str, key: tuple[str, str] | None, *, keyless: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.key = key
        self.keyless = keyless

    def __reduce__(self):
        return _record_error, (self.problem, self.key, self.keyless)

    @property
    def may_be_mirrored(self) -> bool:
        """Whether this record could stand for a customer the mirror holds."""
        return not self.keyless

    def describe(self) -> str:
        who = f"{self.key[0]} {self.key[1]!r}" if self.key else "a customer with no id or email"
        return f"{who}: {self.problem}"


def _record_error(problem: str, key: tuple[str, str] | None, keyless: bool) -> RecordError:
    return RecordError(problem, key, keyless=keyless)


@dataclass(slots=True)
class CustomerRecord:
    key: tuple[str, str]  # ("id", autumn_id) or ("email", email) for id-less customers
    values: dict[str, Any]  # CUSTOMER_FIELDS
    raw_json: str
    raw_hash: str
    subscriptions: list[tuple]
    purchases: list[tuple]
    balances: list[tuple]
    flags: list[tuple]
    licenses: list[tuple]
    created_at_ms: int  # Autumn's created_at as sent, whatever form the times take below
    time_style: str | None = None  # the key of TIME_FORMS the times are in; None: datetimes
    child_text: bool = False  # child rows are COPY text lines (copytext.copy_line), not tuples
    # With child_text: CUSTOMER_FIELDS, raw and raw_hash as one COPY line; raw_json is then
    # emptied, so a customer's JSON crosses the prefetch pipe once.
    customer_text: str | None = None
    # When the request that returned this data was sent (aware UTC; None: now, as far as
    # the writer knows) and through which call: "list" (customers.list, a replica) or
    # "get" (customers.get, get_or_create or update: the primary and its cache).
    read_at: datetime | None = None
    read_via: str = ""

    def __reduce__(self):
        # The prefetch process pickles ~1,000 of these a page: a plain tuple of fields
        # pickles in 9 µs a record where the dataclass's own state methods take 13. A
        # page's records share one read_at object, which pickle sends once.
        return CustomerRecord, (self.key, self.values, self.raw_json, self.raw_hash, self.subscriptions,
                                self.purchases, self.balances, self.flags, self.licenses, self.created_at_ms,
                                self.time_style, self.child_text, self.customer_text,
                                self.read_at, self.read_via)

    @property
    def autumn_id(self) -> str | None:
        return self.values["autumn_id"]

    @property
    def email(self) -> str | None:
        return self.values["email"]

    @property
    def created_at(self) -> Any:
        """A datetime, unless the record was parsed with a ``time_style``."""
        return self.values["created_at"]


def record_key(data: Any) -> tuple[str, str] | None:
    """How the mirror identifies this customer, or None if it cannot."""
    if not isinstance(data, dict):
        return None
    return key_of(data.get("id"), data.get("email"))


def key_of(autumn_id: Any, email: Any) -> tuple[str, str] | None:
    """``record_key`` from a customer's id and email: its id, else (no id at all) its email."""
    if isinstance(autumn_id, str) and autumn_id:
        return ("id", autumn_id)
    if autumn_id is None and isinstance(email, str) and email:
        return ("email", email)
    return None


def canonical_json(data: Any) -> tuple[bytes, str]:
    """The customer's JSON with sorted keys (UTF-8), and its hash: equal objects, equal text.
    Bytes, because an unchanged customer only needs the hash (the prefetcher's hot path)."""
    raw_json = jsonlib.dumps_sorted_bytes(data)
    return raw_json, hashlib.blake2b(raw_json, digest_size=16).hexdigest()


def parse_customer(data: Any, canonical: tuple[bytes, str] | None = None, *,
                   time_style: str | None = None, read_at: datetime | None = None,
                   read_via: str = "") -> CustomerRecord:
    """Validate ``data`` and build its rows; raises ``RecordError`` naming the bad field.
    ``canonical`` is ``canonical_json(data)`` when the caller has it already; times come
    as aware datetimes, or in the form ``time_style`` names (a key of ``TIME_FORMS``).
    ``read_at`` and ``read_via`` say when and through which call it was read."""
    key = record_key(data)
    if not isinstance(data, dict):
        raise RecordError(f"expected an object, got {type(data).__name__}", None)
    if key is None:
        keyless = data.get("id") is None and data.get("email") is None
        raise RecordError("it has neither an id nor an email, so it cannot be keyed", None, keyless=keyless)
    to_time = time_form(time_style).from_ms
    values, (subscriptions, purchases, balances, flags), licenses = (
        customer_rows(data, to_time) or _read_customer(data, key, to_time))
    raw_json, raw_hash = canonical or canonical_json(data)
    return CustomerRecord(
        key=key,
        values=values,
        raw_json=raw_json.decode(),
        raw_hash=raw_hash,
        subscriptions=subscriptions,
        purchases=purchases,
        balances=balances,
        flags=flags,
        licenses=licenses,
        created_at_ms=int(data["created_at"]),
        time_style=time_style,
        read_at=read_at,
        read_via=read_via,
    )


def _read_customer(data: dict, key: tuple[str, str], to_time: MsConverter,
                   ) -> tuple[dict[str, Any], ChildRows, list[tuple]]:
    """``parse_customer``'s values and rows read field by field, naming a bad field."""
    try:
        values = {
            "autumn_id": _text(data, "id", limit=255),
            "name": _text(data, "name"),
            "email": _text(data, "email", limit=320),
            "fingerprint": _text(data, "fingerprint"),
            "stripe_id": _text(data, "stripe_id", limit=255),
            "send_email_receipts": _flag(data, "send_email_receipts"),
            "created_at": _time(data, "created_at", to_time, required=True),
        }
        licenses = _rows(_license, _list(data, "licenses"), "licenses", to_time)
        return values, _child_rows(data, to_time), licenses
    except _FieldError as exc:
        raise RecordError(str(exc), key) from None


def child_rows(data: dict, key: Any = None, time_style: str | None = None) -> ChildRows:
    """The subscription, purchase, balance and flag rows of a customer or an entity object
    (in ``CHILD_FIELDS`` order, times as aware datetimes or in the form ``time_style``
    names); ``RecordError`` with ``key`` naming the bad field."""
    to_time = time_form(time_style).from_ms
    typed = owner_rows(data, to_time) if isinstance(data, dict) else None
    if typed is not None:
        return typed
    try:
        return _child_rows(data, to_time)
    except _FieldError as exc:
        raise RecordError(str(exc), key) from None


def _child_rows(data: dict, to_time: MsConverter) -> ChildRows:
    return (_rows(_subscription, _list(data, "subscriptions"), "subscriptions", to_time),
            _rows(_purchase, _list(data, "purchases"), "purchases", to_time),
            _rows(_balance, _mapping(data, "balances"), "balances", to_time),
            _rows(_flag_row, _mapping(data, "flags"), "flags", to_time))


@dataclass(frozen=True)
class RowForm:
    """The form a writer takes parsed rows in: chosen by the writer for its database
    (``MirrorWriter.form``) and handed to whatever parses for it (the prefetch child too).

    ``time_style`` names the times' form (a key of ``TIME_FORMS``; None: aware datetimes,
    which the writer converts); ``copy_text`` makes a customer's rows PostgreSQL COPY text
    lines (``as_copy_text``)."""

    time_style: str | None = None
    copy_text: bool = False

    def parse(self, data: Any, canonical: tuple[bytes, str] | None = None, *,
              read_at: datetime | None = None, read_via: str = "") -> CustomerRecord:
        """``parse_customer`` into this form."""
        record = parse_customer(data, canonical, time_style=self.time_style, read_at=read_at,
                                read_via=read_via)
        if self.copy_text:
            as_copy_text(record)
        return record


# Aware datetimes, no COPY text: the form of a record parsed for no writer in particular.
DATETIME_ROWS = RowForm()


# Positions of the times in each kind of child row, for convert_times.
TIME_FIELDS = frozenset({"started_at", "current_period_start", "current_period_end", "canceled_at",
                         "expires_at", "trial_ends_at", "next_reset_at"})
_CHILD_TIME_POSITIONS = tuple(
    (attribute, tuple(i for i, name in enumerate(fields) if name in TIME_FIELDS))
    for attribute, fields in CHILD_FIELDS.items()
)


def convert_times(record: CustomerRecord, convert: Callable[[datetime], Any], style: str) -> None:
    """Put every time of a record parsed as datetimes through ``convert`` (None stays None),
    and mark the record's times as ``style``: for records not parsed in the writer's form."""
    if record.time_style is not None:
        raise ValueError(f"the record's times are {record.time_style!r} already, not datetimes")
    record.values["created_at"] = convert(record.values["created_at"])
    for attribute, positions in _CHILD_TIME_POSITIONS:
        rows = getattr(record, attribute)
        for n, row in enumerate(rows):
            values = list(row)
            for i in positions:
                if values[i] is not None:
                    values[i] = convert(values[i])
            rows[n] = tuple(values)
    record.time_style = style


def as_copy_text(record: CustomerRecord) -> None:
    """Turn the record's rows into PostgreSQL COPY text lines, in place."""
    if not record.child_text:
        for attribute in CHILD_FIELDS:
            setattr(record, attribute, [copy_line(row) for row in getattr(record, attribute)])
        record.customer_text = customer_copy_line(record)
        record.raw_json = ""
        record.child_text = True


def customer_copy_line(record: CustomerRecord) -> str:
    """CUSTOMER_FIELDS, raw and raw_hash of the record as a COPY text line."""
    if record.customer_text is not None:
        return record.customer_text
    return copy_line([*(record.values[name] for name in CUSTOMER_FIELDS), record.raw_json, record.raw_hash])


# -- the rows of one customer ----------------------------------------------------------------
# Each parser takes one item and the time converter. Field names in errors are relative:
# _rows prefixes the item's place, only when there is an error to report.


def _rows(parse: Callable, items: list | dict, label: str, to_time: MsConverter) -> list[tuple]:
    try:
        if isinstance(items, dict):
            return [parse(item, to_time, feature) for feature, item in items.items()]
        return [parse(item, to_time) for item in items]
    except _FieldError as exc:
        where = label
        for place, item in items.items() if isinstance(items, dict) else enumerate(items):
            if item is exc.item:
                where = f"{label}.{place}" if isinstance(items, dict) else f"{label}[{place}]"
                break
        raise exc.within(where) from None


def _subscription(item: Any, to_time: MsConverter) -> tuple:
    obj = _object(item)
    return (
        _text(obj, "id"),
        _text(obj, "plan_id", required=True),
        _text(obj, "status", required=True, limit=16),
        _flag(obj, "auto_enable"),
        _flag(obj, "add_on"),
        _flag(obj, "past_due"),
        _integer(obj, "quantity"),
        _time(obj, "started_at", to_time),
        _time(obj, "current_period_start", to_time),
        _time(obj, "current_period_end", to_time),
        _time(obj, "canceled_at", to_time),
        _time(obj, "expires_at", to_time),
        _time(obj, "trial_ends_at", to_time),
        _scope(obj),
    )


def _purchase(item: Any, to_time: MsConverter) -> tuple:
    obj = _object(item)
    return (
        _text(obj, "plan_id", required=True),
        _integer(obj, "quantity"),
        _time(obj, "started_at", to_time),
        _time(obj, "expires_at", to_time),
        _scope(obj),
    )


def _balance(item: Any, to_time: MsConverter, feature: str) -> tuple:
    obj = _object(item)
    breakdown = obj.get("breakdown") or []
    if not isinstance(breakdown, list):
        raise _FieldError(obj, "breakdown", "expected a list")
    return (
        feature,
        _number(obj, "granted"),
        _number(obj, "remaining"),
        _number(obj, "usage"),
        _flag(obj, "unlimited"),
        _flag(obj, "overage_allowed"),
        _number(obj, "max_purchase"),
        _time(obj, "next_reset_at", to_time),
        jsonlib.dumps(breakdown),
    )


def _flag_row(item: Any, to_time: MsConverter, feature: str) -> tuple:
    obj = _object(item)
    return (_text(obj, "id"), feature, _text(obj, "plan_id"), _time(obj, "expires_at", to_time))


def _license(item: Any, to_time: MsConverter) -> tuple:
    obj = _object(item)
    return (
        _text(obj, "license_plan_id", required=True, limit=255),
        _text(obj, "parent_plan_id", limit=255),
        _text(obj, "license_plan_name"),
        _number(obj, "granted"),
        _number(obj, "usage"),
        _number(obj, "remaining"),
        _number(obj, "paid_quantity"),
    )
