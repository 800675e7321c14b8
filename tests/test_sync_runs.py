"""One sync at a time, killed runs, resuming, and single-customer writes."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from autumn_django.client import AutumnClient, ListPosition
from autumn_django.exceptions import SyncAlreadyRunning
from autumn_django.models import Customer, SyncRun
from autumn_django.sync import (
    get_or_create_customer,
    runs,
    sync_all_customers,
    sync_customer,
    update_customer,
)

from .conftest import TEST_KEY, assert_mirror_matches, run_manage

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_run_killed_between_pages_blocks_briefly_then_resumes(make_standin, settings):
    server = make_standin(400)
    server.faults.delay(0.25, endpoint="customers.list")
    child = run_manage("autumn_sync", "--page-size", "50", background=True,
                       env_extra={"AUTUMN_API_URL": server.url, "AUTUMN_SECRET_KEY": TEST_KEY})
    try:
        wait_for(lambda: SyncRun.objects.filter(pages__gte=2).exists(), what="two committed pages")
        with pytest.raises(SyncAlreadyRunning, match=r"Another sync of sandbox is running \(run #"):
            sync_all_customers(page_size=50)
    finally:
        child.kill()
        child.wait()
    killed = SyncRun.objects.get()
    assert killed.status == SyncRun.Status.RUNNING and killed.pages >= 2 and killed.cursor
    # Its lock is still fresh: the next run is refused...
    with pytest.raises(SyncAlreadyRunning):
        sync_all_customers(page_size=50)
    # ...until the lock times out, which is not long.
    settings.AUTUMN_SYNC_LOCK_TIMEOUT = 1
    time.sleep(1.1)
    server.faults.delay(0)
    server.clear_requests()

    run = sync_all_customers(page_size=50)

    assert (run.pk, run.attempts, run.status) == (killed.pk, 2, SyncRun.Status.SUCCEEDED)
    first_list = next(body for endpoint, body in server.requests if endpoint == "customers.list")
    assert first_list["start_cursor"] == killed.cursor
    assert run.deleted == 0
    assert_mirror_matches(server)


def test_stalled_run_that_was_taken_over_cannot_write(make_standin):
    make_standin(10)
    stalled = runs.start_run("sandbox", page_size=10)
    SyncRun.objects.filter(pk=stalled.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    successor = runs.start_run("sandbox", page_size=10)
    assert successor.pk == stalled.pk and successor.lease_token != stalled.lease_token

    stalled.pages = 99
    with pytest.raises(runs.LeaseLost, match="lost its lock"):
        runs.save_page(stalled, ListPosition("x"))
    assert SyncRun.objects.get().pages == 0


def test_two_runs_cannot_both_start(make_standin):
    make_standin(10)
    first = runs.start_run("sandbox", page_size=10)
    with pytest.raises(SyncAlreadyRunning):
        runs.start_run("sandbox", page_size=10)
    with pytest.raises(SyncAlreadyRunning):
        runs.start_run("sandbox", page_size=10, restart=True)
    assert SyncRun.objects.get().pk == first.pk
    # The other env has its own lock.
    assert runs.start_run("live", page_size=10).env == "live"


def test_restart_begins_a_fresh_pass_instead_of_resuming(make_standin):
    server = make_standin(30)
    failed = runs.start_run("sandbox", page_size=10)
    runs.save_page(failed, ListPosition("stale-cursor"))
    runs.finish_run(failed, failure="boom")

    run = sync_all_customers(page_size=10, restart=True)

    assert run.pk != failed.pk and run.created == 30
    assert_mirror_matches(server)


def test_a_saved_cursor_autumn_rejects_restarts_the_pass(make_standin):
    server = make_standin(30)
    failed = runs.start_run("sandbox", page_size=10)
    runs.save_page(failed, ListPosition("not-a-cursor-autumn-knows"))
    runs.finish_run(failed, failure="boom")

    run = sync_all_customers(page_size=10)

    assert run.pk == failed.pk and run.status == SyncRun.Status.SUCCEEDED
    assert {"warning": "The saved cursor was rejected; the pass restarted."} in run.errors
    assert_mirror_matches(server)


def test_sync_customer_refreshes_one_and_marks_a_missing_one_deleted(make_standin):
    server = make_standin(20)
    sync_all_customers()
    first, second = [c for c in server.list_customers() if c["id"]][:2]
    server.modify_customer(first["id"], name="Fresh name")
    server.delete_customer(second["id"])

    row = sync_customer(first["id"])
    gone = sync_customer(second["id"])

    assert row.name == "Fresh name" and row.raw == server.get_customer(first["id"])
    assert gone is None
    assert Customer.objects.get(autumn_id=second["id"]).deleted_at is not None


def test_get_or_create_stores_and_links_the_user(make_standin):
    server = make_standin(5)
    user = get_user_model().objects.create_user("ada", "ada@example.com", "x")

    row = get_or_create_customer("user_ada", user=user, name="Ada Lovelace", email="ada@example.com")

    assert row.user == user and row.autumn_id == "user_ada" and row.name == "Ada Lovelace"
    assert row.raw == server.get_customer("user_ada")


def test_get_or_create_that_claims_an_idless_customer_keeps_one_row(make_standin):
    server = make_standin(200, seed=3)
    sync_all_customers()
    idless = next(c for c in server.list_customers() if c["id"] is None)
    before = Customer.objects.count()

    row = get_or_create_customer("claimed_1", email=idless["email"])

    assert Customer.objects.count() == before
    assert row.autumn_id == "claimed_1" and row.email == idless["email"]
    assert not Customer.objects.filter(autumn_id__isnull=True, email=idless["email"]).exists()
    assert sync_all_customers().deleted == 0
    assert_mirror_matches(server)


def test_claim_made_outside_the_app_is_followed_by_the_full_sync(make_standin):
    server = make_standin(200, seed=3)
    sync_all_customers()
    idless = next(c for c in server.list_customers() if c["id"] is None)
    pk = Customer.objects.get(autumn_id__isnull=True, email=idless["email"]).pk
    # Another service of the company claims it through Autumn's API, not through the mirror.
    with AutumnClient() as client:
        client.customers.get_or_create("claimed_elsewhere", email=idless["email"])

    run = sync_all_customers()

    assert (run.created, run.deleted) == (0, 0)
    assert Customer.objects.get(pk=pk).autumn_id == "claimed_elsewhere"
    assert_mirror_matches(server)


def test_rename_through_the_app_keeps_the_row_and_user_link(make_standin):
    server = make_standin(10)
    sync_all_customers()
    user = get_user_model().objects.create_user("bob", "bob@example.com", "x")
    old_id = next(c["id"] for c in server.list_customers() if c["id"])
    row = Customer.objects.get(autumn_id=old_id)
    Customer.objects.filter(pk=row.pk).update(user=user)

    renamed = update_customer(old_id, new_customer_id="bob_renamed", metadata={"tier": "gold"})

    assert renamed.pk == row.pk and renamed.autumn_id == "bob_renamed" and renamed.user == user
    assert renamed.metadata["tier"] == "gold"
    run = sync_all_customers()
    assert (run.created, run.deleted) == (0, 0)
    assert_mirror_matches(server)
