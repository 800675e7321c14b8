"""Turn one Autumn customer object into the values of its mirror rows.

Strict about types (a string where a number belongs is an error that names the field),
lenient about absence (a section Autumn left out is empty), and blind to fields it does
not model: those live on in ``Customer.raw``. The field tuples below are the single list
of mirrored columns; the writer builds its SQL from them and the models' ``_meta``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .. import jsonlib

CUSTOMER_FIELDS = ("autumn_id", "name", "email", "fingerprint", "stripe_id",
                   "send_email_receipts", "created_at")
SUBSCRIPTION_FIELDS = ("subscription_id", "plan_id", "status", "auto_enable", "add_on",
                       "past_due", "quantity", "started_at", "current_period_start",
                       "current_period_end", "canceled_at", "expires_at", "trial_ends_at")
PURCHASE_FIELDS = ("plan_id", "quantity", "started_at", "expires_at")
BALANCE_FIELDS = ("feature_id", "granted", "remaining", "usage", "unlimited",
                  "overage_allowed", "max_purchase", "next_reset_at", "breakdown")
FLAG_FIELDS = ("flag_id", "feature_id", "plan_id", "expires_at")

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# Autumn's list rows carry at most this many subscriptions + purchases.
LIST_PRODUCT_CAP = 15


class RecordError(ValueError):
    """A customer object that cannot be mirrored; ``key`` identifies it when possible."""

    def __init__(self, problem: str, key: tuple[str, str] | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.key = key

    def __reduce__(self):
        return RecordError, (self.problem, self.key)

    def describe(self) -> str:
        who = f"{self.key[0]} {self.key[1]!r}" if self.key else "a customer with no id or email"
        return f"{who}: {self.problem}"


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
    created_at_ms: int  # Autumn's created_at as sent, whatever form the times take below
    times_adapted: bool = False  # times already in the database's parameter form

    @property
    def autumn_id(self) -> str | None:
        return self.values["autumn_id"]

    @property
    def email(self) -> str | None:
        return self.values["email"]

    @property
    def created_at(self) -> datetime:
        return self.values["created_at"]


def record_key(data: Any) -> tuple[str, str] | None:
    """How the mirror identifies this customer, or None if it cannot."""
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("id"), str) and data["id"]:
        return ("id", data["id"])
    if data.get("id") is None and isinstance(data.get("email"), str) and data["email"]:
        return ("email", data["email"])
    return None


def canonical_json(data: Any) -> tuple[bytes, str]:
    """The customer's JSON with sorted keys (UTF-8), and its hash: equal objects, equal text.
    Bytes, because an unchanged customer only needs the hash (the prefetcher's hot path)."""
    raw_json = jsonlib.dumps_sorted_bytes(data)
    return raw_json, hashlib.blake2b(raw_json, digest_size=16).hexdigest()


def parse_customer(data: Any, canonical: tuple[bytes, str] | None = None) -> CustomerRecord:
    """Validate ``data`` and build its rows; raises ``RecordError`` naming the bad field.
    ``canonical`` is ``canonical_json(data)`` when the caller has it already."""
    key = record_key(data)
    if not isinstance(data, dict):
        raise RecordError(f"expected an object, got {type(data).__name__}", None)
    if key is None:
        raise RecordError("it has neither an id nor an email, so it cannot be keyed", None)
    try:
        values = {
            "autumn_id": _text(data, "id", limit=255),
            "name": _text(data, "name"),
            "email": _text(data, "email", limit=320),
            "fingerprint": _text(data, "fingerprint"),
            "stripe_id": _text(data, "stripe_id", limit=255),
            "send_email_receipts": _flag(data, "send_email_receipts"),
            "created_at": _time(data, "created_at", required=True),
        }
        subscriptions = [_subscription(item, f"subscriptions[{i}]")
                         for i, item in enumerate(_list(data, "subscriptions"))]
        purchases = [_purchase(item, f"purchases[{i}]")
                     for i, item in enumerate(_list(data, "purchases"))]
        balances = [_balance(feature, item, f"balances.{feature}")
                    for feature, item in _mapping(data, "balances").items()]
        flags = [_flag_row(feature, item, f"flags.{feature}")
                 for feature, item in _mapping(data, "flags").items()]
    except _FieldError as exc:
        raise RecordError(str(exc), key) from None
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
        created_at_ms=int(data["created_at"]),
    )


# Positions of the times in each kind of child row, for adapt_times.
_TIME_FIELDS = frozenset({"started_at", "current_period_start", "current_period_end", "canceled_at",
                          "expires_at", "trial_ends_at", "next_reset_at"})
_CHILD_TIME_POSITIONS = tuple(
    (attribute, tuple(i for i, name in enumerate(fields) if name in _TIME_FIELDS))
    for attribute, fields in (("subscriptions", SUBSCRIPTION_FIELDS), ("purchases", PURCHASE_FIELDS),
                              ("balances", BALANCE_FIELDS), ("flags", FLAG_FIELDS))
)

# Ways to put a parsed (aware, UTC) time in the form a database takes as a parameter.
TIME_STYLES: dict[str, Any] = {
    # Django's SQLite backend stores naive UTC text: "2024-05-01 12:00:00.123000".
    "sqlite-utc": lambda value: None if value is None else str(value.replace(tzinfo=None)),
    # PostgreSQL reads ISO 8601 with an offset into timestamptz (COPY and parameters alike).
    "iso": lambda value: None if value is None else value.isoformat(),
}


def adapt_times(record: CustomerRecord, adapt: Any) -> None:
    """Put every time of ``record`` through ``adapt``, once. Done in the prefetch process
    when it can be, so the writing process neither converts nor unpickles datetimes."""
    if record.times_adapted:
        return
    record.values["created_at"] = adapt(record.values["created_at"])
    for attribute, positions in _CHILD_TIME_POSITIONS:
        rows = getattr(record, attribute)
        for n, row in enumerate(rows):
            values = list(row)
            for i in positions:
                values[i] = adapt(values[i])
            rows[n] = tuple(values)
    record.times_adapted = True


def _subscription(item: Any, path: str) -> tuple:
    obj = _object(item, path)
    return (
        _text(obj, "id", path),
        _text(obj, "plan_id", path, required=True),
        _text(obj, "status", path, required=True, limit=16),
        _flag(obj, "auto_enable", path),
        _flag(obj, "add_on", path),
        _flag(obj, "past_due", path),
        _integer(obj, "quantity", path),
        _time(obj, "started_at", path),
        _time(obj, "current_period_start", path),
        _time(obj, "current_period_end", path),
        _time(obj, "canceled_at", path),
        _time(obj, "expires_at", path),
        _time(obj, "trial_ends_at", path),
    )


def _purchase(item: Any, path: str) -> tuple:
    obj = _object(item, path)
    return (
        _text(obj, "plan_id", path, required=True),
        _integer(obj, "quantity", path),
        _time(obj, "started_at", path),
        _time(obj, "expires_at", path),
    )


def _balance(feature: str, item: Any, path: str) -> tuple:
    obj = _object(item, path)
    breakdown = obj.get("breakdown") or []
    if not isinstance(breakdown, list):
        raise _FieldError(f"{path}.breakdown: expected a list")
    return (
        feature,
        _number(obj, "granted", path),
        _number(obj, "remaining", path),
        _number(obj, "usage", path),
        _flag(obj, "unlimited", path),
        _flag(obj, "overage_allowed", path),
        _number(obj, "max_purchase", path),
        _time(obj, "next_reset_at", path),
        jsonlib.dumps(breakdown),
    )


def _flag_row(feature: str, item: Any, path: str) -> tuple:
    obj = _object(item, path)
    return (_text(obj, "id", path), feature, _text(obj, "plan_id", path),
            _time(obj, "expires_at", path))


class _FieldError(ValueError):
    pass


def _where(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _object(item: Any, path: str) -> dict:
    if not isinstance(item, dict):
        raise _FieldError(f"{path}: expected an object, got {type(item).__name__}")
    return item


def _list(data: dict, name: str) -> list:
    value = data.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _FieldError(f"{name}: expected a list, got {type(value).__name__}")
    return value


def _mapping(data: dict, name: str) -> dict:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _FieldError(f"{name}: expected an object, got {type(value).__name__}")
    return value


def _text(obj: dict, name: str, path: str = "", *, required: bool = False,
          limit: int | None = None) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise _FieldError(f"{_where(path, name)}: missing")
        return None
    if not isinstance(value, str):
        raise _FieldError(f"{_where(path, name)}: expected a string, got {value!r:.40}")
    if limit is not None and len(value) > limit:
        raise _FieldError(f"{_where(path, name)}: longer than {limit} characters")
    return value


def _flag(obj: dict, name: str, path: str = "") -> bool:
    value = obj.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _FieldError(f"{_where(path, name)}: expected true or false, got {value!r:.40}")
    return value


def _number(obj: dict, name: str, path: str) -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _FieldError(f"{_where(path, name)}: expected a number, got {value!r:.40}")
    return float(value)


def _integer(obj: dict, name: str, path: str) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _FieldError(f"{_where(path, name)}: expected a whole number, got {value!r:.40}")
    return value


def _time(obj: dict, name: str, path: str = "", *, required: bool = False) -> datetime | None:
    """Autumn's times are epoch milliseconds."""
    value = obj.get(name)
    if value is None:
        if required:
            raise _FieldError(f"{_where(path, name)}: missing")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _FieldError(f"{_where(path, name)}: expected epoch milliseconds, got {value!r:.40}")
    try:
        # timedelta keeps whole milliseconds exact, where value / 1000 as a float may not.
        return EPOCH + timedelta(milliseconds=value)
    except (OverflowError, ValueError):
        raise _FieldError(f"{_where(path, name)}: {value} is not a usable time") from None
