"""Page memos: a page whose bytes a run has seen before is skipped without hashing each
customer, but only while the mirror still holds what that page showed."""

from __future__ import annotations

import copy
from array import array

import pytest

from autumn_django.client import AutumnClient, ListPosition
from autumn_django.listing import PageOutline
from autumn_django.models import Customer, SyncedPage, SyncRun
from autumn_django.sync import store_customer, sync_all_customers
from autumn_django.sync.pages.fingerprints import Fingerprints, state_fingerprint
from autumn_django.sync.pages.pagememo import PageMemo
from autumn_django.sync.pages.preparer import PagePreparer
from autumn_django.sync.pages.records import LIST_PRODUCT_CAP

from .conftest import add_null_cursor_defect, assert_mirror_matches

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _one_cursor(settings):
    """Page boundaries here are a single cursor's; the windowed crawl's memos are tested in
    test_sync_windows.py."""
    settings.AUTUMN_SYNC_WINDOWS = 1


def _capped(customers: list[dict]) -> list[dict]:
    return [c for c in customers if len(c["subscriptions"]) + len(c["purchases"]) > LIST_PRODUCT_CAP]


def test_page_memo_round_trips_and_is_held_only_when_every_state_is():
    memo = PageMemo(PageOutline("cur_9", 3), reached_created_at=1_700_000_000_123, capped_ids=["cus_capped"])
    for key, state in [(1, 10), (2, 20), (2**64 - 1, 2**63)]:
        memo.add(key, state)

    again = PageMemo.from_bytes(memo.to_bytes())

    assert (list(again.keys), list(again.states)) == ([1, 2, 2**64 - 1], [10, 20, 2**63])
    assert (again.outline, again.reached_created_at, again.capped_ids) == (
        PageOutline("cur_9", 3), 1_700_000_000_123, ["cus_capped"])
    assert again.held_by(Fingerprints([10, 20, 2**63, 99]))
    assert not again.held_by(Fingerprints([10, 2**63]))


def test_memo_bytes_of_another_format_or_damaged_are_ignored():
    memo = PageMemo(PageOutline(None, 2))
    memo.add(1, 10)
    good = memo.to_bytes()
    older_format = array("Q", [1, 10]).tobytes()  # what the first version stored

    assert PageMemo.from_bytes(older_format) is None
    assert PageMemo.from_bytes(good[:-3]) is None
    assert PageMemo.from_bytes(good.replace(b'"count"', b'"cuont"')) is None


def test_pages_seen_before_are_neither_decoded_nor_parsed(make_standin):
    make_standin(150)
    with AutumnClient() as client:
        first = list(PagePreparer(client, lambda: Fingerprints()).pages(ListPosition(), 60))
        assert len(first) == 3  # 60, 60 and 30 customers
        assert all(p.memo is not None and not p.memo_reused and not p.page.recalled for p in first)
        memos = {p.page.digest: p.memo for p in first}
        # The mirror after storing the pages: every customer's state, capped ones too.
        mirror = Fingerprints(state_fingerprint(r.raw_hash) for p in first for r in p.records)

        again = list(PagePreparer(client, lambda: mirror, lambda: memos).pages(ListPosition(), 60))

    assert [p.page.digest for p in again] == [p.page.digest for p in first]
    assert all(p.page.recalled and p.memo_reused and p.memo is None for p in again)
    assert [p.page.next_position for p in again] == [p.page.next_position for p in first]
    assert [p.reached_created_at for p in again] == [p.reached_created_at for p in first]
    assert all(p.records == [] and p.problems == [] for p in again)
    assert [p.unchanged for p in again] == [len(p.records) for p in first]
    assert [sorted(p.seen) for p in again] == [sorted(p.seen) for p in first]


def test_a_page_ending_in_the_null_cursor_defect_is_decoded_again(make_standin):
    server = make_standin(0)
    # Where the crawl goes after the defect's page is only in the page itself.
    base = add_null_cursor_defect(server)
    sync_all_customers(page_size=3)
    server.clear_requests()

    run = sync_all_customers(page_size=3)

    assert (run.created, run.updated, run.unchanged, run.deleted) == (0, 0, 9, 0)
    continued = [b for e, b in server.requests if e == "customers.list" and "created_at_range" in b]
    assert continued and continued[0]["created_at_range"]["start"] == base + 2
    assert_mirror_matches(server)


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


def test_a_memo_that_no_longer_serves_is_replaced_under_its_page_digest(make_standin):
    make_standin(120)
    sync_all_customers(page_size=40)
    digests = set(SyncedPage.objects.values_list("digest", flat=True))
    SyncedPage.objects.update(memo=b"damaged")  # or written by an older version

    again = sync_all_customers(page_size=40)

    assert (again.created, again.updated, again.unchanged) == (0, 0, 120)
    memos = dict(SyncedPage.objects.values_list("digest", "memo"))
    assert set(memos) == digests  # the same pages, read again and their memos stored anew
    assert all(PageMemo.from_bytes(bytes(memo)) is not None for memo in memos.values())
    third = sync_all_customers(page_size=40)
    assert SyncedPage.objects.filter(used_at__gte=third.started_at).count() == len(digests), "reused"


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



class _CountingDecoder:
    """``rawpages``' full decoder, counting the customers decoded in full."""

    def __init__(self, decoder) -> None:
        self.decoder, self.calls = decoder, 0

    def decode(self, raw):
        self.calls += 1
        return self.decoder.decode(raw)


def test_on_a_changed_page_only_the_changed_customers_are_decoded(make_standin, monkeypatch):
    from autumn_django.sync.pages import rawpages

    server = make_standin(150)
    with AutumnClient() as client:
        first = list(PagePreparer(client, lambda: Fingerprints()).pages(ListPosition(), 60))
        memos = {p.page.digest: p.memo for p in first}
        mirror = Fingerprints(state_fingerprint(r.raw_hash) for p in first for r in p.records)
        plain = [c for c in server.list_customers()[60:120] if c["id"] and c not in _capped([c])]
        server.modify_customer(plain[0]["id"], name="Renamed on the second page")
        counting = _CountingDecoder(rawpages._any)
        monkeypatch.setattr(rawpages, "_any", counting)

        again = list(PagePreparer(client, lambda: mirror, lambda: memos).pages(ListPosition(), 60))

    assert [p.page.recalled for p in again] == [True, False, True]
    changed = again[1]
    assert [r.autumn_id for r in changed.records] == [plain[0]["id"]]
    assert changed.records[0].values["name"] == "Renamed on the second page"
    # The page's other customers were known by their bytes: none of them decoded. The
    # capped ones are read again with customers.get, as on every page.
    capped_on_page = len(_capped(server.list_customers()[60:120]))
    assert counting.calls == 1 + capped_on_page
    assert changed.unchanged == 60 - 1 - capped_on_page + capped_on_page
    assert sorted(changed.seen) == sorted(first[1].seen)
    # Its new memo names the new bytes: a third pass knows the page whole.
    assert changed.memo is not None and len(PageMemo.from_bytes(changed.memo).raws) == 60 - capped_on_page


def test_bytes_seen_before_are_decoded_again_when_the_mirror_no_longer_holds_their_state(make_standin):
    server = make_standin(150)
    with AutumnClient() as client:
        first = list(PagePreparer(client, lambda: Fingerprints()).pages(ListPosition(), 60))
        memos = {p.page.digest: p.memo for p in first if p.memo is not None}
        on_page = [c for c in server.list_customers()[60:120] if c["id"] and c not in _capped([c])]
        assert first[1].memo is not None
        # The mirror holds another state of this customer (a webhook stored a newer one).
        target, other = on_page[0], on_page[1]
        mirror = Fingerprints(state_fingerprint(r.raw_hash) for p in first for r in p.records
                              if r.autumn_id != target["id"])
        server.modify_customer(other["id"], name="Another change, so the page is not recalled")

        again = list(PagePreparer(client, lambda: mirror, lambda: memos).pages(ListPosition(), 60))

    assert sorted(r.autumn_id for r in again[1].records) == sorted([target["id"], other["id"]])


def test_an_empty_page_gets_no_memo(make_standin):
    # Every window of a partitioned crawl may end on an empty page, and empty pages are
    # byte for byte the same: two write lanes storing a memo under one digest wait on each
    # other's uncommitted row while each waits for the other's turn to commit (a PostgreSQL
    # run hung so). An empty page costs nothing to read again.
    from autumn_django.sync.pages.windows import Window

    make_standin(30)
    after_everyone = 4_000_000_000_000  # epoch ms, year 2096
    with AutumnClient() as client:
        pages = list(PagePreparer(client, lambda: Fingerprints()).pages(
            ListPosition(), 50, window=Window(0, after_everyone, None)))

    assert len(pages) == 1 and pages[0].page.digest is not None and pages[0].page.outline.count == 0
    assert pages[0].memo is None
