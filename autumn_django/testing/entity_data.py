"""Deterministic fake Autumn entities (seats, workspaces) for generated customers.

An entity is stored as Autumn stores it: its own plans, balances and flags only. What the
API answers for it (the customer's plans, balances and flags pooled in) is composed when
it is served (``entities.py``).

About ``ENTITY_SHARE`` of the customers that have an id get 1-20 entities each. A customer
with seat pools (``licenses``) puts its entities on its license plans, others on the
``seat_*`` plans of the catalogue. Some customers create all their entities in the same
millisecond (an import), and about ``NULL_ID_SHARE`` of entities have no id, as Autumn
allows; both are what make keyset paging of ``entities.list`` tricky.
"""

from __future__ import annotations

import random
from typing import Any

from .catalogue import CREDIT_SYSTEM, ENTITY_FEATURE, ENTITY_PLANS
from .data import default_anchor_ms
from .vocabulary import DAY_MS, FIRST_NAMES, INTERVAL_MS

ENTITY_SHARE = 0.10
NULL_ID_SHARE = 0.02
MAX_ENTITIES = 20


def _subscription(draws: random.Random, plan_id: str, started: int) -> dict[str, Any]:
    return {"id": f"sub_{draws.getrandbits(64):016x}", "plan_id": plan_id, "status": "active",
            "auto_enable": False, "add_on": False, "past_due": False, "quantity": 1, "started_at": started,
            "current_period_start": None, "current_period_end": None, "canceled_at": None,
            "expires_at": None, "trial_ends_at": None, "scope": "entity"}  # fmt: skip


def _balance(draws: random.Random, feature: str, plan_id: str, grant: int, now: int) -> dict[str, Any]:
    usage = draws.randrange(grant + 1)
    month = INTERVAL_MS["month"]
    resets_at = now + DAY_MS + draws.randrange(1, month - DAY_MS)  # not due today
    entry = {"id": f"cus_ent_{draws.getrandbits(48):012x}", "plan_id": plan_id, "included_grant": grant,
             "prepaid_grant": 0, "remaining": grant - usage, "usage": usage, "unlimited": False,
             "reset": {"interval": "month", "resets_at": resets_at}, "price": None, "expires_at": None}
    return {"feature_id": feature, "granted": grant, "remaining": grant - usage, "usage": usage,
            "unlimited": False, "overage_allowed": False, "max_purchase": None, "next_reset_at": resets_at,
            "breakdown": [entry]}  # fmt: skip


def _entity(draws: random.Random, customer: dict, created: int, plans: list[str], k: int, now: int) -> dict:
    entity_id = None if draws.random() < NULL_ID_SHARE else f"ent_{draws.getrandbits(48):012x}"
    r = draws.random()
    name = None if r < 0.05 else f"Seat {k + 1}" if r < 0.4 else f"{draws.choice(FIRST_NAMES)}'s workspace"
    subs, purchases, balances, flags = [], [], {}, {}
    plan_id = draws.choice(plans) if draws.random() < 0.85 else None
    if plan_id is not None:
        subs.append(_subscription(draws, plan_id, created))
        if plan_id in ENTITY_PLANS:  # the seat plans' items (catalogue.py)
            balances["messages"] = _balance(draws, "messages", plan_id, 500, now)
            if plan_id == "seat_plus":
                flags["sso"] = {"id": f"flag_{draws.getrandbits(48):012x}", "plan_id": plan_id,
                                "feature_id": "sso", "expires_at": None}  # fmt: skip
    if draws.random() < 0.05:
        purchases.append({"plan_id": "credits_100", "started_at": created, "expires_at": None, "quantity": 1,
                          "scope": "entity"})  # fmt: skip
        balances[CREDIT_SYSTEM] = _balance(draws, CREDIT_SYSTEM, "credits_100", 100, now)
        balances[CREDIT_SYSTEM]["breakdown"][0].update(included_grant=0, prepaid_grant=100, reset=None)
        balances[CREDIT_SYSTEM]["next_reset_at"] = None
    controls: dict[str, list[dict]] = {}
    if balances and draws.random() < 0.1:
        feature = draws.choice(sorted(balances))
        limit = draws.choice([100, 500, 1000])
        controls["usage_limits"] = [{"feature_id": feature, "enabled": True, "limit": limit,
                                     "interval": "month", "usage": draws.randrange(limit + 1),
                                     "source": "entity"}]  # fmt: skip
    return {
        "id": entity_id, "name": name, "customer_id": customer["id"], "feature_id": ENTITY_FEATURE,
        "created_at": created, "env": customer.get("env", "sandbox"), "subscriptions": subs,
        "purchases": purchases, "balances": balances, "flags": flags, "billing_controls": controls,
    }  # fmt: skip


def make_entities(customers: list[dict], seed: int = 0) -> list[dict]:
    """Entities for ``ENTITY_SHARE`` of ``customers`` (those with an id), 1-20 each,
    deterministic for ``(customers, seed)`` within a UTC day (like ``make_customers``).

    Each entity's ``created_at`` lies between its customer's and today's UTC midnight."""
    draws = random.Random(f"autumn-entities:{seed}")
    now = default_anchor_ms()
    out = []
    for customer in customers:
        if not isinstance(customer, dict) or customer.get("id") is None or draws.random() >= ENTITY_SHARE:
            continue
        born = customer.get("created_at")
        born = born if isinstance(born, int) else now
        pools = [p["license_plan_id"] for p in customer.get("licenses") or [] if isinstance(p, dict)]
        plans = pools or list(ENTITY_PLANS)
        bulk = draws.random() < 0.2  # all created in one millisecond, as an import does
        latest = max(born, now - 1)
        created = born + draws.randrange(0, latest - born + 1)
        for k in range(draws.randint(1, MAX_ENTITIES)):
            if not bulk:
                created = born + draws.randrange(0, latest - born + 1)
            out.append(_entity(draws, customer, created, plans, k, now))
    return out
