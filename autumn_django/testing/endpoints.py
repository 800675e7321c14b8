"""The customer endpoints: request validation and behaviour, independent of HTTP plumbing.

Validation mimics the real server's zod schemas: the first problem found is reported as
``400 invalid_inputs`` with the message ``"<field>: <problem>"``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .store import Record, Store, build_match, decode_cursor, dumps, now_ms

ID_RE = re.compile(r"^[a-zA-Z0-9_:-]+$")
EMAIL_RE = re.compile(r"^[^\s@]+@[^\s@.]+(\.[^\s@.]+)+$")
EXPANDS = frozenset(
    {
        "invoices", "entities", "trials_used", "rewards", "referrals", "payment_method",
        "upcoming_invoice", "subscriptions.plan", "purchases.plan", "balances.feature",
        "flags.feature",
    }
)  # fmt: skip
PROCESSORS = ("stripe", "revenuecat", "vercel")
# billing_controls lists: the fields an entry must have and ``enabled``'s default (the
# server's schemas); unknown keys are dropped, as the server's schema strips them.
CONTROLS: dict[str, tuple[tuple[str, ...], bool]] = {
    "auto_topups": (("feature_id", "threshold", "quantity"), False),
    "spend_limits": ((), False),
    "usage_limits": (("feature_id", "limit", "interval"), True),
    "usage_alerts": (("threshold", "threshold_type"), True),
    "overage_allowed": (("feature_id",), False),
}
_MISSING = object()


class ApiError(Exception):
    """An error the API answers as JSON ``{"message", "code", "env"}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    cut: bool = False  # send half the body, then close the connection (``Faults.cut_next``)


def error_reply(status: int, code: str, message: str, env: str, **headers: str) -> Reply:
    return Reply(status, dumps({"message": message, "code": code, "env": env}), headers=headers)


def _bad(field_name: str, problem: str) -> ApiError:
    return ApiError(400, "invalid_inputs", f"{field_name}: {problem}")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "unknown")


# -- field readers -------------------------------------------------------------------
def _int(body: dict, name: str, lo: int, hi: int, default: int) -> int:
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(name, f"Expected number, received {_type_name(value)}")
    if value != int(value):
        raise _bad(name, "Expected integer, received float")
    if value < lo:
        raise _bad(name, f"Number must be greater than or equal to {lo}")
    if value > hi:
        raise _bad(name, f"Number must be less than or equal to {hi}")
    return int(value)


def _str(body: dict, name: str, *, required: bool = False, nullable: bool = True) -> Any:
    """A string field; returns ``_MISSING`` when absent (so "not given" differs from null)."""
    value = body.get(name, _MISSING)
    if value is _MISSING:
        if required:
            raise _bad(name, "Required")
        return _MISSING
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise _bad(name, f"Expected string, received {_type_name(value)}")
    return value


def _typed(body: dict, name: str, kind: type, label: str) -> Any:
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        return _MISSING
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _bad(name, f"Expected {label}, received {_type_name(value)}")
    return value


def _enum(body: dict, name: str, choices: tuple[str, ...], default: str | None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if value not in choices:
        expected = " | ".join(f"'{c}'" for c in choices)
        raise _bad(name, f"Invalid enum value. Expected {expected}, received '{value}'")
    return value


def _customer_id(body: dict, name: str = "customer_id", *, nullable: bool = False) -> Any:
    value = _str(body, name, required=True, nullable=nullable)
    if value is None:
        return None
    if not value:
        raise _bad(name, "String must contain at least 1 character(s)")
    if not ID_RE.match(value):
        raise _bad(name, "Customer ID can only contain letters, numbers, underscores, hyphens and colons")
    return value


def _email(body: dict) -> Any:
    value = _str(body, "email")
    if isinstance(value, str) and not EMAIL_RE.match(value):
        raise _bad("email", "Invalid email")
    return value


def _expand(body: dict) -> None:
    value = body.get("expand")
    if value is None:
        return
    if not isinstance(value, list):
        raise _bad("expand", f"Expected array, received {_type_name(value)}")
    for i, item in enumerate(value):
        if item not in EXPANDS:
            raise _bad(f"expand.{i}", f"Invalid enum value. Received '{item}'")


def _billing_controls(body: dict) -> Any:
    """``billing_controls`` params as a 2.3 answer shows them: ``{list: [entry] | None}``,
    each entry given its defaults and tagged ``source: "customer"``; ``_MISSING`` if absent."""
    value = _typed(body, "billing_controls", dict, "object")
    if value is _MISSING:
        return _MISSING
    out: dict[str, list[dict] | None] = {}
    for key, (required, enabled) in CONTROLS.items():
        if key not in value:
            continue
        entries = value[key]
        if entries is None:
            out[key] = None  # clears the customer's own entries
            continue
        if not isinstance(entries, list):
            raise _bad(f"billing_controls.{key}", f"Expected array, received {_type_name(entries)}")
        shown = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise _bad(f"billing_controls.{key}.{i}", f"Expected object, received {_type_name(entry)}")
            for name in required:
                if entry.get(name) is None:
                    raise _bad(f"billing_controls.{key}.{i}.{name}", "Required")
            entry = {"enabled": enabled, **entry, "source": "customer"}
            if key == "usage_limits":
                entry.setdefault("usage", 0)  # nothing tracked in the window yet
            shown.append(entry)
        out[key] = shown
    return out


def _control_identity(key: str, entry: Any) -> Any:
    """What a customer entry shadows a plan's entry by: the feature (and a usage limit's filter)."""
    if not isinstance(entry, dict):
        return None
    if key == "usage_limits":
        return entry.get("feature_id"), json.dumps(entry.get("filter"), sort_keys=True, default=str)
    return entry.get("feature_id")


def _merge_controls(current: Any, given: dict) -> dict:
    """``current`` billing controls after ``given`` ones (update; get_or_create from ``{}``):
    a list sent replaces the customer's own entries (null clears them) and keeps the plan's
    (``source: "plan"``) that no new entry shadows; lists not sent are left alone. A list
    that ends empty stays ``[]`` unless it was cleared."""
    merged = dict(current) if isinstance(current, dict) else {}
    for key, mine in given.items():
        mine = mine or []
        taken = {_control_identity(key, e) for e in mine}
        plan = [e for e in merged.get(key) or [] if isinstance(e, dict) and e.get("source") == "plan"
                and _control_identity(key, e) not in taken]  # fmt: skip
        if mine or plan or given[key] is not None:
            merged[key] = mine + plan
        else:
            merged.pop(key, None)
    return merged


def _filters(body: dict) -> tuple[Any, float | None, float | None]:
    """The list filters: a match predicate and the created_at bounds (inclusive)."""
    search = _str(body, "search")
    plans = body.get("plans")
    if plans is not None:
        if not isinstance(plans, list):
            raise _bad("plans", f"Expected array, received {_type_name(plans)}")
        for i, plan in enumerate(plans):
            if not isinstance(plan, dict) or not isinstance(plan.get("id"), str):
                raise _bad(f"plans.{i}.id", "Required")
            versions = plan.get("versions")
            if versions is not None and (
                not isinstance(versions, list)
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in versions)
            ):
                raise _bad(f"plans.{i}.versions", "Expected array of integers")
    status = _enum(body, "subscription_status", ("active", "scheduled"), None)
    procs = body.get("processors")
    if procs is not None:
        procs = [procs] if isinstance(procs, str) else procs
        if not isinstance(procs, list) or any(p not in PROCESSORS for p in procs):
            expected = " | ".join(f"'{p}'" for p in PROCESSORS)
            raise _bad("processors", f"Invalid enum value. Expected {expected}")
    lo = hi = None
    rng = body.get("created_at_range")
    if rng is not None:
        if not isinstance(rng, dict):
            raise _bad("created_at_range", f"Expected object, received {_type_name(rng)}")
        for key in ("start", "end"):
            v = rng.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise _bad(f"created_at_range.{key}", f"Expected number, received {_type_name(v)}")
        lo, hi = rng.get("start"), rng.get("end")
    match = build_match(search if isinstance(search, str) else None, plans, status, procs)
    return match, lo, hi


# -- endpoints -----------------------------------------------------------------------
@dataclass
class Ctx:
    store: Store
    env: str
    version: str
    org_max_limit: int
    patches: dict
    # Balance resets (resets.py): lazy, as the real server, unless switched off; a list's
    # queued background reset lands this long after the list (None: never).
    lazy_resets: bool = True
    reset_lands_after_ms: float | None = None
    # The env's entities (entities.EntityStore), catalogue (entity_endpoints.Catalogue) and
    # corrupted entity answers ({(customer_id, entity_id): patch}): entity_endpoints.py.
    entities: Any = None
    catalogue: Any = None
    entity_patches: dict = field(default_factory=dict)


def _on_listed(ctx: Ctx) -> Any:
    """What customers.list does to the customers of its page before answering: lazily,
    it answers them as stored and queues the reset of those due; with lazy resets off it
    applies their due resets first (as if the queued job had already landed)."""
    def picked(records: list[Record]) -> None:
        now = now_ms()
        if ctx.lazy_resets:
            ctx.store.queue_resets(records, now, ctx.reset_lands_after_ms)
        else:
            for rec in records:
                ctx.store.apply_resets(rec, now)

    return picked


def _customer_reply(ctx: Ctx, rec: Record) -> Reply:
    data = rec.data
    patch = ctx.patches.get(data.get("id")) if ctx.patches else None
    return Reply(200, dumps({**data, **patch} if patch else data))


def list_customers(ctx: Ctx, body: dict) -> Reply:
    offset_paged = ctx.version in ("2.1", "2.2")
    limit = _int(body, "limit", 1, 1000 if offset_paged else 5000, 10 if offset_paged else 50)
    if limit > ctx.org_max_limit:
        raise ApiError(
            400, "invalid_request", f"limit {limit} exceeds max of {ctx.org_max_limit} for this org"
        )
    desc = _enum(body, "sort_order", ("asc", "desc"), "desc") == "desc"
    match, lo, hi = _filters(body)
    if offset_paged:
        offset = _int(body, "offset", 0, 2**53, 0)
        rows, total = ctx.store.listed().offset_page(
            offset=offset, limit=limit, desc=desc, match=match, lo_ca=lo, hi_ca=hi,
            patches=ctx.patches, picked=_on_listed(ctx),
        )  # fmt: skip
        tail = dumps(
            {"total_count": total, "has_more": offset + len(rows) < total, "offset": offset,
             "limit": limit}
        )  # fmt: skip
        return Reply(200, b'{"list":[' + b",".join(rows) + b"]," + tail[1:])
    cursor = _str(body, "start_cursor")
    after = None
    if isinstance(cursor, str) and cursor:
        after = decode_cursor(cursor)
        if after is None:
            raise ApiError(400, "invalid_cursor", "Invalid cursor: could not decode start_cursor")
    rows, next_cursor = ctx.store.listed().cursor_page(
        after=after, limit=limit, desc=desc, match=match, lo_ca=lo, hi_ca=hi, patches=ctx.patches,
        picked=_on_listed(ctx),
    )
    return Reply(200, b'{"list":[' + b",".join(rows) + b'],"next_cursor":' + dumps(next_cursor) + b"}")


def _not_found(customer_id: str) -> ApiError:
    return ApiError(404, "customer_not_found", f"Customer {customer_id} not found")


def get_customer(ctx: Ctx, body: dict) -> Reply:
    customer_id = _str(body, "customer_id", required=True, nullable=False)
    _expand(body)
    rec = ctx.store.find(customer_id)
    if rec is None:
        raise _not_found(customer_id)
    ctx.store.apply_resets(rec)  # customers.get applies every due reset before it answers
    return _customer_reply(ctx, rec)


def get_or_create(ctx: Ctx, body: dict) -> Reply:
    customer_id = _customer_id(body, nullable=True)
    email = _email(body)
    name = _str(body, "name")
    fingerprint = _str(body, "fingerprint")
    stripe_id = _str(body, "stripe_id")
    metadata = _typed(body, "metadata", dict, "object")
    receipts = _typed(body, "send_email_receipts", bool, "boolean")
    controls = _billing_controls(body)
    plan_id = _str(body, "auto_enable_plan_id")
    create_in_stripe = _typed(body, "create_in_stripe", bool, "boolean")
    _expand(body)
    email = email if isinstance(email, str) else None
    if customer_id is None and not email:
        raise _bad("email", "email is required when customer_id is null")
    store = ctx.store
    with store.lock:
        rec = store.find(customer_id) if customer_id is not None else store.find_idless(email)
        if rec is not None:  # idempotent: returned as it is, nothing applied but due resets
            store.apply_resets(rec)
            return _customer_reply(ctx, rec)
        if customer_id is not None and email:
            rec = store.find_idless(email)
            if rec is not None:  # a new id claims the id-less customer with this email
                store.replace(rec, {**rec.data, "id": customer_id})
                store.apply_resets(rec)
                return _customer_reply(ctx, rec)
        now = now_ms()
        processors: dict[str, Any] = {}
        if isinstance(stripe_id, str):
            processors["stripe"] = {"id": stripe_id}
        elif create_in_stripe is True:
            stripe_id = f"cus_{now:x}{store.env[:1]}"
            processors["stripe"] = {"id": stripe_id}
        subs = []
        if isinstance(plan_id, str) and plan_id:
            subs.append(
                {"id": f"sub_{now:x}", "plan_id": plan_id, "status": "active",
                 "auto_enable": True, "add_on": False, "past_due": False, "quantity": 1,
                 "started_at": now, "current_period_start": None, "current_period_end": None,
                 "canceled_at": None, "expires_at": None, "trial_ends_at": None, "scope": "customer"}
            )  # fmt: skip
        given = lambda v, default: default if v is _MISSING else v  # noqa: E731
        data = {
            "id": customer_id, "name": given(name, None), "email": email,
            "created_at": now, "fingerprint": given(fingerprint, None),
            "stripe_id": given(stripe_id, None), "metadata": given(metadata, {}),
            "send_email_receipts": given(receipts, False),
            "billing_controls": _merge_controls({}, controls) if controls is not _MISSING else {},
            "config": {}, "subscriptions": subs, "purchases": [], "licenses": [],
            "balances": {}, "flags": {},
        }  # fmt: skip
        if processors:  # omitted, not {}, when the customer has none
            data["processors"] = processors
        rec = store.add(data)
        return _customer_reply(ctx, rec)


def update_customer(ctx: Ctx, body: dict) -> Reply:
    customer_id = _str(body, "customer_id", required=True, nullable=False)
    changes: dict[str, Any] = {}
    for name in ("name", "fingerprint", "stripe_id"):
        value = _str(body, name)
        if value is not _MISSING:
            changes[name] = value
    email = _email(body)
    if email is not _MISSING:
        changes["email"] = email
    receipts = _typed(body, "send_email_receipts", bool, "boolean")
    if receipts is not _MISSING:
        changes["send_email_receipts"] = receipts
    controls = _billing_controls(body)
    metadata = _typed(body, "metadata", dict, "object")
    new_id = None
    if body.get("new_customer_id") is not None:
        new_id = _customer_id(body, "new_customer_id")
    store = ctx.store
    with store.lock:
        rec = store.find(customer_id)
        if rec is None:
            raise _not_found(customer_id)
        data = {**rec.data, **changes}
        if controls is not _MISSING:
            data["billing_controls"] = _merge_controls(data.get("billing_controls"), controls)
        if metadata is not _MISSING:  # merged; a key set to null is removed
            merged = dict(data.get("metadata") or {})
            for key, value in metadata.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            data["metadata"] = merged
        if "stripe_id" in changes:
            procs = {k: v for k, v in (data.get("processors") or {}).items() if k != "stripe"}
            if changes["stripe_id"]:
                procs["stripe"] = {"id": changes["stripe_id"]}
            data.pop("processors", None)
            if procs:  # omitted, not {}, when none is left
                data["processors"] = procs
        if new_id is not None and new_id != customer_id:
            if store.find(new_id) is not None:
                raise ApiError(409, "customer_already_exists", f"Customer {new_id} already exists")
            data["id"] = new_id
        store.replace(rec, data)
        return _customer_reply(ctx, rec)


def delete_customer(ctx: Ctx, body: dict) -> Reply:
    customer_id = _str(body, "customer_id", required=True, nullable=False)
    with ctx.store.lock:
        rec = ctx.store.find(customer_id)
        if rec is None:
            raise _not_found(customer_id)
        ctx.store.remove(rec)
    return Reply(200, b'{"success":true}')


HANDLERS = {
    "customers.list": list_customers,
    "customers.get": get_customer,
    "customers.get_or_create": get_or_create,
    "customers.update": update_customer,
    "customers.delete": delete_customer,
}

# Webhook endpoints (webhooks.create / list / update): webhook_endpoints.py, which builds on
# this module, so it is imported once everything above is defined.
from .webhook_endpoints import WEBHOOK_HANDLERS  # noqa: E402

HANDLERS.update(WEBHOOK_HANDLERS)

# Entities and the catalogue (entities.list / get, features.list, plans.list): likewise.
from .entity_endpoints import ENTITY_HANDLERS  # noqa: E402

HANDLERS.update(ENTITY_HANDLERS)
