"""Pages written on several connections at once (PostgreSQL): they still commit in order,
a page that fails takes no later page with it into the mirror, and the signals and the
progress of every stored page reach the calling thread."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest
from django.db import DatabaseError, connection, transaction

from autumn_django.exceptions import ServerError
from autumn_django.models import Customer, SyncRun
from autumn_django.signals import customer_created
from autumn_django.sync import sync_all_customers
from autumn_django.sync.lanes import CommitLanes, lane_count

from .conftest import assert_mirror_matches

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _one_cursor(settings):
    """Pages here come in one cursor's order, as the counts say; windows and lanes
    together are exercised by test_sync_windows.py on PostgreSQL."""
    settings.AUTUMN_SYNC_WINDOWS = 1

on_postgres = pytest.mark.skipif(connection.vendor != "postgresql",
                                 reason="SQLite takes one writer at a time: pages are written in turn")
POISON = "poison@example.com"


def test_lanes_are_used_only_where_pages_can_commit_on_their_own(settings):
    wanted = 3
    expected = wanted if connection.vendor == "postgresql" else 1
    assert lane_count("default", wanted) == expected
    with transaction.atomic():  # the caller's transaction: every page must be part of it
        assert lane_count("default", wanted) == 1


@contextmanager
def created_signals():
    """The customers ``customer_created`` announced, each as (pk, sent on the main thread)."""
    sent = []

    def receive(sender, customer, **kwargs):
        sent.append((customer.pk, threading.current_thread() is threading.main_thread()))

    customer_created.connect(receive, dispatch_uid="lanes-test")
    try:
        yield sent
    finally:
        customer_created.disconnect(dispatch_uid="lanes-test")


def backends() -> int:
    """Client connections to the test database. Not every backend on it: an autovacuum
    worker on it is listed too, and one that started during a sync would count as a lane."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND backend_type = 'client backend'")
        return cursor.fetchone()[0]


@on_postgres
def test_pages_on_two_connections_commit_in_order_and_report_on_the_calling_thread(
        make_standin, settings):
    settings.AUTUMN_SYNC_DB_CONNECTIONS = 2
    server = make_standin(300, seed=5)
    before = backends()
    reports = []

    def progress(report):
        reports.append((report.run.pages, report.run.created, report.page.next_position,
                        threading.current_thread() is threading.main_thread(), backends()))

    with created_signals() as created:
        run = sync_all_customers(page_size=40, progress=progress)

    assert run.status == SyncRun.Status.SUCCEEDED and run.pages == 8
    assert [pages for pages, *_ in reports] == list(range(1, 9))  # one report per page, in order
    assert [count for _, count, *_ in reports] == sorted(count for _, count, *_ in reports)
    assert reports[-1][2] is None and all(position for _, _, position, *_ in reports[:-1])
    assert all(on_main for *_, on_main, _ in reports)
    assert max(count for *_, count in reports) == before + 2  # the two lanes' connections
    assert backends() == before  # closed when the sync ended
    assert sorted(pk for pk, _ in created) == sorted(Customer.objects.values_list("pk", flat=True))
    assert all(on_main for _, on_main in created)
    assert_mirror_matches(server)


def poison_customer_inserts() -> None:
    """Make the database refuse a customer with the POISON email: on PostgreSQL when the
    transaction commits (a deferred trigger, like a foreign key), the latest a page can
    fail, after the page behind it has written its rows."""
    table = Customer._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("CREATE FUNCTION autumn_test_poison() RETURNS trigger LANGUAGE plpgsql "
                           "AS $$ BEGIN RAISE EXCEPTION 'poisoned customer %', NEW.email; END $$")
            cursor.execute(f"CREATE CONSTRAINT TRIGGER autumn_test_poison AFTER INSERT ON {table} "
                           f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.email = '{POISON}') "
                           "EXECUTE FUNCTION autumn_test_poison()")
        else:
            cursor.execute(f"CREATE TRIGGER autumn_test_poison BEFORE INSERT ON {table} "
                           f"WHEN NEW.email = '{POISON}' "
                           "BEGIN SELECT RAISE(ABORT, 'poisoned customer'); END")


def cure_customer_inserts() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER autumn_test_poison ON {Customer._meta.db_table}"
                       if connection.vendor == "postgresql" else "DROP TRIGGER autumn_test_poison")
        if connection.vendor == "postgresql":
            cursor.execute("DROP FUNCTION autumn_test_poison()")


@pytest.mark.parametrize("lanes", [1, 2])
def test_a_page_failing_at_commit_keeps_every_later_page_out(make_standin, settings, lanes):
    settings.AUTUMN_SYNC_DB_CONNECTIONS = lanes
    server = make_standin(200, seed=11)
    listed = server.list_customers()
    poisoned, broken = [c for c in listed[100:150] if c["id"]][:2]  # both on page 3 of 5
    server.modify_customer(poisoned["id"], email=POISON)
    server.faults.corrupt_customer(broken["id"], {"balances": "none"})
    poison_customer_inserts()
    with created_signals() as created, pytest.raises(DatabaseError, match="poisoned customer"):
        sync_all_customers(page_size=50)

    failed = SyncRun.objects.get()
    assert (failed.status, failed.pages, failed.created) == (SyncRun.Status.FAILED, 2, 100)
    assert "poisoned customer" in failed.failure and "PreviousPageFailed" not in failed.failure
    stored = {c.autumn_id or c.email for c in Customer.objects.all()}
    assert stored == {c["id"] or c["email"] for c in listed[:100]}  # page 4 was written, not kept
    assert len(created) == 100
    assert failed.errors == []  # page 3's bad record was not stored either: it is not reported

    cure_customer_inserts()
    run = sync_all_customers(page_size=50)

    assert (run.pk, run.status, run.created, run.skipped) == (failed.pk, SyncRun.Status.SUCCEEDED, 199, 1)
    assert [error["customer"] for error in run.errors] == [f"id:{broken['id']}"]  # reported once
    assert Customer.objects.count() == 199


def test_pages_in_flight_when_the_crawl_fails_are_stored_and_announced(make_standin, settings):
    settings.AUTUMN_SYNC_DB_CONNECTIONS = 2
    server = make_standin(250, seed=13)
    server.faults.fail_next(1, status=500, endpoint="customers.list", after=2)
    with created_signals() as created, pytest.raises(ServerError, match="500"):
        sync_all_customers(page_size=100)

    assert SyncRun.objects.get().pages == 2
    assert sorted(pk for pk, _ in created) == sorted(Customer.objects.values_list("pk", flat=True))
    assert len(created) == 200


@pytest.fixture
def scratch_table():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE autumn_test_lane_rows (key text PRIMARY KEY, written_at float)")
    yield "autumn_test_lane_rows"
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE autumn_test_lane_rows")


def lanes_writing_keys(items, touches):
    """CommitLanes over items (key, seconds to wait before writing it): when each write
    began and ended, in the order the items were stored."""
    def lane():
        with connection.cursor() as cursor:  # this lane's own connection
            cursor.execute("SET lock_timeout = '3s'")  # a deadlock fails the test, not hangs it

    def write(item, _lane):
        key, delay = item
        began = time.monotonic()
        time.sleep(delay)
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO autumn_test_lane_rows VALUES (%s, %s) ON CONFLICT DO NOTHING",
                           [key, time.monotonic()])
        return began, time.monotonic()

    with CommitLanes(2, "default", lane=lane, write=write, record=lambda item, spans: spans,
                     touches=touches) as lanes:
        return [(item, spans) for item, spans in lanes.stored_in_order(items)]


@on_postgres
def test_pages_writing_different_rows_are_written_at_the_same_time(scratch_table):
    stored = lanes_writing_keys([("a", 0.5), ("b", 0.0)], touches=lambda item: {item[0]})

    (first, (_, first_ended)), (second, (second_began, _)) = stored
    assert (first[0], second[0]) == ("a", "b")
    assert second_began < first_ended  # "b" was written while "a" was still being written


@on_postgres
def test_pages_writing_the_same_row_are_never_in_flight_together(scratch_table):
    # Were both in flight, the second would write the row first, the first would wait on
    # it, and the second would wait for its turn on the first: a deadlock.
    stored = lanes_writing_keys([("shared", 0.5), ("shared", 0.0)], touches=lambda item: {item[0]})

    (_, (_, first_ended)), (_, (second_began, _)) = stored
    assert second_began >= first_ended
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM autumn_test_lane_rows")
        assert cursor.fetchone()[0] == 1
