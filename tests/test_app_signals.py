"""The app's own signals: sent once per real change, never for an unchanged re-sync."""

from __future__ import annotations

from collections import Counter

import pytest

from autumn_django.models import Customer
from autumn_django.signals import balance_changed, customer_created, customer_deleted, customer_updated
from autumn_django.sync import sync_all_customers, sync_customer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def received():
    """Connect a receiver to each signal; yields what they got."""
    got: dict[str, list] = {"created": [], "updated": [], "deleted": [], "balance": []}
    receivers = {
        customer_created: lambda sender, customer, **kw: got["created"].append(customer.autumn_id),
        customer_updated: lambda sender, customer, **kw: got["updated"].append(customer.autumn_id),
        customer_deleted: lambda sender, customer, **kw: got["deleted"].append(customer.autumn_id),
        balance_changed: lambda sender, customer, feature_id, previous, current, **kw:
            got["balance"].append((customer.autumn_id, feature_id, previous, current)),
    }
    for signal, receiver in receivers.items():
        signal.connect(receiver, sender=Customer, weak=False)
    yield got
    for signal, receiver in receivers.items():
        signal.disconnect(receiver, sender=Customer)


def test_first_sync_sends_one_created_per_customer_and_nothing_else(make_standin, received):
    server = make_standin(120)
    sync_all_customers(page_size=50)
    expected = [c["id"] for c in server.list_customers()]
    assert Counter(received["created"]) == Counter(expected)
    assert received["updated"] == received["deleted"] == received["balance"] == []


def test_unchanged_resync_sends_nothing(make_standin, received):
    make_standin(60)
    sync_all_customers()
    for values in received.values():
        values.clear()
    sync_all_customers()
    assert received == {"created": [], "updated": [], "deleted": [], "balance": []}


def test_changes_send_exactly_their_signals(make_standin, received):
    server = make_standin(60)
    sync_all_customers()
    for values in received.values():
        values.clear()
    customers = [c for c in server.list_customers() if c["id"] and len(c["balances"]) >= 2]
    renamed, used, gone = customers[0], customers[1], customers[2]
    server.modify_customer(renamed["id"], name="Only the name changed")
    feature, balance = next(iter(used["balances"].items()))
    new_balances = {**used["balances"], feature: {**balance, "usage": (balance["usage"] or 0) + 2.5,
                                                  "remaining": (balance["remaining"] or 0) - 2.5}}
    removed_feature = next(f for f in used["balances"] if f != feature)
    del new_balances[removed_feature]
    server.modify_customer(used["id"], balances=new_balances)
    server.delete_customer(gone["id"])

    sync_all_customers()

    assert sorted(received["updated"]) == sorted([renamed["id"], used["id"]])
    assert received["deleted"] == [gone["id"]] and received["created"] == []
    changes = {(cid, fid): (before, after) for cid, fid, before, after in received["balance"]}
    assert set(changes) == {(used["id"], feature), (used["id"], removed_feature)}
    before, after = changes[(used["id"], feature)]
    assert after["usage"] == before["usage"] + 2.5 == float((balance["usage"] or 0) + 2.5)
    assert changes[(used["id"], removed_feature)][1] is None


def test_single_refresh_sends_update_and_deletion_once(make_standin, received):
    server = make_standin(10)
    sync_all_customers()
    for values in received.values():
        values.clear()
    first, second = [c["id"] for c in server.list_customers() if c["id"]][:2]
    server.modify_customer(first, name="Changed")
    server.delete_customer(second)

    sync_customer(first)
    sync_customer(first)  # unchanged now
    sync_customer(second)
    sync_customer(second)  # already marked deleted

    assert received["updated"] == [first]
    assert received["deleted"] == [second]
