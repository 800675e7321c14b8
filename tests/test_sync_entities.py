"""The full sync's entities and catalogue: the mirror equals the stand-in's truth after a
first sync, changes, deletions, faults and a resumed run; single-customer refreshes."""

from __future__ import annotations

from collections import Counter

import pytest
from django.utils import timezone

from autumn_django.client import AutumnClient
from autumn_django.exceptions import AutumnConnectionError, ServerError
from autumn_django.features import check_feature
from autumn_django.models import Customer, Entity, Feature, Plan, SyncRun
from autumn_django.sync import sync_all_customers, sync_customer
from autumn_django.testing import AutumnStandIn, make_customers

from .conftest import (
    assert_mirror_matches,
    expected_children,
    mirrored_children,
    ms_to_datetime,
    sync_killed_once,
)
from .test_webhooks import SECRET, deliver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def entity_standin(make_standin):
    """A stand-in with customers, their entities (10% of customers with 1-20) and the catalogue."""
    return lambda n=80, *, seed=3, **options: make_standin(n, seed=seed, entities=True, **options)


def entity_key(entity: dict) -> tuple:
    if entity.get("id") is not None:
        return (entity["customer_id"], entity["id"])
    return (entity["customer_id"], None, ms_to_datetime(entity["created_at"]), entity.get("name"))


def row_key(row: Entity) -> tuple:
    if row.autumn_id is not None:
        return (row.customer.autumn_id, row.autumn_id)
    return (row.customer.autumn_id, None, row.created_at, row.name)


def assert_entities_match(server: AutumnStandIn, env: str = "sandbox") -> int:
    """Every entity the stand-in serves is a present row equal to its answer, children and
    all, and every present row is one of them. Returns how many were compared."""
    expected = {entity_key(entity): entity for entity in server.list_entities(env=env)}
    rows = {row_key(row): row for row in Entity.objects.filter(env=env, deleted_at__isnull=True)
            .select_related("customer").prefetch_related("subscriptions", "purchases", "balances", "flags")}
    missing, extra = set(expected) - set(rows), set(rows) - set(expected)
    assert not missing and not extra, (
        f"mirror has {len(rows)} present entities, Autumn {len(expected)}; "
        f"missing {sorted(map(str, missing))[:3]}, extra {sorted(map(str, extra))[:3]}")
    for key, entity in expected.items():
        row = rows[key]
        assert row.raw == entity, f"raw JSON of {key!r} differs"
        assert (row.name, row.feature_id, row.created_at) == (
            entity.get("name"), entity.get("feature_id"), ms_to_datetime(entity["created_at"])), key
        assert mirrored_children(row) == expected_children(entity), f"children of {key!r} differ"
        assert not row.subscriptions.filter(customer__isnull=False).exists()
    return len(expected)


def served_catalogue() -> tuple[list[dict], list[dict]]:
    with AutumnClient() as client:
        return client.features.list(), client.plans.list()


def assert_catalogue_matches(env: str = "sandbox") -> None:
    features, plans = served_catalogue()
    features, plans = {f["id"]: f for f in features}, {p["id"]: p for p in plans}
    assert {f.feature_id: f.raw for f in Feature.objects.present().filter(env=env)} == features
    assert {p.plan_id: p.raw for p in Plan.objects.present().filter(env=env)} == plans


def entity_requests(server: AutumnStandIn) -> list[dict]:
    return [body for endpoint, body in server.requests if endpoint == "entities.list"]


def test_first_sync_mirrors_entities_and_the_catalogue_and_a_resync_writes_nothing(entity_standin):
    server = entity_standin(120)
    assert len(server.list_entities()) > 20, "the data set should hold entities"

    run = sync_all_customers(page_size=25)

    assert run.status == SyncRun.Status.SUCCEEDED and run.phase == "entities"
    compared = assert_entities_match(server)
    assert (run.entities_created, run.entities_updated, run.entities_deleted) == (compared, 0, 0)
    assert run.entity_pages >= -(-compared // 25)
    assert_mirror_matches(server)
    assert_catalogue_matches()
    assert any(f.type == "credit_system" and f.credit_schema for f in Feature.objects.all())
    # The entities crawl pages newest first, with the org's page size and no customer filter.
    pages = entity_requests(server)
    assert pages[0]["start_cursor"] == "" and all("customer_id" not in body for body in pages)

    synced_at = dict(Entity.objects.values_list("pk", "synced_at"))
    again = sync_all_customers(page_size=25)

    assert (again.entities_created, again.entities_updated, again.entities_unchanged) == (0, 0, compared)
    assert dict(Entity.objects.values_list("pk", "synced_at")) == synced_at, "unchanged rows are not written"


def test_changes_additions_and_deletions_of_entities_reach_the_mirror(entity_standin):
    server = entity_standin(120)
    sync_all_customers(page_size=30)
    served = server.list_entities()
    renamed, emptied, deleted = served[0], served[1], served[2]
    server.modify_entity(renamed["customer_id"], renamed["id"], name="Renamed seat")
    server.modify_entity(emptied["customer_id"], emptied["id"], balances={}, flags={})
    server.delete_entity(deleted["customer_id"], deleted["id"])
    gone_customer = served[-1]["customer_id"]
    owner = next(c for c in server.list_customers() if c["id"] and c["id"] != gone_customer)
    server.add_entity({"id": "ent_new_one", "customer_id": owner["id"], "name": "New workspace",
                       "feature_id": None, "created_at": owner["created_at"] + 5, "env": "sandbox",
                       "subscriptions": [], "purchases": [], "balances": {}, "flags": {}})
    # A customer deleted with its entities: they go when the customer goes.
    gone_entities = sum(1 for e in served if e["customer_id"] == gone_customer)
    server.delete_customer(gone_customer)

    run = sync_all_customers(page_size=30)

    assert run.entities_created == 1
    assert run.entities_deleted == 1 + gone_entities - (deleted["customer_id"] == gone_customer)
    assert_entities_match(server)
    row = Entity.objects.get(autumn_id=renamed["id"], customer__autumn_id=renamed["customer_id"])
    assert row.name == "Renamed seat"
    assert Entity.objects.get(autumn_id=deleted["id"], customer__autumn_id=deleted["customer_id"]).is_deleted
    assert Entity.objects.filter(customer__autumn_id=gone_customer, deleted_at__isnull=True).count() == 0


def test_bad_entity_records_are_skipped_and_reported_and_a_garbled_one_stops_deletions(entity_standin):
    server = entity_standin(100)
    sync_all_customers(page_size=40)
    served = server.list_entities()
    bad = served[3]
    server.faults.corrupt_entity(bad["customer_id"], bad["id"], {"balances": ["not", "a", "mapping"]})
    server.delete_entity(served[4]["customer_id"], served[4]["id"])

    run = sync_all_customers(page_size=40)

    assert run.entities_skipped == 1 and run.entities_deleted == 1
    [problem] = [p for p in run.errors if "entity" in p]
    assert bad["id"] in problem["entity"] and "balances" in problem["error"]
    # The skipped entity keeps what the mirror had: nothing stored is thrown away.
    assert not Entity.objects.get(autumn_id=bad["id"], customer__autumn_id=bad["customer_id"]).is_deleted

    # An entity with no customer_id cannot be linked, and might be any mirrored entity.
    server.faults.corrupt_entity(served[5]["customer_id"], served[5]["id"], {"customer_id": 42})
    server.delete_entity(served[6]["customer_id"], served[6]["id"])
    run = sync_all_customers(page_size=40)
    assert run.entities_deleted == 0
    assert any("no entity was marked deleted" in p.get("warning", "") for p in run.errors)
    kept = Entity.objects.get(autumn_id=served[6]["id"], customer__autumn_id=served[6]["customer_id"])
    assert not kept.is_deleted


def test_a_failed_entities_crawl_resumes_from_its_saved_page_without_redoing_customers(entity_standin):
    server = entity_standin(150)
    total = len(server.list_entities())
    server.faults.fail_next(1, status=500, endpoint="entities.list", after=2)
    with pytest.raises(ServerError):
        sync_all_customers(page_size=20)
    failed = SyncRun.objects.get()
    assert failed.status == SyncRun.Status.FAILED and failed.phase == "entities"
    assert failed.entity_pages == 2 and failed.entity_cursor
    assert Entity.objects.count() == failed.entities_created == 40
    server.clear_requests()

    run = sync_all_customers(page_size=20)

    assert (run.pk, run.attempts, run.status) == (failed.pk, 2, SyncRun.Status.SUCCEEDED)
    assert not [e for e, _ in server.requests if e == "customers.list"], "customers were done"
    assert entity_requests(server)[0]["start_cursor"] == failed.entity_cursor
    assert run.entities_created == total and run.entities_deleted == 0
    assert_entities_match(server)


def test_deletions_after_a_resumed_crawl_judge_only_what_that_attempt_saw(entity_standin):
    """A resumed attempt never saw the entities the first attempt wrote (newer ones: the
    crawl pages newest first), so it must not mark them deleted."""
    server = entity_standin(150)
    sync_all_customers(page_size=20)
    newest, oldest = server.list_entities()[0], server.list_entities()[-1]
    server.delete_entity(oldest["customer_id"], oldest["id"])
    server.faults.fail_next(1, status=500, endpoint="entities.list", after=3)
    with pytest.raises(ServerError):
        sync_all_customers(page_size=20)
    server.delete_entity(newest["customer_id"], newest["id"])  # behind the saved cursor now

    run = sync_all_customers(page_size=20)

    assert run.attempts == 2 and run.entities_deleted == 1
    assert Entity.objects.get(autumn_id=oldest["id"], customer__autumn_id=oldest["customer_id"]).is_deleted
    # Unseen by the attempt that settled deletions: the next run marks it.
    unseen = Entity.objects.get(autumn_id=newest["id"], customer__autumn_id=newest["customer_id"])
    assert not unseen.is_deleted
    sync_all_customers(page_size=20)
    assert_entities_match(server)


def test_entities_respect_the_org_page_maximum_and_a_shared_rate_limit(entity_standin):
    server = entity_standin(150, org_max_limit=25, list_rate_limit=8)

    run = sync_all_customers(page_size=100)

    assert run.page_size == 25
    # The run learnt the maximum from customers.list; the null-id defect may ask for less.
    assert all(body["limit"] <= 25 for body in entity_requests(server))
    assert_entities_match(server)
    assert_mirror_matches(server)


def test_an_entity_of_a_customer_created_after_the_customers_pass_gets_its_customer(entity_standin):
    server = entity_standin(60)
    sync_all_customers(page_size=50)
    # Autumn gains a customer and its entity; the run resumes in its entities phase, as if
    # both had been created after its customers pass.
    late = {**make_customers(1, seed=99)[0], "id": "cus_late"}
    server.add_customer(late)
    server.add_entity({"id": "ent_late", "customer_id": "cus_late", "name": "Late", "feature_id": None,
                       "created_at": late["created_at"] + 1, "env": "sandbox", "subscriptions": [],
                       "purchases": [], "balances": {}, "flags": {}})
    SyncRun.objects.create(env="sandbox", status=SyncRun.Status.FAILED, phase="entities",
                           started_at=timezone.now(), heartbeat_at=timezone.now(), lease_token="x",
                           page_size=50)

    run = sync_all_customers(page_size=50)

    assert run.phase == "entities" and run.entities_skipped == 0
    assert Entity.objects.get(autumn_id="ent_late").customer.autumn_id == "cus_late"
    assert_entities_match(server)


def test_sync_customer_refreshes_its_entities_from_the_primary(entity_standin):
    server = entity_standin(120)
    sync_all_customers(page_size=50)
    counts = Counter(e["customer_id"] for e in server.list_entities())
    customer_id = counts.most_common(1)[0][0]
    mine = [e for e in server.list_entities() if e["customer_id"] == customer_id]
    server.modify_entity(customer_id, mine[0]["id"], name="Changed")
    server.delete_entity(customer_id, mine[1]["id"])
    server.clear_requests()

    sync_customer(customer_id)

    assert all(body.get("customer_id") == customer_id for body in entity_requests(server))
    rows = Entity.objects.filter(customer__autumn_id=customer_id)
    assert rows.get(autumn_id=mine[0]["id"]).name == "Changed"
    assert rows.get(autumn_id=mine[1]["id"]).is_deleted
    assert rows.filter(deleted_at__isnull=True).count() == len(mine) - 1
    # Other customers' entities are not judged by one customer's refresh.
    assert Entity.objects.filter(deleted_at__isnull=False).count() == 1

    server.delete_customer(customer_id)
    assert sync_customer(customer_id) is None
    assert not rows.filter(deleted_at__isnull=True).exists()
    assert Customer.objects.get(autumn_id=customer_id).is_deleted


def test_catalogue_changes_and_removals_are_mirrored(entity_standin):
    server = entity_standin(20)
    sync_all_customers()
    features, plans = served_catalogue()
    server.set_features([{**features[0], "name": "Renamed feature"}, *features[2:]])
    server.set_plans(plans[1:])

    run = sync_all_customers()

    assert run.status == SyncRun.Status.SUCCEEDED
    assert Feature.objects.get(feature_id=features[0]["id"]).name == "Renamed feature"
    assert Feature.objects.get(feature_id=features[1]["id"]).deleted_at is not None
    assert Plan.objects.get(plan_id=plans[0]["id"]).deleted_at is not None
    assert_catalogue_matches()


def test_a_catalogue_autumn_refuses_is_a_warning_not_a_failed_run(entity_standin):
    server = entity_standin(20)
    server.faults.fail_next(1, status=403, endpoint="features.list")

    run = sync_all_customers()

    assert run.status == SyncRun.Status.SUCCEEDED
    assert any("catalogue" in p.get("warning", "") for p in run.errors)
    assert_mirror_matches(server)


def test_the_catalogue_is_read_while_the_first_customers_page_is_on_its_way(entity_standin):
    server = entity_standin(20)
    server.faults.delay(1.0, endpoint="features.list")

    run = sync_all_customers()

    endpoints = [endpoint for endpoint, _ in server.requests]
    # Read one after the other, the customers would wait for both of the catalogue's.
    assert endpoints.index("customers.list") < endpoints.index("plans.list"), endpoints
    assert run.status == SyncRun.Status.SUCCEEDED and not run.errors
    assert_catalogue_matches()
    assert_mirror_matches(server)


def test_a_catalogue_that_cannot_be_read_fails_the_run_before_any_customer_is_written(entity_standin):
    server = entity_standin(20)
    server.faults.drop_next(1, endpoint="plans.list")  # not an answer Autumn refused with

    with pytest.raises(AutumnConnectionError), AutumnClient(max_retries=0) as client:
        sync_all_customers(client=client)

    run = SyncRun.objects.get()
    assert run.status == SyncRun.Status.FAILED and "plans.list" in run.failure and run.pages == 0
    assert not Customer.objects.exists()
    assert sync_all_customers().status == SyncRun.Status.SUCCEEDED
    assert_catalogue_matches()
    assert_mirror_matches(server)


def test_a_killed_sync_in_its_entities_phase_resumes_there(entity_standin):
    """A real ``autumn_sync`` killed with SIGKILL while it crawls entities."""
    server = entity_standin(300)
    server.faults.delay(0.3, endpoint="entities.list")
    sync_killed_once(server, lambda: SyncRun.objects.filter(entity_pages__gte=2).exists(),
                     "two committed entity pages", "--page-size", "20")
    killed = SyncRun.objects.get()
    assert killed.phase == "entities" and killed.status == SyncRun.Status.RUNNING
    assert Entity.objects.count() == killed.entities_created
    server.faults.delay(0, endpoint="entities.list")
    server.clear_requests()

    run = sync_all_customers(page_size=20)

    assert (run.pk, run.attempts, run.status) == (killed.pk, 2, SyncRun.Status.SUCCEEDED)
    assert entity_requests(server)[0]["start_cursor"] == killed.entity_cursor
    assert_entities_match(server)
    assert_mirror_matches(server)


def test_a_member_of_two_credit_systems_draws_on_the_one_autumn_lists_first(entity_standin):
    """features.list is newest first, and Autumn's check tries credit systems in that order;
    the mirror keeps it (``Feature.position``), not the order rows were created in."""
    server = entity_standin(10)
    features, _ = served_catalogue()

    def credit_system(feature_id: str) -> dict:
        return {"id": feature_id, "name": feature_id, "type": "credit_system", "consumable": True,
                "credit_schema": [{"metered_feature_id": "shared_member", "credit_cost": 1}],
                "event_names": [], "archived": False, "display": {}}

    member = {"id": "shared_member", "name": "Member", "type": "metered", "consumable": True,
              "credit_schema": [], "event_names": [], "archived": False, "display": {}}
    server.set_features([credit_system("older_credits"), member, *features])
    customer = next(c for c in server.list_customers() if c["id"])
    balance = {"granted": 10, "remaining": 10, "usage": 0, "unlimited": False, "overage_allowed": False,
               "max_purchase": None, "next_reset_at": None, "breakdown": []}
    server.modify_customer(customer["id"], balances={
        "older_credits": {**balance, "feature_id": "older_credits"},
        "newer_credits": {**balance, "feature_id": "newer_credits"}})
    sync_all_customers()
    server.set_features([credit_system("newer_credits"), credit_system("older_credits"), member, *features])
    sync_all_customers()

    check = check_feature(Customer.objects.get(autumn_id=customer["id"]), "shared_member")

    assert check.allowed and check.credit_system == "newer_credits"


def test_a_webhook_naming_an_entity_refreshes_that_entity(entity_standin, client, settings):
    server = entity_standin(120)
    sync_all_customers()
    settings.AUTUMN_WEBHOOK_SECRET, settings.AUTUMN_TASK_MODE = SECRET, "inline"
    entity = next(e for e in server.list_entities() if e["id"])
    server.modify_entity(entity["customer_id"], entity["id"], name="Renamed by billing", flags={})

    response = deliver(client, {"type": "balances.limit_reached", "data": {
        "customer_id": entity["customer_id"], "entity_id": entity["id"], "feature_id": "seats",
        "limit_type": "included"}})

    assert response.status_code == 200 and response.json()["status"] == "processed"
    row = Entity.objects.get(autumn_id=entity["id"], customer__autumn_id=entity["customer_id"])
    assert row.name == "Renamed by billing"
    assert row.raw == server.get_entity(entity["customer_id"], entity["id"])
