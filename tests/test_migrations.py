"""The models and the shipped migrations agree: a model change without its migration
would build a different schema on a fresh database than the one the code expects."""

from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_every_model_change_has_its_migration():
    out = StringIO()
    try:
        call_command("makemigrations", "autumn_django", check=True, dry_run=True, stdout=out)
    except SystemExit:
        pytest.fail(f"autumn_django's models changed without a migration:\n{out.getvalue()}")


# -- 0017: scope and licenses filled from the stored JSON ------------------------------------------

BEFORE_0016 = [("autumn_django", "0015_webhookevent_env")]
MS = 1_700_000_000_000


def _at(ms: int):
    from datetime import datetime, timedelta, timezone

    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)


def _old_customer(old_apps, autumn_id: str, raw: dict):
    """A customer mirrored by a release before 0016: its rows without scope or licenses."""
    now = _at(MS)
    customer = old_apps.get_model("autumn_django", "Customer").objects.create(
        env="sandbox", autumn_id=autumn_id, created_at=now, synced_at=now, raw=raw, raw_hash=autumn_id[:32])
    subscription = old_apps.get_model("autumn_django", "Subscription")
    purchase = old_apps.get_model("autumn_django", "Purchase")
    for entry in raw.get("subscriptions", []):
        subscription.objects.create(customer=customer, subscription_id=entry.get("id"),
                                    plan_id=entry["plan_id"], status="active",
                                    started_at=_at(entry["started_at"]))
    for entry in raw.get("purchases", []):
        purchase.objects.create(customer=customer, plan_id=entry["plan_id"],
                                started_at=_at(entry["started_at"]))
    return customer


@pytest.mark.django_db(transaction=True)
def test_migration_0017_fills_scope_and_licenses_from_the_stored_json(settings):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from autumn_django.models import Customer, License, Purchase, Subscription

    pool = {"license_plan_id": "seat", "parent_plan_id": "team", "license_plan_name": "Seats",
            "granted": 12, "usage": 2.5, "remaining": 9.5, "paid_quantity": 2}
    seated = {
        "id": "cus_seated", "licenses": [pool, {"license_plan_name": "no plan id: left out"}],
        "subscriptions": [
            {"id": "sub_team", "plan_id": "team", "started_at": MS, "scope": "customer"},
            {"id": "sub_seat", "plan_id": "seat", "started_at": MS + 1, "scope": "entity"},
            # Without an id: matched by plan and start (the other "seat" starts later).
            {"id": None, "plan_id": "seat", "started_at": MS + 2, "scope": "entity"},
            {"id": None, "plan_id": "seat", "started_at": MS + 3},
        ],
        "purchases": [{"plan_id": "pack", "started_at": MS + 4, "scope": "entity"},
                      {"plan_id": "pack", "started_at": MS + 5.5}],
    }
    plain = {"id": "cus_plain", "licenses": [], "subscriptions": [
        {"id": "sub_pro", "plan_id": "pro", "started_at": MS}], "purchases": []}
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE_0016)
    try:
        old_apps = executor.loader.project_state(BEFORE_0016).apps
        _old_customer(old_apps, "cus_seated", seated)
        _old_customer(old_apps, "cus_plain", plain)
        # More than one batch of the migration's, most of them with nothing to fill in.
        for n in range(1, 1100):
            _old_customer(old_apps, f"cus_{n:05}", {**plain, "id": f"cus_{n:05}"} if n % 500 else
                          {"id": f"cus_{n:05}", "licenses": [{**pool, "granted": n}], "subscriptions": [
                              {"id": f"sub_{n}", "plan_id": "seat", "started_at": MS, "scope": "entity"}]})
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    subscriptions = dict(Subscription.objects.filter(customer__autumn_id="cus_seated").values_list(
        "started_at", "scope"))
    assert subscriptions == {_at(MS): "customer", _at(MS + 1): "entity", _at(MS + 2): "entity",
                             _at(MS + 3): "customer"}
    assert sorted(Purchase.objects.values_list("started_at", "scope")) == [
        (_at(MS + 4), "entity"), (_at(MS + 5.5), "customer")]
    assert list(License.objects.filter(customer__autumn_id="cus_seated").values_list(
        "license_plan_id", "parent_plan_id", "license_plan_name", "granted", "usage", "remaining",
        "paid_quantity")) == [("seat", "team", "Seats", 12.0, 2.5, 9.5, 2.0)]
    plain_scopes = Subscription.objects.filter(customer__autumn_id="cus_plain").values_list("scope")
    assert set(plain_scopes) == {("customer",)}
    # The customers of later batches too.
    later = License.objects.exclude(customer__autumn_id="cus_seated").values_list("granted", flat=True)
    assert sorted(later) == [500.0, 1000.0]
    assert sorted(Customer.objects.filter(subscriptions__scope="entity").distinct().values_list(
        "autumn_id", flat=True)) == ["cus_00500", "cus_01000", "cus_seated"]

    # Going back and forth again: the way back keeps the data, and a second pass adds nothing.
    executor = MigrationExecutor(connection)
    executor.migrate([("autumn_django", "0016_entities_licenses_catalogue")])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert License.objects.count() == 3
