"""Data read earlier never overwrites data read later (issue 14): a page written after a
refresh, two refreshes finishing in reverse order, a list lagging behind customers.get,
and the plan fields customers.get's cache keeps stale. Against the stand-in, on the test
database (SQLite or PostgreSQL), with the writes' own ordering forced."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connections, transaction
from django.utils import timezone

from autumn_django.client import AutumnClient
from autumn_django.models import Customer, SyncRun
from autumn_django.signals import customer_created, customer_deleted, customer_updated
from autumn_django.sync import get_or_create_customer, store_customer, sync_all_customers, sync_customer
from autumn_django.sync.pages.records import LIST_PRODUCT_CAP, parse_customer
from autumn_django.sync.writer import MirrorWriter

from .conftest import assert_mirror_matches

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def signals():
    """The autumn ids each customer signal was sent for, from any thread."""
    got: dict[str, list] = {"created": [], "updated": [], "deleted": []}

    def receiver(name: str) -> Callable:
        return lambda sender, customer, **kw: got[name].append(customer.autumn_id)

    receivers = {customer_created: receiver("created"), customer_updated: receiver("updated"),
                 customer_deleted: receiver("deleted")}
    for signal, receiver in receivers.items():
        signal.connect(receiver, sender=Customer, weak=False)
    yield got
    for signal, receiver in receivers.items():
        signal.disconnect(receiver, sender=Customer)


def forget(signals: dict[str, list]) -> None:
    for sent in signals.values():
        sent.clear()


def in_thread(function: Callable, *args) -> Future:
    """Run ``function`` on a thread of its own (its own database connection)."""
    done: Future = Future()

    def run() -> None:
        try:
            done.set_result(function(*args))
        except BaseException as exc:
            done.set_exception(exc)
        finally:
            connections.close_all()

    threading.Thread(target=run, daemon=True).start()
    return done


def capped(customers: list[dict]) -> list[dict]:
    return [c for c in customers
            if c["id"] and len(c["subscriptions"]) + len(c["purchases"]) > LIST_PRODUCT_CAP]


def plain(customers: list[dict]) -> list[dict]:
    """Customers with an id, under the list's product cap, with balances and subscriptions."""
    capped_ids = {c["id"] for c in capped(customers)}
    return [c for c in customers
            if c["id"] and c["id"] not in capped_ids and c["balances"] and c["subscriptions"]]


# -- a page against a refresh ---------------------------------------------------------------


def test_a_page_read_before_a_refresh_but_written_after_it_does_not_overwrite_it(
        make_standin, monkeypatch, signals):
    server = make_standin(40)
    sync_all_customers()
    victim = plain(server.list_customers())[3]["id"]
    server.modify_customer(victim, name="Read by the page")
    write = MirrorWriter.write
    refreshed: list[str] = []

    def a_refresh_lands_first(writer, records, **kwargs):
        if not refreshed and any(record.key == ("id", victim) for record in records):
            # The page holding the victim was read. Before it is written, the customer
            # changes again and a refresh (another thread and connection) stores it.
            refreshed.append(victim)
            server.modify_customer(victim, name="Read by the refresh")
            in_thread(sync_customer, victim).result(timeout=30)
        return write(writer, records, **kwargs)

    monkeypatch.setattr(MirrorWriter, "write", a_refresh_lands_first)
    forget(signals)

    run = sync_all_customers()

    row = Customer.objects.get(autumn_id=victim)
    assert refreshed and (row.name, row.read_via) == ("Read by the refresh", "get")
    assert (run.created, run.updated, run.unchanged) == (0, 0, 40)  # the page's row was not written
    assert signals == {"created": [], "updated": [victim], "deleted": []}  # the refresh's only
    assert_mirror_matches(server)


def test_a_refresh_stored_after_a_pages_lookup_is_not_overwritten_by_its_upsert(make_standin, monkeypatch):
    server = make_standin(30)
    sync_all_customers()
    victim = plain(server.list_customers())[0]
    server.modify_customer(victim["id"], name="Read by the page")
    looked_up = MirrorWriter._plan
    stored: list[Customer] = []
    refreshing = threading.Event()

    def a_refresh_lands_after_the_lookup(writer, records):
        plan = looked_up(writer, records)
        if not refreshing.is_set() and any(record.key == ("id", victim["id"]) for record, _ in plan.changed):
            # The page found the row changed; before its upsert, a refresh of data read
            # after the page (now) is stored, children and all.
            refreshing.set()
            stored.append(store_customer({**victim, "name": "Read by the refresh"}, env="sandbox"))
        return plan

    monkeypatch.setattr(MirrorWriter, "_plan", a_refresh_lands_after_the_lookup)

    run = sync_all_customers()

    row = Customer.objects.get(autumn_id=victim["id"])
    assert stored and row.name == "Read by the refresh"
    assert row.read_at == stored[0].read_at and row.synced_at == stored[0].synced_at
    assert run.updated == 0
    assert sorted(row.balances.values_list("pk", flat=True)) == sorted(
        stored[0].balances.values_list("pk", flat=True)), "its children were left alone"


@pytest.mark.parametrize(("read_via", "seconds_after_the_stored_read", "written"), [
    ("get", -1, False),  # read earlier: never over data read later
    ("list", -1, False),
    ("get", 30, True),  # read later: customers.get is trusted at once
    ("list", 30, False),  # the replica may not have caught up with the get read 30 s before
    ("list", 120, True),  # past AUTUMN_SYNC_REPLICA_LAG_SECONDS (60): the list is trusted
])
def test_the_writer_keeps_a_row_holding_fresher_data_children_and_all(
        make_standin, read_via, seconds_after_the_stored_read, written):
    server = make_standin(6)
    customer = plain(server.list_customers())[0]
    stored_at = timezone.now() - timedelta(minutes=10)
    stored = store_customer(customer, env="sandbox", read_at=stored_at)
    children = sorted(stored.subscriptions.values_list("pk", flat=True))
    incoming = parse_customer({**customer, "name": "Incoming", "balances": {}},
                              read_at=stored_at + timedelta(seconds=seconds_after_the_stored_read),
                              read_via=read_via)

    with transaction.atomic():
        result = MirrorWriter("sandbox").write([incoming], now=timezone.now())

    row = Customer.objects.get(pk=stored.pk)
    assert (result.updated, result.kept) == (([row.pk], []) if written else ([], [row.pk]))
    assert result.pk_by_key == {("id", customer["id"]): row.pk}
    if written:
        assert (row.name, row.read_via, row.read_at) == ("Incoming", read_via, incoming.read_at)
        assert not row.balances.exists()
    else:
        assert (row.name, row.read_via, row.read_at) == (customer["name"], "get", stored_at)
        assert sorted(row.subscriptions.values_list("pk", flat=True)) == children
        assert row.balances.count() == len(customer["balances"])


# -- a refresh against a refresh ----------------------------------------------------------


def test_two_refreshes_finishing_in_reverse_order_keep_the_one_that_asked_last(
        make_standin, monkeypatch, signals):
    server = make_standin(10)
    sync_all_customers()
    victim = plain(server.list_customers())[0]["id"]
    server.modify_customer(victim, name="First asked")
    answered, release = threading.Event(), threading.Event()
    post = AutumnClient.post_for_response

    def first_answer_stored_late(client, endpoint, body):
        response = post(client, endpoint, body)
        if endpoint == "customers.get" and not answered.is_set():
            answered.set()  # the first refresh has Autumn's answer, and waits to store it
            release.wait(30)
        return response

    monkeypatch.setattr(AutumnClient, "post_for_response", first_answer_stored_late)
    forget(signals)
    first = in_thread(sync_customer, victim)
    assert answered.wait(30)
    server.modify_customer(victim, name="Second asked")

    second = sync_customer(victim)
    release.set()
    first_row = first.result(timeout=30)

    row = Customer.objects.get(autumn_id=victim)
    assert row.name == second.name == first_row.name == "Second asked"
    assert signals["updated"] == [victim]  # the first refresh wrote nothing
    assert_mirror_matches(server)


def test_a_refresh_that_finds_a_customer_gone_does_not_delete_a_row_read_after_it(make_standin):
    server = make_standin(10)
    sync_all_customers()
    customer = plain(server.list_customers())[0]
    post = AutumnClient.post_for_response

    def meanwhile_it_comes_back_and_is_stored(client, endpoint, body):
        try:
            return post(client, endpoint, body)
        finally:
            if endpoint == "customers.get":
                store_customer({**customer, "name": "Back again"}, env="sandbox")

    server.delete_customer(customer["id"])
    AutumnClient.post_for_response = meanwhile_it_comes_back_and_is_stored
    try:
        assert sync_customer(customer["id"]) is None
    finally:
        AutumnClient.post_for_response = post

    row = Customer.objects.get(autumn_id=customer["id"])
    assert row.deleted_at is None and row.name == "Back again"


# -- a list lagging behind customers.get ----------------------------------------------------


def test_list_rows_behind_a_recent_refresh_are_read_again_not_written(make_standin, signals):
    server = make_standin(60)
    sync_all_customers()
    customers = server.list_customers()
    changed, deleted = (c["id"] for c in plain(customers)[:2])
    server.lag_list(60_000)  # the list shows nothing that changes from now on
    server.modify_customer(changed, name="Seen by customers.get")
    server.delete_customer(deleted)
    sync_customer(changed)  # webhook refreshes
    sync_customer(deleted)
    signed_up = get_or_create_customer("cus_signed_up", email="signed.up@example.com")
    forget(signals)
    server.clear_requests()

    run = sync_all_customers()

    assert Customer.objects.get(autumn_id=changed).name == "Seen by customers.get"
    assert Customer.objects.get(autumn_id=deleted).deleted_at is not None
    assert Customer.objects.get(pk=signed_up.pk).deleted_at is None, "not in the replica yet"
    assert (run.created, run.updated, run.deleted, run.undeleted) == (0, 0, 0, 0)
    assert run.reread == len(capped(customers)) + 2
    assert SyncRun.objects.get(pk=run.pk).reread == run.reread
    gets = [body["customer_id"] for endpoint, body in server.requests if endpoint == "customers.get"]
    assert sorted(gets) == sorted([c["id"] for c in capped(customers)] + [changed, deleted])
    assert signals == {"created": [], "updated": [], "deleted": []}

    server.lag_list(0)  # the replica caught up
    again = sync_all_customers()
    assert (again.created, again.updated, again.deleted, again.reread) == (0, 0, 0, len(capped(customers)))
    assert_mirror_matches(server)


def test_a_list_row_read_again_is_written_as_customers_get_answers_now(make_standin, signals):
    server = make_standin(30)
    sync_all_customers()
    victim = plain(server.list_customers())[0]["id"]
    server.lag_list(60_000)
    server.modify_customer(victim, name="Refreshed")
    sync_customer(victim)
    server.modify_customer(victim, name="Changed again since")
    forget(signals)

    run = sync_all_customers()

    row = Customer.objects.get(autumn_id=victim)
    assert (row.name, row.read_via) == ("Changed again since", "get")
    assert run.updated == 1 and signals["updated"] == [victim]


def test_with_no_replica_lag_margin_a_later_list_row_is_written(make_standin, settings):
    settings.AUTUMN_SYNC_REPLICA_LAG_SECONDS = 0
    server = make_standin(20)
    sync_all_customers()
    victim = plain(server.list_customers())[0]["id"]
    before = server.get_customer(victim)["name"]
    server.lag_list(60_000)
    server.modify_customer(victim, name="Refreshed")
    sync_customer(victim)

    run = sync_all_customers()

    # What the mirror cannot know: the replica's row is older than it says.
    assert Customer.objects.get(autumn_id=victim).name == before
    assert run.updated == 1 and run.reread == len(capped(server.list_customers()))


# -- plan fields customers.get's cache keeps stale -------------------------------------------


def test_a_plan_field_stale_in_the_get_cache_is_not_rewritten_counted_or_signalled(
        make_standin, signals, capsys):
    server = make_standin(120)
    customers = server.list_customers()
    over_cap = next(c for c in capped(customers) if c["subscriptions"])
    plan = over_cap["subscriptions"][0]["plan_id"]
    on_plan = [c["id"] for c in plain(customers) if any(s["plan_id"] == plan for s in c["subscriptions"])]
    assert len(on_plan) >= 2
    listed = over_cap["subscriptions"][0]["auto_enable"]
    server.faults.stale_get_cache(plan, {"auto_enable": not listed})
    # A refresh before any sync stores get's answer as it is: the mirror has no list row.
    call_command("autumn_sync", "--customer", on_plan[0])
    assert Customer.objects.get(autumn_id=on_plan[0]).subscriptions.filter(
        plan_id=plan, auto_enable=not listed).exists()

    first = sync_all_customers()

    # That row disagreed with the list less than 60 s after get read it: read again, and
    # stored with the list's plan fields.
    assert (first.created, first.updated) == (119, 1)
    assert_mirror_matches(server)
    synced = dict(Customer.objects.values_list("autumn_id", "synced_at"))
    forget(signals)
    for _ in range(2):
        for customer_id in (on_plan[0], on_plan[1], over_cap["id"]):
            call_command("autumn_sync", "--customer", customer_id)
        run = sync_all_customers()
        assert (run.created, run.updated, run.unchanged) == (0, 0, 120)

    assert signals == {"created": [], "updated": [], "deleted": []}
    assert dict(Customer.objects.values_list("autumn_id", "synced_at")) == synced, "nothing rewritten"
    assert_mirror_matches(server)
    assert first.reread == len(capped(customers)) + 1
