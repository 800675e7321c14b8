"""Edges of the real server the crawl meets: records that can never be mirror rows, and
the null-cursor defect at small page sizes."""

from __future__ import annotations

import itertools

import pytest

from autumn_django.client import AutumnClient
from autumn_django.models import Customer, SyncRun
from autumn_django.sync import sync_all_customers

from .conftest import assert_mirror_matches

pytestmark = pytest.mark.django_db(transaction=True)

BASE = 1_700_000_000_000


def _customer(i: int, *, id_: str | None, email: str | None, created_at: int) -> dict:
    return {"id": id_, "email": email, "created_at": created_at, "subscriptions": [],
            "purchases": [], "balances": {}, "flags": {}}


def test_a_record_with_neither_id_nor_email_does_not_stop_deletions(make_standin):
    server = make_standin(20)
    sync_all_customers()
    gone = next(c["id"] for c in server.list_customers() if c["id"])
    server.delete_customer(gone)
    server.add_customer(_customer(0, id_=None, email=None, created_at=BASE))

    run = sync_all_customers()

    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.skipped == 1
    problem = "it has neither an id nor an email, so it cannot be keyed"
    assert {"customer": None, "error": problem} in run.errors
    # It can never be a mirror row, so the deletion it used to hold back is settled.
    assert run.deleted == 1
    assert Customer.objects.get(autumn_id=gone).deleted_at is not None


def test_a_record_that_may_be_a_garbled_mirrored_customer_still_stops_deletions(make_standin):
    server = make_standin(20)
    sync_all_customers()
    victim = next(c["id"] for c in server.list_customers() if c["id"])
    gone = next(c["id"] for c in server.list_customers() if c["id"] and c["id"] != victim)
    server.delete_customer(gone)
    server.faults.corrupt_customer(victim, {"id": 12345})  # an id, but not text

    run = sync_all_customers()

    assert run.skipped == 1 and run.deleted == 0
    assert Customer.objects.get(autumn_id=victim).deleted_at is None
    assert any("no customer was marked deleted" in e.get("warning", "") for e in run.errors)


def _idless_customers_at_unique_instants(server, n: int) -> None:
    for i in range(n):
        server.add_customer(_customer(i, id_=None if i % 2 == 0 else f"c{i}", email=f"c{i}@example.com",
                                      created_at=BASE + 10 * i))


def test_page_size_one_past_idless_customers_warns_of_nothing(make_standin):
    """At page size 1 each id-less customer ends a full page with a null cursor. Every
    created_at is unique, so nothing can be missed: no warning (there were five)."""
    server = make_standin(0)
    _idless_customers_at_unique_instants(server, 10)

    run = sync_all_customers(page_size=1)

    assert run.status == SyncRun.Status.SUCCEEDED
    assert [e for e in run.errors if "warning" in e] == []
    assert_mirror_matches(server)


def test_more_customers_sharing_an_instant_than_a_page_holds_are_warned_about(make_standin):
    server = make_standin(0)
    for i in range(3):  # three at one instant; the id-less one ends the first page of two
        server.add_customer(_customer(i, id_=None if i == 1 else f"c{i}", email=f"c{i}@example.com",
                                      created_at=BASE))
    with AutumnClient() as client:
        pages = list(client.customers.iter_pages(limit=2))
    warnings = [w for page in pages for w in page.warnings]
    assert warnings == [f"More than 2 customers share created_at={BASE} and the page ended on one "
                        "without an id; some of them may have been missed. Re-run with a larger page size."]


def test_the_defect_past_a_page_of_customers_sharing_an_instant_does_not_loop(make_standin):
    """Seven customers at one instant, the sixth id-less, three a page: the second page ends
    on it with a null cursor, and the crawl goes back to the instant, where the first page
    comes again, then the second, for ever (found when windows a few ms wide cut such a
    bunch). Now the crawl steps past the instant the second time and warns."""
    server = make_standin(0)
    for i in range(7):
        server.add_customer(_customer(i, id_=None if i == 5 else f"c{i}", email=f"c{i}@example.com",
                                      created_at=BASE))
    with AutumnClient() as client:
        pages = list(itertools.islice(client.customers.iter_pages(limit=3), 12))
    assert len(pages) < 12, "the crawl ended"
    assert pages[-1].next_position is None
    warnings = [w for page in pages for w in page.warnings]
    assert warnings == [f"More than 3 customers share created_at={BASE} and the page ended on one "
                        "without an id; some of them may have been missed. Re-run with a larger page size."]
