"""Autumn's feature and plan catalogue for the generated data: what ``features.list`` and
``plans.list`` answer (autumn-api.md, "Local feature checks").

Every feature id and plan id that ``make_customers`` and ``make_entities`` use is here.
``credits`` is a **credit system**: its members (``image_generations``, ``video_minutes``,
``premium_messages``) are metered features that no customer holds a balance for; a check
of a member draws on the ``credits`` balance at the member's ``credit_cost``. Customers
get ``credits`` from packs (prepaid) and, on the plans in ``CREDIT_GRANTS``, a monthly
grant (``add_plan_credits``; not to customers that bought packs, see there).

Shapes follow the open-source server's ``shared/api/features/apiFeatureV1.ts`` and
``shared/api/products/apiPlanV1.ts`` (with ``items/apiPlanItemV1.ts``), snake_case on the
wire. The catalogue has no randomness: ``make_catalogue(env)`` is the same on every call.
"""

from __future__ import annotations

import random
from typing import Any

from .vocabulary import (
    BASE_PLANS,
    BOOLEAN_FEATURES,
    DAY_MS,
    INCLUDED,
    INTERVAL_MS,
    LICENSE_POOLS,
    METERED,
    PACK_SIZE,
)

CATALOGUE_CREATED_AT = 1_600_000_000_000  # before any generated customer: plans come first
CREDIT_SYSTEM = "credits"
# member feature -> credits one unit of it costs
CREDIT_SCHEMA = {"image_generations": 5, "video_minutes": 20, "premium_messages": 0.5}
# Plans that grant a monthly ``credits`` balance (included credits per month).
CREDIT_GRANTS = {"pro": 500, "team": 2_000, "enterprise": 10_000}
# Plans an entity (a seat) can have when its customer has no seat pool.
ENTITY_PLANS = {"seat_basic": ("Seat (basic)", 5), "seat_plus": ("Seat (plus)", 12)}
ENTITY_FEATURE = "seats"  # what entities count against
ADD_ON_ITEMS = {
    "extra_seats": ("seats", 5), "priority_support": ("priority_support", None),
    "analytics_addon": ("analytics", None), "sso_addon": ("sso", None),
    "api_boost": ("api_calls", 10_000), "storage_addon": ("storage_gb", 100),
}  # fmt: skip
BASE_PRICES = {"free": None, "starter": 9, "pro": 29, "team": 99, "enterprise": 499}
NAMES = {
    "messages": ("message", "messages"), "api_calls": ("API call", "API calls"),
    "ai_tokens": ("AI token", "AI tokens"), "storage_gb": ("GB of storage", "GB of storage"),
    "seats": ("seat", "seats"), "exports": ("export", "exports"), "projects": ("project", "projects"),
    "image_generations": ("image generation", "image generations"),
    "video_minutes": ("video minute", "video minutes"),
    "premium_messages": ("premium message", "premium messages"), "credits": ("credit", "credits"),
}  # fmt: skip
_NOT_CONSUMABLE = {"storage_gb", "seats"}  # allocated, not used up (no reset)


def _title(feature_id: str) -> str:
    return feature_id.replace("_", " ").capitalize()


def _feature(feature_id: str, kind: str) -> dict[str, Any]:
    singular, plural = NAMES.get(feature_id, (_title(feature_id), _title(feature_id)))
    feature: dict[str, Any] = {
        "id": feature_id, "name": _title(feature_id), "type": kind,
        "consumable": kind != "boolean" and feature_id not in _NOT_CONSUMABLE,
        "event_names": [], "archived": False, "display": {"singular": singular, "plural": plural},
    }  # fmt: skip
    if kind == "credit_system":
        feature["credit_schema"] = [{"metered_feature_id": m, "credit_cost": c}
                                    for m, c in CREDIT_SCHEMA.items()]
    return feature


def features() -> list[dict[str, Any]]:
    """Every feature the generated data uses, metered first, then the credit system's
    members, the credit system and the boolean features."""
    metered = [_feature(f, "metered") for f in [*METERED, *CREDIT_SCHEMA]]
    flags = sorted({f for fs in BOOLEAN_FEATURES.values() for f in fs})
    return [*metered, _feature(CREDIT_SYSTEM, "credit_system"), *[_feature(f, "boolean") for f in flags]]


def _item(feature_id: str, included: float, *, interval: str | None = None, price: dict | None = None,
          unlimited: bool = False) -> dict[str, Any]:
    return {"feature_id": feature_id, "included": included, "unlimited": unlimited,
            "reset": {"interval": interval} if interval else None, "price": price}  # fmt: skip


def _plan(plan_id: str, name: str, env: str, items: list[dict], *, group: str | None = None,
          add_on: bool = False, auto_enable: bool = False, amount: float | None = None,
          interval: str = "month") -> dict[str, Any]:
    return {
        "id": plan_id, "name": name, "description": None, "group": group, "version": 1,
        "add_on": add_on, "auto_enable": auto_enable,
        "price": None if amount is None else {"amount": amount, "interval": interval},
        "items": items, "created_at": CATALOGUE_CREATED_AT, "env": env, "archived": False,
    }  # fmt: skip


def _base_items(plan_id: str) -> list[dict]:
    """What a base plan includes, as ``data._Gen.balances`` grants it."""
    items = []
    for feature, (interval, _frac) in METERED.items():
        grant = INCLUDED[plan_id] // (10 if feature in ("api_calls", "exports") else 1)
        if feature in ("seats", "projects", "storage_gb"):
            grant = {"free": 1, "starter": 3, "pro": 10, "team": 50}.get(plan_id, 500)
        unlimited = plan_id == "enterprise" and feature in ("messages", "api_calls")
        price = None if plan_id == "free" else {"amount": 0.5, "interval": "month", "billing_units": 100,
                                                "billing_method": "usage_based", "max_purchase": None}
        items.append(_item(feature, grant, interval=interval, price=price, unlimited=unlimited))
    if plan_id in CREDIT_GRANTS:
        items.append(_item(CREDIT_SYSTEM, CREDIT_GRANTS[plan_id], interval="month"))
    items += [_item(f, 0) for f in BOOLEAN_FEATURES[plan_id]]
    return items


def plans(env: str = "sandbox") -> list[dict[str, Any]]:
    """Every plan the generated data uses: base plans, add-ons, credit packs, seat pools'
    license plans and the entity (seat) plans."""
    out = [_plan(p, p.capitalize(), env, _base_items(p), group="base", auto_enable=p == "free",
                 amount=BASE_PRICES[p]) for p in BASE_PLANS]  # fmt: skip
    for plan_id, (feature, included) in ADD_ON_ITEMS.items():
        items = [_item(feature, included or 0)]
        out.append(_plan(plan_id, _title(plan_id), env, items, add_on=True, amount=10))
    for plan_id, size in PACK_SIZE.items():
        out.append(_plan(plan_id, f"{size} credits", env, [_item(CREDIT_SYSTEM, size)], add_on=True,
                         amount=size / 100, interval="one_off"))
    for parent, pools in LICENSE_POOLS.items():
        for license_id, name, _seats in pools:
            out.append(_plan(license_id, name, env, [_item(ENTITY_FEATURE, 1)], group=f"{parent}_licenses",
                             amount=15))
    for plan_id, (name, amount) in ENTITY_PLANS.items():
        items = [_item(ENTITY_FEATURE, 1), _item("messages", 500, interval="month")]
        if plan_id == "seat_plus":
            items.append(_item("sso", 0))
        out.append(_plan(plan_id, name, env, items, group="seats", amount=amount))
    return out


def make_catalogue(env: str = "sandbox") -> tuple[list[dict], list[dict]]:
    """``(features, plans)`` describing every feature and plan the generated data uses,
    including the ``credits`` credit system and its metered members."""
    if env not in ("sandbox", "live"):
        raise ValueError(f"env must be 'sandbox' or 'live', not {env!r}")
    return features(), plans(env)


def add_plan_credits(draws: random.Random, plan_id: str | None, balances: dict, now: int,
                     due: bool = False) -> None:
    """The monthly ``credits`` grant of ``plan_id`` (if it grants one) added to ``balances``.
    ``draws`` is a stream of its own, so the rest of the customer is the same with or
    without it. ``due``: the customer's resets are past due (``data._Gen.overdue``), so
    this one is too.

    A customer that bought credit packs keeps its packs' balance only: a balance whose
    breakdown mixes resetting and one-off entries does not go back to zero usage when it
    resets, and the generated data keeps every resetting balance whole (the due-reset
    tests rely on it)."""
    grant = CREDIT_GRANTS.get(plan_id or "")
    if grant is None or CREDIT_SYSTEM in balances:
        return
    usage = draws.randrange(grant + 1)
    month = INTERVAL_MS["month"]
    if due:
        resets_at = now - draws.randrange(1, 2 * month)
    else:  # after tomorrow's midnight, as data._Gen.entry: not due whatever the time of day
        resets_at = now + DAY_MS + draws.randrange(1, month - DAY_MS)
    entry = {"id": f"cus_ent_{draws.getrandbits(48):012x}", "plan_id": plan_id, "included_grant": grant,
             "prepaid_grant": 0, "remaining": grant - usage, "usage": usage, "unlimited": False,
             "reset": {"interval": "month", "resets_at": resets_at}, "price": None, "expires_at": None}
    balances[CREDIT_SYSTEM] = {
        "feature_id": CREDIT_SYSTEM, "granted": grant, "remaining": grant - usage, "usage": usage,
        "unlimited": False, "overage_allowed": False, "max_purchase": None, "next_reset_at": resets_at,
        "breakdown": [entry],
    }  # fmt: skip
