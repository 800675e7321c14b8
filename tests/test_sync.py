"""The full sync against a real stand-in, into the real test database."""

from __future__ import annotations

import copy
import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from autumn_django.exceptions import AutumnResponseError, ServerError
from autumn_django.models import Balance, Customer, Subscription, SyncRun
from autumn_django.sync import store_customer, sync_all_customers
from autumn_django.sync.writer import MirrorWriter

from .conftest import add_null_cursor_defect, assert_mirror_matches
from .queries import Query, all_queries

pytestmark = pytest.mark.django_db(transaction=True)


def test_full_sync_of_thousands_equals_autumn_field_by_field(make_standin):
    server = make_standin(3000, seed=1)

    run = sync_all_customers()

    assert run.status == SyncRun.Status.SUCCEEDED
    assert (run.created, run.updated, run.unchanged, run.deleted, run.skipped) == (3000, 0, 0, 0, 0)
    assert run.pages >= 3  # a last full page may or may not carry a cursor to an empty one
    assert assert_mirror_matches(server) == 3000
    # The seed holds the hard cases: they must really be in what was compared.
    customers = server.list_customers()
    assert any(c["id"] is None for c in customers)
    assert any(len(c["subscriptions"]) + len(c["purchases"]) > 15 for c in customers)
    assert any(usage % 1 for usage in Balance.objects.exclude(usage=None).values_list("usage", flat=True))


def test_resync_after_creates_updates_renames_and_deletes_equals_autumn_again(make_standin):
    server = make_standin(300, seed=2)
    sync_all_customers(page_size=100)
    customers = [c for c in server.list_customers() if c["id"]]
    changed, renamed, deleted = customers[10], customers[20], customers[30:33]
    server.modify_customer(changed["id"], name="Zoë Renamed-Ñame", balances={})
    server.rename_customer(renamed["id"], "renamed_customer_1")
    for customer in deleted:
        server.delete_customer(customer["id"])
    new = copy.deepcopy(customers[40])
    new.update(id="brand_new_1", email="brand.new@example.com")
    new.pop("created_at")
    server.add_customer(new)

    run = sync_all_customers(page_size=100)

    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.created == 2  # the new customer and the renamed one under its new id
    assert run.updated == 1
    assert run.deleted == 4  # three deleted, and the old id of the renamed customer
    assert run.unchanged == 300 - 1 - 1 - 3
    assert_mirror_matches(server)
    gone = Customer.objects.get(autumn_id=deleted[0]["id"])
    assert gone.deleted_at is not None and gone.subscriptions.exists(), "rows are never hard-deleted"
    assert not Balance.objects.filter(customer__autumn_id=changed["id"]).exists()


def test_unchanged_resync_rewrites_nothing(make_standin):
    server = make_standin(200)
    sync_all_customers()
    before = dict(Customer.objects.values_list("autumn_id", "synced_at"))
    subscription_ids = set(Subscription.objects.values_list("pk", flat=True))

    run = sync_all_customers()

    assert (run.created, run.updated, run.unchanged, run.deleted) == (0, 0, 200, 0)
    assert dict(Customer.objects.values_list("autumn_id", "synced_at")) == before
    assert set(Subscription.objects.values_list("pk", flat=True)) == subscription_ids
    assert_mirror_matches(server)


def test_unchanged_page_costs_a_constant_number_of_queries(make_standin, settings):
    # One cursor: the same number of pages at both sizes (windows split by timing).
    settings.AUTUMN_SYNC_WINDOWS = 1
    # Counted on every connection: on PostgreSQL pages are written on the lanes' own.
    # Twice first: the first pass reads the customers due to reset through customers.get,
    # which resets them at Autumn, so their pages change once.
    make_standin(300)
    for _ in range(2):
        sync_all_customers(page_size=100)
    with all_queries() as small:
        small_run = sync_all_customers(page_size=100)
    make_standin(900, seed=8)
    for _ in range(2):
        sync_all_customers(page_size=300)
    with all_queries() as large:
        large_run = sync_all_customers(page_size=300)
    assert large_run.pages == small_run.pages
    assert progress_saves(small) == small_run.pages  # the pages' own queries were counted
    # Per-page work does not grow with the page's size (no per-customer queries).
    assert len(large) == len(small)


def test_customer_that_comes_back_is_undeleted(make_standin):
    server = make_standin(50)
    sync_all_customers()
    victim = next(c for c in server.list_customers() if c["id"])
    server.delete_customer(victim["id"])
    assert sync_all_customers().deleted == 1
    server.add_customer(victim)

    run = sync_all_customers()

    assert (run.undeleted, run.updated, run.deleted) == (1, 1, 0)
    assert Customer.objects.get(autumn_id=victim["id"]).deleted_at is None
    assert_mirror_matches(server)


def test_customers_over_the_list_cap_get_every_product(make_standin):
    server = make_standin(120)
    capped = [c for c in server.list_customers()
              if len(c["subscriptions"]) + len(c["purchases"]) > 15]
    assert capped, "the seed must hold a customer over the cap"

    sync_all_customers()

    for customer in capped:
        row = Customer.objects.get(autumn_id=customer["id"])
        assert row.subscriptions.count() == len(customer["subscriptions"])
        assert row.purchases.count() == len(customer["purchases"])
    gets = [body for endpoint, body in server.requests if endpoint == "customers.get"]
    assert sorted(body["customer_id"] for body in gets) == sorted(c["id"] for c in capped if c["id"])


def test_idless_customers_are_kept_once_per_email(make_standin):
    server = make_standin(400, seed=3)
    idless = [c for c in server.list_customers() if c["id"] is None]
    assert idless

    sync_all_customers(page_size=70)
    sync_all_customers(page_size=70)

    rows = Customer.objects.filter(autumn_id__isnull=True)
    assert sorted(rows.values_list("email", flat=True)) == sorted(c["email"] for c in idless)
    assert rows.filter(deleted_at__isnull=False).count() == 0


def test_null_cursor_on_a_full_page_neither_stops_early_nor_loops(make_standin):
    server = make_standin(0)
    base = add_null_cursor_defect(server)

    run = sync_all_customers(page_size=3)

    assert run.status == SyncRun.Status.SUCCEEDED
    assert Customer.objects.present().count() == 9
    assert_mirror_matches(server)
    continued = [b for e, b in server.requests if e == "customers.list" and "created_at_range" in b]
    assert continued and continued[0]["created_at_range"]["start"] == base + 2


def test_page_size_above_the_org_maximum_uses_the_maximum(make_standin):
    server = make_standin(90, org_max_limit=40)

    run = sync_all_customers(page_size=5000)

    assert run.status == SyncRun.Status.SUCCEEDED and run.page_size == 40 and run.pages >= 3
    assert {body["limit"] for endpoint, body in server.requests if endpoint == "customers.list"} <= {5000, 40}
    assert_mirror_matches(server)


def test_a_record_that_does_not_parse_is_skipped_reported_and_left_as_it_was(make_standin):
    server = make_standin(80)
    sync_all_customers()
    victim = next(c for c in server.list_customers() if c["id"])
    stored_before = Customer.objects.get(autumn_id=victim["id"]).raw
    server.faults.corrupt_customer(victim["id"], {"created_at": "yesterday"})
    other = next(c for c in server.list_customers() if c["id"] and c["id"] != victim["id"])
    server.modify_customer(other["id"], name="Still stored")

    run = sync_all_customers()

    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.skipped == 1 and run.updated == 1 and run.deleted == 0
    assert run.errors == [{"customer": f"id:{victim['id']}",
                           "error": "created_at: expected epoch milliseconds, got 'yesterday'"}]
    row = Customer.objects.get(autumn_id=victim["id"])
    assert row.raw == stored_before and row.deleted_at is None
    assert Customer.objects.get(autumn_id=other["id"]).name == "Still stored"


def test_sync_failing_midway_keeps_committed_pages_and_the_next_run_resumes(make_standin, settings):
    settings.AUTUMN_SYNC_WINDOWS = 1  # one cursor: windows resume in test_sync_windows.py
    server = make_standin(250)
    server.faults.fail_next(1, status=500, endpoint="customers.list", after=2)

    with pytest.raises(ServerError, match="500"):
        sync_all_customers(page_size=100)

    failed = SyncRun.objects.get()
    assert (failed.status, failed.pages, failed.created) == (SyncRun.Status.FAILED, 2, 200)
    assert "500" in failed.failure and failed.cursor
    assert Customer.objects.count() == 200
    server.clear_requests()

    run = sync_all_customers(page_size=100)

    assert run.pk == failed.pk and run.attempts == 2 and run.status == SyncRun.Status.SUCCEEDED
    first_list = next(b for e, b in server.requests if e == "customers.list")
    assert first_list["start_cursor"] == failed.cursor
    assert run.created == 250 and run.deleted == 0
    assert_mirror_matches(server)


def test_owner_link_survives_resync(make_standin):
    server = make_standin(30)
    sync_all_customers()
    user = get_user_model().objects.create_user("linked", "linked@example.com", "x")
    customer = next(c for c in server.list_customers() if c["id"])
    Customer.objects.filter(autumn_id=customer["id"]).update(owner=user)
    server.modify_customer(customer["id"], name="Changed so the row is rewritten")

    sync_all_customers()

    assert Customer.objects.get(autumn_id=customer["id"]).owner == user


@pytest.mark.autumn_standin(customers=12, seed=5)
def test_the_packaged_fixture_is_enough_for_a_project_to_test_its_sync(autumn_standin):
    run = sync_all_customers()
    assert run.created == 12
    assert_mirror_matches(autumn_standin)


def test_transient_faults_during_a_crawl_are_absorbed(make_standin):
    server = make_standin(300)
    # The requests for pages 2, 3, 4 and 5 each meet a different fault first. Armed by
    # position ("after" counts the list requests each fault lets through while those
    # before it wait their turn), as the crawl runs ahead of the pages being written.
    page = "customers.list"
    server.faults.rate_limit_next(1, retry_after=1, kind="text", endpoint=page, after=1)
    server.faults.fail_next(2, status=503, retry_after=0, endpoint=page, after=2)
    server.faults.drop_next(1, endpoint=page, after=3)
    server.faults.fail_next(1, status=502, endpoint=page, after=4)

    run = sync_all_customers(page_size=60)

    assert run.status == SyncRun.Status.SUCCEEDED and run.created == 300
    assert_mirror_matches(server)
    list_requests = [json.dumps(body, sort_keys=True) for endpoint, body in server.requests
                     if endpoint == page]
    assert len(list_requests) == run.pages + 5, "each of the five faults was met, and retried"
    assert len(set(list_requests)) == run.pages


def test_a_malformed_page_fails_the_run_keeping_what_was_stored(make_standin, settings):
    settings.AUTUMN_SYNC_WINDOWS = 1  # one cursor: windows resume in test_sync_windows.py
    server = make_standin(200)
    server.faults.malformed_next(1, endpoint="customers.list", body=b"<html>502</html>",
                                 content_type="text/html", after=2)

    with pytest.raises(AutumnResponseError, match="not JSON"):
        sync_all_customers(page_size=50)
    failed = SyncRun.objects.get()
    assert failed.status == SyncRun.Status.FAILED and "not JSON" in failed.failure
    assert Customer.objects.count() == 100

    run = sync_all_customers(page_size=50)
    assert run.pk == failed.pk and run.created == 200
    assert_mirror_matches(server)


def test_unchanged_resync_issues_no_write_to_mirror_tables(make_standin):
    make_standin(150)
    sync_all_customers(page_size=50)
    with all_queries() as queries:  # on every connection, the lanes' too
        run = sync_all_customers(page_size=50)
    assert progress_saves(queries) == run.pages  # the pages' own queries were seen
    mirror_tables = ("autumn_django_customer", "autumn_django_subscription", "autumn_django_purchase",
                     "autumn_django_balance", "autumn_django_flag")
    writes = [q.sql for q in queries
              if q.verb in ("INSERT", "UPDATE", "DELETE", "COPY", "TRUNCATE")
              and any(table in q.sql for table in mirror_tables)]
    assert writes == []


def test_sqlite_numbers_reserved_customers_above_every_number_used_before(make_standin):
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL reserves them from the table's sequence")
    server = make_standin(60)
    sync_all_customers(page_size=25)
    last = Customer.objects.order_by("pk").last().pk
    Customer.objects.filter(pk=last).delete()  # its number is not given again (AUTOINCREMENT)
    server.add_customer({"id": "cus_late", "name": "Late", "created_at": 1_900_000_000_000})

    second = sync_all_customers(page_size=25)

    assert second.created == 2
    assert Customer.objects.filter(pk__gt=last).count() == 2
    # A table SQLite has not numbered a row of yet: the rows are numbered as inserted.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM sqlite_sequence WHERE name = %s", [Customer._meta.db_table])
    server.add_customer({"id": "cus_later", "name": "Later", "created_at": 1_900_000_000_001})
    assert sync_all_customers(page_size=25).created == 1
    assert_mirror_matches(server)


@pytest.mark.parametrize("mirror", ["empty", "holding-a-signup"])
def test_a_first_sync_neither_looks_up_its_new_customers_nor_reads_them_back(
        make_standin, settings, mirror):
    settings.AUTUMN_SYNC_WINDOWS = 1
    server = make_standin(150)
    if mirror == "holding-a-signup":
        store_customer(server.list_customers()[7], env="sandbox")
    with all_queries() as queries:
        run = sync_all_customers(page_size=50)
    # Into an empty mirror the customers are inserted without a lookup before (that cost
    # PostgreSQL's server 18.5 ms a page at 100,000), and their primary keys are reserved
    # first, so nothing reads them back after (~35 ms a page there).
    customers_pass = queries[:next(i for i, q in enumerate(queries)  # then the entities'
                                   if q.verb == "UPDATE" and '"phase" = ' in q.sql)]
    reads = [q.sql for q in customers_pass  # by id: before the insert, or after for the keys
             if q.verb == "SELECT" and 'FROM "autumn_django_customer"' in q.sql
             and ('"autumn_id" IN (' in q.sql or '"autumn_id" = ANY(' in q.sql)
             and '"read_via"' not in q.sql]  # the replica-lag question is asked anyway
    assert run.pages >= 3
    if mirror == "empty":
        assert run.created == 150 and reads == []
    else:  # each page of customers is looked up, once, before its insert
        assert (run.created, run.unchanged) == (149, 1) and len(reads) == 150 // 50
    assert_mirror_matches(server)  # each customer's children are on its own row


def progress_saves(queries: list[Query]) -> int:
    """How many times the run's progress was saved: once per page, in the page's
    transaction (on a lane's connection when there are lanes)."""
    return sum(1 for q in queries if q.verb == "UPDATE" and "autumn_django_syncrun" in q.sql
               and '"cursor"' in q.sql)  # not the entities phase's "entity_cursor"


def test_resumed_run_settles_deletions_only_where_it_crawled(make_standin, settings):
    settings.AUTUMN_SYNC_WINDOWS = 1  # one cursor: "before the point reached" (windows: test_sync_windows.py)
    server = make_standin(200)
    sync_all_customers(page_size=50)
    ids = [c["id"] for c in server.list_customers() if c["id"]]

    server.faults.fail_next(1, status=500, endpoint="customers.list", after=2)
    with pytest.raises(ServerError):
        sync_all_customers(page_size=50)
    early, late = ids[5], ids[-5]  # before and after the point the failed run reached
    server.delete_customer(early)
    server.delete_customer(late)

    resumed = sync_all_customers(page_size=50)

    assert resumed.attempts == 2 and resumed.deleted == 1
    assert Customer.objects.get(autumn_id=late).deleted_at is not None
    # The early part was crawled by the attempt that died; its sightings died with it.
    assert Customer.objects.get(autumn_id=early).deleted_at is None
    assert sync_all_customers(page_size=50).deleted == 1
    assert_mirror_matches(server)


@pytest.mark.parametrize("prefetch_process", [True, False], ids=["child-process", "in-process"])
def test_both_page_sources_keep_the_same_mirror(make_standin, settings, prefetch_process):
    settings.AUTUMN_SYNC_PREFETCH_PROCESS = prefetch_process
    server = make_standin(400, seed=3)
    broken = next(c["id"] for c in server.list_customers() if c["id"])
    server.faults.corrupt_customer(broken, {"balances": "none"})

    first = sync_all_customers(page_size=70)
    assert (first.created, first.skipped) == (399, 1)
    server.faults.clear()
    changed = [c["id"] for c in server.list_customers() if c["id"]][100:110]
    for customer_id in changed:
        server.modify_customer(customer_id, metadata={"plan_note": "changed"})
    second = sync_all_customers(page_size=70)

    assert (second.created, second.updated, second.unchanged, second.deleted) == (1, 10, 389, 0)
    assert_mirror_matches(server)


@pytest.mark.parametrize("mirror", ["empty", "holding-another"])
def test_a_customer_stored_by_a_signup_while_its_page_is_written_is_updated_not_doubled(
        make_standin, monkeypatch, mirror):
    server = make_standin(30)
    newcomer = next(c for c in server.list_customers() if c["id"] and c["balances"] and c["subscriptions"])
    if mirror == "holding-another":  # pages are looked up before their insert
        store_customer(next(c for c in server.list_customers() if c["id"] != newcomer["id"]), env="sandbox")
    looked_up = MirrorWriter._plan
    signups = []

    def look_up_then_a_signup_stores_it(writer, records):
        plan = looked_up(writer, records)
        if not signups and any(record.key == ("id", newcomer["id"]) for record in plan.new):
            signups.append(newcomer["id"])
            # What a signup's get_or_create does between the page's lookup (or, into an
            # empty mirror, the writer's start) and its insert: the customer is stored,
            # children and all. Its answer was read before the
            # page (else the page's older rows would be left out: test_sync_read_order).
            store_customer({**newcomer, "name": "Stored by a signup"}, env="sandbox",
                           read_at=timezone.now() - timedelta(minutes=5))
        return plan

    monkeypatch.setattr(MirrorWriter, "_plan", look_up_then_a_signup_stores_it)

    run = sync_all_customers()

    assert signups and run.status == SyncRun.Status.SUCCEEDED
    assert (run.created, run.updated) == ((29, 1) if mirror == "empty" else (28, 1))
    assert Customer.objects.filter(autumn_id=newcomer["id"]).count() == 1
    assert_mirror_matches(server)  # the signup's children were replaced, not added to


def test_text_with_tabs_newlines_and_backslashes_is_stored_as_sent(make_standin):
    server = make_standin(0)
    awkward = "tab\there, line\nbreak, return\r, back\\slash \\N"
    server.add_customer({
        "id": "cus_awkward", "name": awkward, "email": "awkward@example.com", "created_at": 1_700_000_000_000,
        "subscriptions": [{"id": f"sub {awkward}", "plan_id": awkward, "status": "active"}],
        "purchases": [{"plan_id": f"pack {awkward}", "quantity": 2}],
        "balances": {"credits": {"granted": 10, "remaining": 4.5, "usage": 5.5,
                                 "breakdown": [{"note": awkward, "usage": 5.5}]}},
        "flags": {"beta": {"id": awkward, "plan_id": None}},
    })

    run = sync_all_customers()

    assert run.created == 1
    assert_mirror_matches(server)
    balance = Balance.objects.get(customer__autumn_id="cus_awkward")
    assert balance.breakdown == [{"note": awkward, "usage": 5.5}]


def test_licenses_are_kept_in_raw_exactly_as_served(make_standin):
    server = make_standin(200, seed=4)
    customers = server.list_customers()
    assert any(c["licenses"] for c in customers) and any(not c["licenses"] for c in customers)

    sync_all_customers()

    rows = {(c.autumn_id or c.email): c for c in Customer.objects.all()}
    for customer in customers:
        assert rows[customer["id"] or customer["email"]].raw["licenses"] == customer["licenses"]
    # A seat assigned changes nothing but the pool's numbers: the mirror still picks it up.
    seat = next(c for c in customers if c["id"] and any(p["remaining"] for p in c["licenses"]))
    pools = copy.deepcopy(seat["licenses"])
    pool = next(p for p in pools if p["remaining"])
    pool["usage"] += 1
    pool["remaining"] -= 1
    server.modify_customer(seat["id"], licenses=pools)

    run = sync_all_customers()

    assert (run.updated, run.unchanged) == (1, 199)
    assert Customer.objects.get(autumn_id=seat["id"]).raw["licenses"] == pools
    assert_mirror_matches(server)
