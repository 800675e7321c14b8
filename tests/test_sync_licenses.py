"""Seat pools (``License`` rows) and Autumn's ``scope`` of subscriptions and purchases, as
the full sync and a single refresh write them: equal to the stand-in's customers after a
first sync, after changes and after a deletion, on every write path (SQLite's executemany,
PostgreSQL's COPY, pages on several connections), and never touching an entity's rows."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest
from django.db import connection

from autumn_django.models import (
    Balance,
    Customer,
    Entity,
    Flag,
    License,
    Purchase,
    Subscription,
)
from autumn_django.sync import sync_all_customers, sync_customer

from .queries import all_queries

pytestmark = pytest.mark.django_db(transaction=True)

CHILD_MODELS = (Subscription, Purchase, Balance, Flag)


def truth(server) -> dict:
    """What the mirror should hold of each present customer, by id or email: its pools,
    and the (plan, scope) of its subscriptions and purchases."""
    return {
        (c["id"] or c["email"]): (
            sorted((p["license_plan_id"], p.get("parent_plan_id"), p.get("license_plan_name"),
                    _float(p.get("granted")), _float(p.get("usage")), _float(p.get("remaining")),
                    _float(p.get("paid_quantity"))) for p in c.get("licenses") or []),
            sorted((s["plan_id"], s.get("id"), s.get("scope") or "customer") for s in c["subscriptions"]),
            sorted((p["plan_id"], p.get("scope") or "customer") for p in c["purchases"]),
        )
        for c in server.list_customers()
    }


def mirrored() -> dict:
    rows = Customer.objects.present().prefetch_related("licenses", "subscriptions", "purchases")
    return {
        (c.autumn_id or c.email): (
            sorted((lic.license_plan_id, lic.parent_plan_id, lic.license_plan_name, lic.granted, lic.usage,
                    lic.remaining, lic.paid_quantity) for lic in c.licenses.all()),
            sorted((s.plan_id, s.subscription_id, s.scope) for s in c.subscriptions.all()),
            sorted((p.plan_id, p.scope) for p in c.purchases.all()),
        )
        for c in rows
    }


def _float(value):
    return None if value is None else float(value)


def license_pks(autumn_id: str) -> set[int]:
    return set(License.objects.filter(customer__autumn_id=autumn_id).values_list("pk", flat=True))


@pytest.mark.parametrize("lanes", [1, 2])
def test_licenses_and_scopes_follow_autumn_through_changes_and_deletions(make_standin, settings, lanes):
    settings.AUTUMN_SYNC_DB_CONNECTIONS = lanes  # 2 writes pages on two connections (PostgreSQL)
    server = make_standin(240, seed=4)
    customers = [c for c in server.list_customers() if c["id"]]
    pooled = [c for c in customers if c["licenses"]]
    plain = [c for c in customers if not c["licenses"] and c["subscriptions"] and c["purchases"]]
    assert len(pooled) >= 3 and plain, "the seed must hold customers with and without seat pools"
    assert any(s["scope"] == "entity" for c in pooled for s in c["subscriptions"])

    first = sync_all_customers(page_size=50)

    assert first.created == 240
    assert License.objects.count() == sum(len(c["licenses"]) for c in server.list_customers())
    assert mirrored() == truth(server)

    # A seat taken (fractional numbers are kept), a pool added to a customer without one, a
    # customer's pools all released, a plan moved to an entity, and a deletion.
    grown, emptied, gone = pooled[0], pooled[1], pooled[2]
    pools = copy.deepcopy(grown["licenses"])
    pools[0].update(usage=pools[0]["usage"] + 1.5, remaining=pools[0]["remaining"] - 1.5)
    server.modify_customer(grown["id"], licenses=pools)
    server.modify_customer(emptied["id"], licenses=[])
    subscriptions, purchases = copy.deepcopy(plain[0]["subscriptions"]), copy.deepcopy(plain[0]["purchases"])
    subscriptions[0]["scope"] = "entity"
    purchases[0]["scope"] = "entity"
    server.modify_customer(plain[0]["id"], subscriptions=subscriptions, purchases=purchases, licenses=[{
        "license_plan_id": "seat_extra", "parent_plan_id": subscriptions[0]["plan_id"],
        "license_plan_name": "Extra seats", "granted": 2.5, "usage": 0, "remaining": 2.5,
        "paid_quantity": None}])
    server.delete_customer(gone["id"])
    untouched = next(c for c in pooled[3:])
    before = license_pks(untouched["id"])

    run = sync_all_customers(page_size=50)

    assert (run.updated, run.deleted) == (3, 1)
    assert mirrored() == truth(server)
    assert license_pks(untouched["id"]) == before  # an unchanged customer's rows are not rewritten
    assert License.objects.get(customer__autumn_id=plain[0]["id"]).granted == 2.5
    assert not License.objects.filter(customer__autumn_id=emptied["id"]).exists()
    deleted = Customer.objects.get(autumn_id=gone["id"])
    assert deleted.deleted_at is not None  # kept, marked deleted, as every customer row is
    assert deleted.licenses.count() == len(gone["licenses"])


def test_a_single_refresh_writes_licenses_and_scopes(make_standin):
    server = make_standin(80, seed=4)
    sync_all_customers()
    seat = next(c for c in server.list_customers() if c["id"] and c["licenses"])
    subscriptions = copy.deepcopy(seat["subscriptions"])
    for subscription in subscriptions:
        subscription["scope"] = "customer" if subscription["scope"] == "entity" else "entity"
    pools = copy.deepcopy(seat["licenses"])[:1]
    pools[0]["granted"] += 10
    server.modify_customer(seat["id"], licenses=pools, subscriptions=subscriptions)

    sync_customer(seat["id"])

    assert mirrored()[seat["id"]] == truth(server)[seat["id"]]


def test_rewriting_a_customer_leaves_its_entities_rows_alone(make_standin):
    """Entity rows share the child tables with ``customer`` NULL: a customer's children are
    replaced by its own key, so they survive, and every row keeps exactly one owner."""
    server = make_standin(60, seed=4)
    sync_all_customers()
    seat = next(c for c in server.list_customers() if c["id"] and c["licenses"])
    customer = Customer.objects.get(autumn_id=seat["id"])
    now = datetime.now(timezone.utc)
    entity = Entity.objects.create(env="sandbox", autumn_id="ent_1", customer=customer, created_at=now,
                                   raw={"id": "ent_1"}, raw_hash="0" * 32, synced_at=now)
    Subscription.objects.create(entity=entity, plan_id="seat", status="active", scope="entity")
    Purchase.objects.create(entity=entity, plan_id="pack", scope="entity")
    Balance.objects.create(entity=entity, feature_id="messages", granted=5)
    Flag.objects.create(entity=entity, feature_id="sso")
    entity_rows = {model: set(model.objects.filter(entity=entity).values_list("pk", flat=True))
                   for model in CHILD_MODELS}
    server.modify_customer(seat["id"], name="Renamed", licenses=[])

    run = sync_all_customers()

    assert run.updated == 1
    assert mirrored() == truth(server)
    assert {model: set(model.objects.filter(entity=entity).values_list("pk", flat=True))
            for model in CHILD_MODELS} == entity_rows
    for model in CHILD_MODELS:
        assert not model.objects.filter(customer__isnull=True, entity__isnull=True).exists()
        assert not model.objects.filter(customer__isnull=False, entity__isnull=False).exists()


def test_an_unchanged_resync_writes_no_license(make_standin):
    make_standin(150, seed=4)
    sync_all_customers(page_size=50)
    assert License.objects.exists()
    with all_queries() as queries:  # on every connection, the lanes' and COPY's too
        run = sync_all_customers(page_size=50)
    assert run.unchanged == 150
    table = License._meta.db_table
    assert [q.sql for q in queries if table in q.sql] == []


def test_a_license_without_its_plan_is_reported_and_the_others_stored(make_standin):
    server = make_standin(40, seed=4)
    broken = next(c for c in server.list_customers() if c["id"] and c["licenses"])
    pools = copy.deepcopy(broken["licenses"])
    del pools[0]["license_plan_id"]
    server.modify_customer(broken["id"], licenses=pools)

    run = sync_all_customers()

    assert run.skipped == 1
    assert [(e["customer"], e["error"]) for e in run.errors if "customer" in e] == [
        (f"id:{broken['id']}", "licenses[0].license_plan_id: missing")]
    assert run.created == 39


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")
def test_licenses_go_to_postgresql_by_copy(make_standin):
    make_standin(60, seed=4)
    with all_queries() as queries:
        sync_all_customers()
    assert any(q.verb == "COPY" and License._meta.db_table in q.sql for q in queries)
