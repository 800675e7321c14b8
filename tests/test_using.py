"""A mirror kept in another database than the default (``using=``): every row the sync
writes (customers and their children, page memos, the run with its resume point, user
links) goes to that database, in that database's transactions, and nothing to the default."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError

from autumn_django.client import AutumnClient
from autumn_django.exceptions import ServerError
from autumn_django.models import Balance, Customer, Flag, Purchase, Subscription, SyncedPage, SyncRun
from autumn_django.owners import link_owners_to_customers
from autumn_django.signals import customer_created
from autumn_django.sync import (
    get_or_create_customer,
    runs,
    store_customer,
    sync_all_customers,
    sync_customer,
    update_customer,
)

from .conftest import assert_mirror_matches

pytestmark = pytest.mark.django_db(databases=["default", "other"], transaction=True)

OTHER = "other"
User = get_user_model()
MODELS = (Customer, Subscription, Purchase, Balance, Flag, SyncedPage, SyncRun, User)


def rows_in(alias: str) -> dict[str, int]:
    return {model.__name__: model.objects.using(alias).count() for model in MODELS}


def assert_default_untouched() -> None:
    assert rows_in("default") == dict.fromkeys(rows_in("default"), 0)


def user_in_other(name: str):
    return User.objects.db_manager(OTHER).create_user(name, f"{name}@example.com", "x")


def test_full_sync_writes_every_row_and_the_run_in_that_database_only(make_standin):
    server = make_standin(250, seed=3)
    assert any(c["id"] is None for c in server.list_customers())  # id-less ones too
    late = user_in_other("late")  # its signup never reached the mirror: the sync links it
    server.add_customer({"id": f"user_{late.pk}", "email": "late@example.com", "name": "late"})
    created = []

    def receive(sender, customer, **kwargs):
        created.append(customer._state.db)

    customer_created.connect(receive, dispatch_uid="using-test")
    try:
        run = sync_all_customers(page_size=100, using=OTHER)
    finally:
        customer_created.disconnect(dispatch_uid="using-test")

    assert run.status == SyncRun.Status.SUCCEEDED and run.created == 251
    stored = SyncRun.objects.using(OTHER).get()
    assert (stored.pk, stored.status, stored.pages, stored.cursor) == (
        run.pk, SyncRun.Status.SUCCEEDED, run.pages, "")
    assert assert_mirror_matches(server, using=OTHER) == 251
    in_other = rows_in(OTHER)
    assert all(in_other[model.__name__] for model in MODELS), in_other
    assert Customer.objects.using(OTHER).get(autumn_id=f"user_{late.pk}").owner_id == late.pk
    assert created == [OTHER] * 251
    assert_default_untouched()

    again = sync_all_customers(page_size=100, using=OTHER)

    assert (again.created, again.updated, again.unchanged, again.deleted) == (0, 0, 251, 0)
    assert SyncRun.objects.using(OTHER).count() == 2
    # The page memos may differ in number: a page the first run's crawl cut short (its
    # window split while it was on its way) has no memo, and the next run reads it whole.
    # Every mirror row is as it was, and they are all in OTHER still.
    after = rows_in(OTHER)
    assert after.pop("SyncedPage") and in_other.pop("SyncedPage")
    assert after == {**in_other, "SyncRun": 2}
    assert_default_untouched()


def test_a_run_failing_on_a_later_page_keeps_its_cursor_there_and_resumes_there(make_standin, settings):
    settings.AUTUMN_SYNC_WINDOWS = 1  # one cursor, as the counts below say
    server = make_standin(250)
    server.faults.fail_next(1, status=500, endpoint="customers.list", after=2)

    with pytest.raises(ServerError, match="500"):
        sync_all_customers(page_size=100, using=OTHER)

    failed = SyncRun.objects.using(OTHER).get()
    assert (failed.status, failed.pages, failed.created) == (SyncRun.Status.FAILED, 2, 200)
    assert "500" in failed.failure and failed.cursor
    assert Customer.objects.using(OTHER).count() == 200
    assert_default_untouched()
    server.clear_requests()

    run = sync_all_customers(page_size=100, using=OTHER)

    assert (run.pk, run.attempts, run.status) == (failed.pk, 2, SyncRun.Status.SUCCEEDED)
    first_list = next(body for endpoint, body in server.requests if endpoint == "customers.list")
    assert first_list["start_cursor"] == failed.cursor
    assert (run.created, run.deleted) == (250, 0)
    assert_mirror_matches(server, using=OTHER)
    assert_default_untouched()


@pytest.mark.parametrize("lanes", [1, 2])
def test_a_page_failing_after_it_recorded_its_progress_keeps_neither_its_rows_nor_its_cursor(
        make_standin, settings, monkeypatch, lanes):
    # The run's resume point is the last thing a page writes: it must roll back with the
    # page's rows, so it has to be written in that page's transaction, on that database.
    settings.AUTUMN_SYNC_DB_CONNECTIONS = lanes
    settings.AUTUMN_SYNC_WINDOWS = 1  # one cursor, as the counts below say
    server = make_standin(250)
    save_page = runs.save_page

    def save_then_fail_on_page_3(run, windows):
        save_page(run, windows)
        if run.pages == 3:
            raise DatabaseError("page 3 could not commit")

    monkeypatch.setattr(runs, "save_page", save_then_fail_on_page_3)
    with pytest.raises(DatabaseError, match="page 3 could not commit"):
        sync_all_customers(page_size=100, using=OTHER)
    monkeypatch.undo()

    failed = SyncRun.objects.using(OTHER).get()
    assert (failed.status, failed.pages, failed.created) == (SyncRun.Status.FAILED, 2, 200)
    assert failed.cursor  # page 2's: page 3 was read but not stored
    assert Customer.objects.using(OTHER).count() == 200
    assert_default_untouched()

    run = sync_all_customers(page_size=100, using=OTHER)

    assert (run.pk, run.status, run.created) == (failed.pk, SyncRun.Status.SUCCEEDED, 250)
    assert_mirror_matches(server, using=OTHER)  # page 3's customers were not skipped
    assert_default_untouched()


def test_an_idless_customer_given_an_id_keeps_its_row_and_user_there(make_standin):
    server = make_standin(0)
    server.add_customer({"id": None, "email": "ada@example.com", "name": "Ada",
                         "created_at": 1_700_000_000_000})
    sync_all_customers(using=OTHER)
    row = Customer.objects.using(OTHER).get()
    user = user_in_other("ada")
    Customer.objects.using(OTHER).filter(pk=row.pk).update(owner=user)
    with AutumnClient() as client:  # Autumn gives the id-less customer an id
        client.customers.get_or_create("cus_ada", email="ada@example.com")

    run = sync_all_customers(using=OTHER)

    assert (run.created, run.updated, run.deleted) == (0, 1, 0)
    claimed = Customer.objects.using(OTHER).get()
    assert (claimed.pk, claimed.autumn_id, claimed.owner_id) == (row.pk, "cus_ada", user.pk)
    assert_mirror_matches(server, using=OTHER)
    assert_default_untouched()


def test_sync_customer_writes_there(make_standin):
    server = make_standin(0)
    get_or_create_customer(None, email="bo@example.com", using=OTHER)
    idless = Customer.objects.using(OTHER).get()
    with AutumnClient() as client:
        client.customers.get_or_create("cus_bo", email="bo@example.com")

    row = sync_customer("cus_bo", using=OTHER)

    assert row._state.db == OTHER
    assert (row.pk, row.autumn_id) == (idless.pk, "cus_bo")  # the id-less row, claimed
    assert Customer.objects.using(OTHER).count() == 1
    server.delete_customer("cus_bo")
    assert sync_customer("cus_bo", using=OTHER) is None
    assert Customer.objects.using(OTHER).get().deleted_at is not None
    assert_default_untouched()


def test_get_or_create_and_update_customer_write_and_link_there(make_standin):
    server = make_standin(0)
    user = user_in_other("cy")
    first = get_or_create_customer(None, email="cy@example.com", auto_enable_plan_id="free", using=OTHER)
    assert first.autumn_id is None and first.subscriptions.count() == 1

    # Autumn gives the id-less customer an id: its row, subscription and all, is kept.
    claimed = get_or_create_customer("cus_cy", owner=user, email="cy@example.com", using=OTHER)

    assert (claimed.pk, claimed.autumn_id, claimed.owner_id) == (first.pk, "cus_cy", user.pk)
    assert claimed.subscriptions.count() == 1
    renamed = update_customer("cus_cy", new_customer_id="cus_cy2", name="Cy", using=OTHER)
    assert (renamed.pk, renamed.autumn_id, renamed.name, renamed.owner_id) == (
        first.pk, "cus_cy2", "Cy", user.pk)
    assert_mirror_matches(server, using=OTHER)
    assert_default_untouched()


def test_store_customer_of_an_idless_customer_twice_updates_its_row_there(make_standin):
    server = make_standin(0)
    customer = server.add_customer({
        "id": None, "email": "di@example.com", "created_at": 1_700_000_000_000,
        "subscriptions": [{"id": "sub_1", "plan_id": "pro", "status": "active"}],
    })
    first = store_customer(customer, env="sandbox", using=OTHER)

    again = store_customer({**customer, "name": "Di"}, env="sandbox", using=OTHER)

    assert (again.pk, again.name) == (first.pk, "Di")
    assert Customer.objects.using(OTHER).count() == 1
    assert again.subscriptions.count() == 1  # replaced, not added to
    assert_default_untouched()


def test_link_owners_to_customers_links_there(make_standin):
    server = make_standin(0)
    users = [user_in_other(name) for name in ("eve", "fay")]
    for user in users:
        store_customer(server.add_customer({"id": f"user_{user.pk}", "email": user.email}),
                       env="sandbox", using=OTHER)

    assert link_owners_to_customers("sandbox", using=OTHER) == 2

    linked = dict(Customer.objects.using(OTHER).values_list("autumn_id", "owner_id"))
    assert linked == {f"user_{user.pk}": user.pk for user in users}
    assert link_owners_to_customers("sandbox", using=OTHER) == 0
    assert_default_untouched()
