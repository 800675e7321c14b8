"""The stand-in's switches for Autumn's two sources of a customer: a customers.list that
reads a replica lagging behind the store, and a customers.get that answers plan fields
from a stale per-customer cache (autumn-api.md, "Consistency")."""

from __future__ import annotations

import time

from autumn_django.client import AutumnClient
from autumn_django.testing.store import LIST_ITEM_CAP


def test_the_stand_in_can_serve_the_list_from_a_replica_that_lags(make_standin):
    server = make_standin(5)
    first, second = [c["id"] for c in server.list_customers() if c["id"]][:2]
    server.lag_list(1500)  # long enough for a loaded machine to list before it is over
    server.modify_customer(first, name="Late")
    server.delete_customer(second)
    added = server.add_customer({"id": "cus_late", "email": "late@example.com"})

    with AutumnClient() as client:
        listed = {c["id"]: c for c in client.customers.list(limit=100)["list"]}
        assert listed[first]["name"] != "Late" and second in listed and added["id"] not in listed
        assert client.customers.get(first)["name"] == "Late"  # get reads the store itself
        time.sleep(1.6)
        listed = {c["id"]: c for c in client.customers.list(limit=100)["list"]}
        assert listed[first]["name"] == "Late" and second not in listed and added["id"] in listed
        server.modify_customer(first, name="Later")
        server.lag_list(0)
        listed = {c["id"]: c for c in client.customers.list(limit=100)["list"]}
        assert listed[first]["name"] == "Later"


def test_the_stand_in_can_serve_a_stale_plan_field_from_customers_get(make_standin):
    server = make_standin(30)
    customer = next(c for c in server.list_customers() if c["id"] and c["subscriptions"]
                    and len(c["subscriptions"]) + len(c["purchases"]) <= LIST_ITEM_CAP)
    plan = customer["subscriptions"][0]["plan_id"]
    server.faults.stale_get_cache(plan, {"auto_enable": "stale"})

    with AutumnClient() as client:
        got = client.customers.get(customer["id"])
        listed = next(c for c in client.customers.list(limit=100)["list"] if c["id"] == customer["id"])
        assert {s["auto_enable"] for s in got["subscriptions"] if s["plan_id"] == plan} == {"stale"}
        assert listed["subscriptions"] == customer["subscriptions"]  # the list shows the store's
        assert server.get_customer(customer["id"])["subscriptions"] == customer["subscriptions"]
        server.faults.clear()
        assert client.customers.get(customer["id"])["subscriptions"] == customer["subscriptions"]
