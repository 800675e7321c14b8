"""Page memos: a page whose bytes a run has seen before is skipped without hashing each
customer, but only while the mirror still holds what that page showed."""

from __future__ import annotations

import copy

import pytest

from autumn_django.client import AutumnClient, ListPosition
from autumn_django.models import Customer, SyncedPage, SyncRun
from autumn_django.sync import store_customer, sync_all_customers
from autumn_django.sync.fingerprints import Fingerprints, PageMemo, state_fingerprint
from autumn_django.sync.prefetch import PagePreparer
from autumn_django.sync.records import LIST_PRODUCT_CAP

from .conftest import assert_mirror_matches

pytestmark = pytest.mark.django_db(transaction=True)


def _capped(customers: list[dict]) -> list[dict]:
    return [c for c in customers if len(c["subscriptions"]) + len(c["purchases"]) > LIST_PRODUCT_CAP]


def test_page_memo_round_trips_and_is_held_only_when_every_state_is():
    memo = PageMemo()
    for key, state in [(1, 10), (2, 20), (2**64 - 1, 2**63)]:
        memo.add(key, state)

    again = PageMemo.from_bytes(memo.to_bytes())

    assert (list(again.keys), list(again.states)) == ([1, 2, 2**64 - 1], [10, 20, 2**63])
    assert again.held_by(Fingerprints([10, 20, 2**63, 99]))
    assert not again.held_by(Fingerprints([10, 2**63]))


def test_a_page_seen_before_is_reused_without_parsing(make_standin):
    make_standin(150)
    with AutumnClient() as client:
        page = next(PagePreparer(client, lambda: Fingerprints()).pages(ListPosition(), 150))
        assert page.memo is not None and not page.memo_reused and len(page.records) > 100
        memos = {page.page.digest: page.memo}
        # The mirror after storing the page: every customer's state, capped ones too.
        mirror = Fingerprints(state_fingerprint(record.raw_hash) for record in page.records)

        again = next(PagePreparer(client, lambda: mirror, lambda: memos).pages(ListPosition(), 150))

    assert again.page.digest == page.page.digest
    assert again.memo_reused and again.memo is None
    assert again.records == [] and again.problems == []
    assert again.unchanged == len(page.records) and sorted(again.seen) == sorted(page.seen)


def test_no_change_resync_counts_each_customer_once_with_idless_capped_ones(make_standin):
    server = make_standin(200, seed=4)
    # An id-less customer over the cap cannot be re-read with customers.get: its list row
    # is all there is, so it belongs in the memo like any other.
    over_cap = copy.deepcopy(next(c for c in _capped(server.list_customers()) if c["id"]))
    over_cap.update(id=None, email="idless.capped@example.com")
    server.add_customer(over_cap)
    first = sync_all_customers(page_size=50)
    assert first.created == 201
    stored = SyncedPage.objects.count()
    assert stored >= first.pages - 1  # a page continuing past the null-cursor defect has none

    again = sync_all_customers(page_size=50)

    assert (again.created, again.updated, again.unchanged, again.deleted) == (0, 0, 201, 0)
    assert SyncedPage.objects.filter(used_at__gte=again.started_at).count() == stored, "every memo reused"
    assert Customer.objects.filter(email="idless.capped@example.com").present().count() == 1


def test_a_stored_page_is_not_trusted_once_the_mirror_changed_under_it(make_standin):
    server = make_standin(120)
    sync_all_customers(page_size=40)
    victim = next(c for c in server.list_customers() if c["id"])
    # A webhook (say) stored a state Autumn has since gone back from.
    store_customer({**victim, "name": "A transient name"}, env="sandbox")

    run = sync_all_customers(page_size=40)

    assert (run.updated, run.unchanged) == (1, 119)
    assert Customer.objects.get(autumn_id=victim["id"]).name == victim["name"]
    assert_mirror_matches(server)


def test_a_change_past_the_list_cap_is_seen_on_a_page_whose_bytes_did_not_change(make_standin):
    server = make_standin(120)
    capped = next(c for c in _capped(server.list_customers()) if c["id"] and len(c["subscriptions"]) > 1)
    sync_all_customers(page_size=40)
    digests = set(SyncedPage.objects.values_list("digest", flat=True))
    # The last product is past the 15 the list shows: only customers.get sees the change.
    products = capped["subscriptions"] + capped["purchases"]
    assert len(products) > LIST_PRODUCT_CAP
    field = "purchases" if capped["purchases"] else "subscriptions"
    changed = copy.deepcopy(capped[field])
    changed[-1]["quantity"] = (changed[-1].get("quantity") or 1) + 5
    server.modify_customer(capped["id"], **{field: changed})

    run = sync_all_customers(page_size=40)

    assert set(SyncedPage.objects.values_list("digest", flat=True)) == digests, "no page's bytes changed"
    assert (run.updated, run.unchanged) == (1, 119)
    assert_mirror_matches(server)


def test_pages_a_completed_pass_did_not_read_are_pruned(make_standin):
    server = make_standin(120)
    sync_all_customers(page_size=40)
    before = set(SyncedPage.objects.values_list("digest", flat=True))
    customers = server.list_customers()
    # One change on each of the first two pages of 40 gives them new bytes.
    for page_start in (0, 40):
        customer = next(c for c in customers[page_start:page_start + 40] if c["id"])
        server.modify_customer(customer["id"], name=f"{customer['name']} (changed)")

    run = sync_all_customers(page_size=40)

    after = set(SyncedPage.objects.values_list("digest", flat=True))
    assert run.status == SyncRun.Status.SUCCEEDED and run.updated == 2
    assert len(after) == len(before), "one memo per page read, none left over"
    assert len(after & before) == len(before) - 2, "the untouched pages keep theirs"


def test_a_page_with_a_record_that_does_not_parse_is_reported_on_every_run(make_standin):
    server = make_standin(90)
    broken = next(c["id"] for c in server.list_customers() if c["id"])
    server.faults.corrupt_customer(broken, {"balances": "none"})

    first = sync_all_customers(page_size=30)
    again = sync_all_customers(page_size=30)

    assert first.skipped == again.skipped == 1
    assert again.errors and again.errors[0]["customer"] == f"id:{broken}"
    assert again.unchanged == 89

