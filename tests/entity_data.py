"""Entities, seat pools and the catalogue written with the ORM, for the admin and API tests.

The rows are what the sync writes for Autumn's answers (autumn-api.md, "Entities and
seats"): an entity's children have ``entity`` set and no ``customer``; its own plans have
``scope="entity"``, the ones it inherits from its customer ``scope="customer"``; ``raw``
is the entity object as ``entities.get`` returns it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from autumn_django.models import Balance, Customer, Entity, Feature, Flag, License, Plan, Subscription

BASE = datetime(2030, 1, 1, tzinfo=timezone.utc)
BASE_MS = int(BASE.timestamp() * 1000)


def make_customer(autumn_id: str, *, env: str = "sandbox", name: str | None = None,
                  email: str | None = None, seconds: int = 0) -> Customer:
    return Customer.objects.create(
        env=env, autumn_id=autumn_id, name=name, email=email or f"{autumn_id}@example.com",
        created_at=BASE + timedelta(seconds=seconds), raw={"id": autumn_id, "name": name},
        raw_hash="0" * 32, synced_at=BASE)


def _subscription(plan_id: str, scope: str, status: str = "active") -> dict:
    return {"id": f"sub_{plan_id}", "plan_id": plan_id, "status": status, "auto_enable": False,
            "add_on": False, "past_due": False, "quantity": 1, "started_at": BASE_MS,
            "current_period_start": None, "current_period_end": None, "canceled_at": None,
            "expires_at": None, "trial_ends_at": None, "scope": scope}


def make_entity(customer: Customer, autumn_id: str | None, *, name: str | None = None,
                feature_id: str | None = "seats", plans: tuple[str, ...] = (),
                inherited: tuple[str, ...] = (), balances: dict[str, tuple[float, float]] | None = None,
                flags: tuple[str, ...] = (), deleted: bool = False, seconds: int = 0) -> Entity:
    """An entity with its own ``plans`` (active), the customer's ``inherited`` ones,
    ``balances`` as ``{feature: (granted, usage)}`` and ``flags``."""
    balances = balances or {}
    subscriptions = [_subscription(p, "entity") for p in plans] + [
        _subscription(p, "customer") for p in inherited]
    raw = {
        "id": autumn_id, "name": name, "customer_id": customer.autumn_id, "feature_id": feature_id,
        "created_at": BASE_MS + seconds * 1000, "env": customer.env,
        "subscriptions": subscriptions, "purchases": [],
        "balances": {f: {"feature_id": f, "granted": g, "usage": u, "remaining": g - u, "unlimited": False,
                         "overage_allowed": False, "max_purchase": None, "next_reset_at": None,
                         "breakdown": []} for f, (g, u) in balances.items()},
        "flags": {f: {"id": f"flag_{f}", "plan_id": plans[0] if plans else None, "feature_id": f,
                      "expires_at": None} for f in flags},
        "billing_controls": {},
    }
    entity = Entity.objects.create(
        env=customer.env, autumn_id=autumn_id, customer=customer, name=name, feature_id=feature_id,
        created_at=BASE + timedelta(seconds=seconds), raw=raw, raw_hash="0" * 32, synced_at=BASE,
        deleted_at=BASE + timedelta(days=1) if deleted else None)
    Subscription.objects.bulk_create(
        Subscription(entity=entity, scope=s["scope"], subscription_id=s["id"], plan_id=s["plan_id"],
                     status=s["status"], quantity=1) for s in subscriptions)
    Balance.objects.bulk_create(Balance(entity=entity, feature_id=f, granted=g, usage=u, remaining=g - u)
                                for f, (g, u) in balances.items())
    Flag.objects.bulk_create(Flag(entity=entity, feature_id=f, flag_id=f"flag_{f}",
                                  plan_id=plans[0] if plans else None) for f in flags)
    return entity


def make_license(customer: Customer, plan_id: str, *, granted: float, usage: float, paid: float = 0,
                 name: str | None = None, parent: str | None = "team") -> License:
    return License.objects.create(customer=customer, license_plan_id=plan_id, parent_plan_id=parent,
                                  license_plan_name=name, granted=granted, usage=usage,
                                  remaining=granted - usage, paid_quantity=paid)


FEATURES = {  # id: (name, type, credit schema)
    "seats": ("Team seats", "metered", []),
    "ai_tokens": ("AI tokens", "metered", []),
    "images": ("Image generations", "metered", []),
    "credits": ("AI credits", "credit_system", [{"metered_feature_id": "ai_tokens", "credit_cost": 0.5},
                                                {"metered_feature_id": "images", "credit_cost": 4}]),
    "sso": ("Single sign-on", "boolean", []),
}
PLANS = {  # id: (name, group, add_on, auto_enable, version)
    "team": ("Team", "base", False, False, 2),
    "seat_pro": ("Pro seat", "seats", False, False, 1),
    "seat_basic": ("Basic seat", "seats", False, False, 1),
    "free": ("Free", "base", False, True, 1),
    "extra_storage": ("Extra storage", None, True, False, 1),
}


def make_catalogue(env: str = "sandbox", *, deleted: tuple[str, ...] = ()) -> None:
    """The org's features and plans as the catalogue sync stores them."""
    for feature_id, (name, kind, schema) in FEATURES.items():
        raw = {"id": feature_id, "name": name, "type": kind, "consumable": kind != "boolean",
               "archived": False, **({"credit_schema": schema} if schema else {})}
        Feature.objects.create(env=env, feature_id=feature_id, name=name, type=kind,
                               consumable=kind != "boolean", credit_schema=schema, raw=raw, synced_at=BASE,
                               deleted_at=BASE if feature_id in deleted else None)
    for plan_id, (name, group, add_on, auto_enable, version) in PLANS.items():
        raw = {"id": plan_id, "name": name, "group": group, "add_on": add_on, "auto_enable": auto_enable,
               "version": version, "items": [{"feature_id": "seats", "included": 5}]}
        Plan.objects.create(env=env, plan_id=plan_id, name=name, group=group, add_on=add_on,
                            auto_enable=auto_enable, version=version, items=raw["items"], raw=raw,
                            synced_at=BASE, deleted_at=BASE if plan_id in deleted else None)
