"""The naive baseline: how a sync is commonly written (dj-stripe's way), on a sample.

Per customer, in its own transaction, ``update_or_create`` the customer and delete and
re-create each child with the ORM; fetch and parse included, as in the sync's figures.
Customers only: the entities pass has no naive counterpart here. Measured on a sample and
scaled linearly to N.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from benchmarks.common import PAGE_SIZE, Step
from benchmarks.database import fresh_database
from benchmarks.steps import print_step, settle


def naive_baseline(sample: int) -> Step:
    """The dj-stripe way on the first ``sample`` customers: per customer, in its own
    transaction, ``update_or_create`` the customer and delete + re-create each child with
    the ORM. Fetch and parse are included, as they are in the sync's figures."""
    from autumn_django.client import AutumnClient
    from autumn_django.sync.pages.records import LIST_PRODUCT_CAP, parse_customer

    settle()
    started = time.perf_counter()
    stored = 0
    with AutumnClient() as client:
        for page in client.customers.iter_pages(limit=PAGE_SIZE):
            for data in page.customers[: sample - stored]:
                record = parse_customer(data)
                at_cap = len(record.subscriptions) + len(record.purchases) >= LIST_PRODUCT_CAP
                if at_cap and record.autumn_id:  # as the sync does
                    data = client.customers.get(record.autumn_id)
                    record = parse_customer(data)
                _naive_store(client.env, data, record)
                stored += 1
            if stored >= sample:
                break
    return Step("naive update_or_create", time.perf_counter() - started, stored, {"created": stored})


def _naive_store(env: str, data: dict[str, Any], record: Any) -> None:
    from django.db import transaction
    from django.utils import timezone

    from autumn_django.models import Customer

    if record.key[0] == "id":
        lookup: dict[str, Any] = {"env": env, "autumn_id": record.autumn_id}
    else:
        lookup = {"env": env, "autumn_id__isnull": True, "email": record.email}
    defaults = {k: v for k, v in record.values.items() if k not in lookup}
    defaults.update(raw=data, raw_hash=record.raw_hash, synced_at=timezone.now(), deleted_at=None)
    with transaction.atomic():
        customer, _ = Customer.objects.update_or_create(**lookup, defaults=defaults)
        for model, fields, attribute in _children():
            model.objects.filter(customer=customer).delete()
            for values in getattr(record, attribute):
                model.objects.create(customer=customer, **_child_fields(model, fields, values))


def _children() -> tuple[tuple[Any, tuple[str, ...], str], ...]:
    from autumn_django.models import Balance, Flag, Purchase, Subscription
    from autumn_django.sync.pages.records import (
        BALANCE_FIELDS,
        FLAG_FIELDS,
        PURCHASE_FIELDS,
        SUBSCRIPTION_FIELDS,
    )

    return ((Subscription, SUBSCRIPTION_FIELDS, "subscriptions"), (Purchase, PURCHASE_FIELDS, "purchases"),
            (Balance, BALANCE_FIELDS, "balances"), (Flag, FLAG_FIELDS, "flags"))


def _child_fields(model: Any, fields: tuple[str, ...], values: tuple) -> dict[str, Any]:
    """The parsed child row as model fields; JSON arrives as text and the ORM wants objects."""
    from django.db import models

    from autumn_django import jsonlib

    out = dict(zip(fields, values, strict=True))
    for name, value in out.items():
        if isinstance(value, str) and isinstance(model._meta.get_field(name), models.JSONField):
            out[name] = jsonlib.loads(value)
    return out


def baseline_step(db: str, sample: int, customers: int, floor_seconds: float) -> dict[str, Any]:
    """The baseline on ``sample`` customers, scaled to ``customers``. It needs an empty
    mirror too (it is the naive *first* sync)."""
    fresh_database(db)
    step = naive_baseline(sample)
    per_customer = step.seconds / step.customers
    scaled = per_customer * customers
    print_step(step, note=f"measured on {step.customers:,}; scaled to {customers:,}: {scaled:,.0f} s "
                          f"= {scaled / floor_seconds:,.0f}x the one-cursor floor")
    return {**asdict(step), "per_customer_seconds": per_customer, "scaled_seconds": scaled}
