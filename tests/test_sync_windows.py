"""The partitioned crawl: created_at windows crawled side by side, split as they prove
large, resumed window by window, and the mirror equal to Autumn after all of it."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from autumn_django.client import AutumnClient
from autumn_django.exceptions import ServerError
from autumn_django.models import Customer, SyncedPage, SyncRun
from autumn_django.sync import sync_all_customers, workflow
from autumn_django.sync.pages.windows import Window, WindowPlan
from autumn_django.testing import AutumnStandIn, make_customers

from .conftest import add_null_cursor_defect, assert_mirror_matches, sync_killed_once
from .test_sync_runs import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def skewed_standin(make_standin):
    """A stand-in whose customers bunch in time (a launch day, an import hour)."""
    return lambda n=1200, *, seed=5, **options: make_standin(n, seed=seed, skew=True, **options)


def list_requests(server: AutumnStandIn) -> list[dict]:
    return [body for endpoint, body in server.requests if endpoint == "customers.list"]


def assert_windows_partition_the_key_space(run: SyncRun) -> None:
    """Done, and disjoint from the first (open below) to the last (open above)."""
    windows = sorted(run.windows, key=lambda w: -1 if w["start"] is None else w["start"])
    assert all(w["done"] for w in windows), windows
    assert windows[0]["start"] is None and windows[-1]["end"] is None
    for before, after in itertools.pairwise(windows):
        assert after["start"] == before["end"] + 1, (before, after)


# -- the plan, without a server ----------------------------------------------------------


def test_a_window_is_cut_only_once_it_proves_large_and_above_all_it_received():
    whole = Window(0, None, None)
    plan = WindowPlan([whole], now_ms=lambda: 10_000)
    assert plan.next_window() is whole
    whole.received(1_000, full=True)
    # One full page says little: an idle crawler waits (and with nothing busy, ends).
    waiter = threading.Thread(target=lambda: results.append(plan.next_window()))
    results: list = []
    waiter.start()
    time.sleep(0.1)
    assert not results
    whole.received(2_000, full=True)
    waiter.join(timeout=5)
    [far] = results
    # Its latest full page took 1,000 ms of key space: its crawler keeps the next 3 pages'
    # worth (KEEP_PAGES), the idle one takes the rest.
    assert (far.start, far.end) == (5_001, None) and whole.bounds() == (None, 5_000)
    # What the first crawler receives after the cut stops at the new end.
    assert whole.received(2_500, full=True) == 5_000
    plan.finished(whole)
    plan.finished(far)
    assert plan.next_window() is None


def test_a_blind_plan_is_spread_over_every_crawler_after_its_first_full_page():
    whole = Window(0, None, None)
    plan = WindowPlan([whole], now_ms=lambda: 10_000, crawlers=4)
    assert plan.next_window() is whole
    whole.received(1_000, full=True)
    # What is past the page is cut in 4 equal spans of 2,250 ms: the first crawler keeps
    # the first, the others wait for the idle crawlers; the last stays open above.
    spread = [plan.next_window() for _ in range(3)]
    assert [w.bounds() for w in spread] == [(3_251, 5_500), (5_501, 7_750), (7_751, None)]
    assert whole.bounds() == (None, 3_250) and whole.received(3_500, full=True) == 3_250
    # Once only: from here on a window is cut as it proves large.
    spread[0].received(3_300, full=True)
    results: list = []
    idle = threading.Thread(target=lambda: results.append(plan.next_window()))
    idle.start()
    time.sleep(0.1)
    assert not results
    for window in (whole, *spread):
        plan.finished(window)
    idle.join(timeout=5)
    assert results == [None]


@pytest.mark.parametrize("first_page", ["not full", "the window's last"])
def test_a_blind_plan_of_one_page_is_not_spread(first_page):
    whole = Window(0, None, None)
    plan = WindowPlan([whole], now_ms=lambda: 10_000, crawlers=4)
    assert plan.next_window() is whole
    whole.received(1_000, full=first_page != "not full")
    if first_page == "the window's last":  # a full page, then an empty one: read whole
        whole.received(None)
        plan.finished(whole)
    results: list = []
    idle = threading.Thread(target=lambda: results.append(plan.next_window()))
    idle.start()
    time.sleep(0.1)
    plan.finished(whole)
    idle.join(timeout=5)
    assert results == [None] and plan.bounds() == {0: (None, None)}


def test_the_window_with_the_most_pages_left_is_cut_first_by_its_density():
    # ``sparse`` has the most key space left, ``dense`` the most customers: a launch day
    # read page after page. Cutting by key space would leave that day to one crawler.
    sparse, dense = Window(0, None, 69_999), Window(1, 70_000, 80_000)
    plan = WindowPlan([sparse, dense], now_ms=lambda: 100_000)
    assert (plan.next_window(), plan.next_window()) == (sparse, dense)
    for created_at in (1_000, 11_000, 21_000):  # 10,000 ms a page: ~4.9 pages left
        sparse.received(created_at, full=True)
    for created_at in (70_100, 70_200):  # 100 ms a page: ~98 pages left
        dense.received(created_at, full=True)
    assert 4.8 < sparse.pages_to_cut(100_000) < 5 and 97 < dense.pages_to_cut(100_000) < 99

    far = plan.next_window()

    assert (far.start, far.end) == (70_501, 80_000) and dense.bounds() == (70_000, 70_500)
    # A cut window must prove large again before another cut: the next idle crawler cuts
    # ``sparse``, at half of what it has left (less than its 3 pages' worth).
    assert dense.pages_to_cut(100_000) == 0
    other = plan.next_window()
    assert (other.start, other.end) == (45_500, 69_999) and sparse.bounds() == (None, 45_499)
    # None is worth a cut now (a window with 3 pages or fewer left never is): an idle
    # crawler waits, and ends when the others are done.
    far.received(71_000, full=True)
    far.received(79_000, full=True)  # 8,000 ms a page: 1,000 ms left
    assert far.pages_to_cut(100_000) == 0
    results: list = []
    idle = threading.Thread(target=lambda: results.append(plan.next_window()))
    idle.start()
    time.sleep(0.1)
    assert not results
    for window in (sparse, dense, far, other):
        plan.finished(window)
    idle.join(timeout=5)
    assert results == [None]


def test_a_plan_from_the_last_run_is_never_cut():
    windows = [Window(0, None, 99), Window(1, 100, None)]
    plan = WindowPlan(windows, now_ms=lambda: 10_000, fixed=True)
    first, second = plan.next_window(), plan.next_window()
    for window in (first, second):
        window.received(50 if window is first else 200, full=True)
        window.received(60 if window is first else 300, full=True)
    plan.finished(first)
    results: list = []
    idle = threading.Thread(target=lambda: results.append(plan.next_window()))
    idle.start()
    time.sleep(0.1)
    assert not results and second.bounds() == (100, None)  # large, yet not cut
    plan.finished(second)
    idle.join(timeout=5)
    assert results == [None]


# -- syncs ---------------------------------------------------------------------------------


def test_a_first_sync_of_a_few_pages_spreads_them_over_every_crawler(make_standin, settings):
    # Three pages: no window would prove large enough to cut (LARGE_AFTER_PAGES full
    # pages with more than KEEP_PAGES left), so one cursor would read them one by one.
    settings.AUTUMN_SYNC_WINDOWS = 4
    server = make_standin(150, seed=3)

    run = sync_all_customers(page_size=50)

    assert run.created == 150 and len(run.windows) == 4, run.windows
    assert_windows_partition_the_key_space(run)
    assert_mirror_matches(server)
    starts = {body["created_at_range"].get("start") for body in list_requests(server)
              if "created_at_range" in body}
    assert len(starts - {None}) == 3  # the three windows past the first page's


def test_the_celery_workflow_spreads_a_first_sync_over_its_windows_after_the_first_page(
        make_standin, settings):
    settings.AUTUMN_SYNC_WINDOWS, settings.AUTUMN_SYNC_PAGE_SIZE = 4, 50
    server = make_standin(150, seed=3)
    # The workflow's tasks, one after another in this process: the first window's first
    # commit queues three windows at once (a cut alone would never come: see above).
    with AutumnClient() as client:
        run, queued = workflow.start_workflow(client)
        assert queued == [0]
        claimed = workflow.claim_window(run.pk, 0, run.lease_token)
        workflow.crawl_window(client, *claimed, queued.append)
        assert queued == [0, 1, 2, 3]
        for number in queued[1:]:
            workflow.crawl_window(client, *workflow.claim_window(run.pk, number, run.lease_token),
                                  queued.append)
        assert workflow.settle_if_last(run.pk, run.lease_token)
        run = workflow.finish_workflow(client, run.pk, run.lease_token)

    assert run.status == SyncRun.Status.SUCCEEDED and run.created == 150 and len(run.windows) == 4
    assert_windows_partition_the_key_space(run)
    assert_mirror_matches(server)


def test_a_windowed_sync_of_bunched_customers_reads_each_once_and_equals_autumn(skewed_standin, settings):
    settings.AUTUMN_SYNC_WINDOWS = 6
    server = skewed_standin(1500)

    run = sync_all_customers(page_size=50)

    assert (run.created, run.updated, run.unchanged, run.deleted, run.skipped) == (1500, 0, 0, 0, 0)
    assert len(run.windows) > 1, "the one window proved large and was cut"
    assert_windows_partition_the_key_space(run)
    assert sum(w["pages"] for w in run.windows) == run.pages
    assert_mirror_matches(server)
    # Requests carry their window's bounds.
    assert any("created_at_range" in body for body in list_requests(server))


def test_a_no_change_resync_reuses_the_plan_and_reads_the_same_pages(skewed_standin, settings):
    settings.AUTUMN_SYNC_WINDOWS = 4
    server = skewed_standin(900)
    sync_all_customers(page_size=50)
    # Customers due to reset are reset by the first pass's gets: compare with the second.
    first = sync_all_customers(page_size=50)
    digests = set(SyncedPage.objects.values_list("digest", flat=True))
    server.clear_requests()

    again = sync_all_customers(page_size=50)

    bounds = sorted((w["start"] or 0, w["end"] or 0) for w in again.windows)
    assert bounds == sorted((w["start"] or 0, w["end"] or 0) for w in first.windows)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 900)
    assert set(SyncedPage.objects.values_list("digest", flat=True)) == digests


def test_customers_created_and_deleted_during_a_windowed_crawl(skewed_standin, settings):
    settings.AUTUMN_SYNC_WINDOWS = 4
    server = skewed_standin(900)
    sync_all_customers(page_size=50)
    server.faults.delay(0.05, endpoint="customers.list")
    ids = [c["id"] for c in server.list_customers() if c["id"]]
    stop = threading.Event()

    def billing_happens() -> None:
        n = 0
        while not stop.is_set() and n < 20:
            server.add_customer({**make_customers(1, seed=100 + n)[0], "id": f"during_{n}"})
            server.modify_customer(ids[n * 7], name=f"changed {n}")
            n += 1
            time.sleep(0.03)

    worker = threading.Thread(target=billing_happens)
    worker.start()
    try:
        run = sync_all_customers(page_size=50)
    finally:
        stop.set()
        worker.join()
    server.faults.delay(0, endpoint="customers.list")

    # Created during the crawl, so after its start: the open-ended window sees them.
    added = Customer.objects.filter(autumn_id__startswith="during_").count()
    assert added == run.created > 0
    sync_all_customers(page_size=50)
    assert_mirror_matches(server)


def test_all_windows_wait_out_a_rate_limit_together(skewed_standin):
    server = skewed_standin(10)
    server.faults.rate_limit_next(1, retry_after=1, endpoint="customers.list")
    first, second = AutumnClient(), AutumnClient()
    limited = threading.Thread(target=lambda: first.customers.list(limit=5))
    limited.start()
    wait_for(lambda: server.requests, what="the rate-limited request")
    time.sleep(0.05)
    started = time.monotonic()

    second.customers.list(limit=5)  # another window's request, on its own session

    assert time.monotonic() - started >= 0.8, "it waited for the pause the first one learnt"
    limited.join()
    assert len(list_requests(server)) == 3  # the 429, the retry, the other: no wasted request


def test_a_windowed_run_resumes_each_unfinished_window_and_judges_only_what_it_saw(skewed_standin,
                                                                                 settings):
    settings.AUTUMN_SYNC_WINDOWS = 4
    server = skewed_standin(1200)
    sync_all_customers(page_size=50)
    server.faults.fail_next(1, status=500, endpoint="customers.list", after=12)
    with pytest.raises(ServerError):
        sync_all_customers(page_size=50)
    failed = SyncRun.objects.latest()
    saved = {w["id"]: w for w in failed.windows}
    unfinished = [w for w in saved.values() if not w["done"]]
    assert unfinished and any(w["cursor"] for w in unfinished), saved
    # A customer in a part the failed attempt committed, and one in a part it did not reach.
    customers = sorted(server.list_customers(), key=lambda c: c["created_at"])
    started = next(w for w in unfinished if w["reached"] is not None)
    early = next(c for c in customers if c["id"] and c["created_at"] < started["reached"]
                 and (started["start"] is None or c["created_at"] >= started["start"]))
    late = next(c for c in reversed(customers) if c["id"] and c["created_at"] > started["reached"]
                and (started["end"] is None or c["created_at"] <= started["end"]))
    server.delete_customer(early["id"])
    server.delete_customer(late["id"])
    server.clear_requests()

    run = sync_all_customers(page_size=50)

    assert (run.pk, run.attempts, run.status) == (failed.pk, 2, SyncRun.Status.SUCCEEDED)
    cursors = {body["start_cursor"] for body in list_requests(server) if body["start_cursor"]}
    assert {w["cursor"] for w in unfinished if w["cursor"]} <= cursors
    assert Customer.objects.get(autumn_id=late["id"]).deleted_at is not None
    assert Customer.objects.get(autumn_id=early["id"]).deleted_at is None  # the dead attempt saw it
    assert sync_all_customers(page_size=50).deleted == 1
    assert_mirror_matches(server)


def test_the_null_cursor_defect_inside_a_window(skewed_standin, settings):
    settings.AUTUMN_SYNC_WINDOWS = 4
    server = skewed_standin(300)
    add_null_cursor_defect(server)

    run = sync_all_customers(page_size=3)

    assert run.created == 309
    assert_mirror_matches(server)


def test_a_killed_windowed_sync_resumes_every_unfinished_window(skewed_standin, settings):
    """A real ``autumn_sync`` with 4 windows, killed with SIGKILL mid-crawl."""
    server = skewed_standin(1500)
    server.faults.delay(0.15, endpoint="customers.list")
    sync_killed_once(server, lambda: SyncRun.objects.filter(pages__gte=8).exists(),
                     "eight committed pages", "--page-size", "50", AUTUMN_TEST_SYNC_WINDOWS="4")
    killed = SyncRun.objects.get()
    assert killed.status == SyncRun.Status.RUNNING and len(killed.windows) > 1
    assert Customer.objects.count() == killed.created < 1500
    server.faults.delay(0, endpoint="customers.list")
    server.clear_requests()

    run = sync_all_customers(page_size=50)

    assert (run.pk, run.attempts, run.status) == (killed.pk, 2, SyncRun.Status.SUCCEEDED)
    assert run.created == 1500 and Customer.objects.count() == 1500, "nothing read twice or lost"
    done_before = [w for w in killed.windows if w["done"]]
    ranges = [body.get("created_at_range", {}) for body in list_requests(server)]
    for window in done_before:  # a finished window is not crawled again
        assert not any(r.get("start") == window["start"] and r.get("end") == window["end"]
                       for r in ranges if window["start"] is not None)
    assert_windows_partition_the_key_space(run)
    assert_mirror_matches(server)


def test_a_lopsided_plan_gives_way_to_equal_shares_of_the_mirror(skewed_standin, settings):
    # A blind first plan over bunched customers can leave one window many pages to crawl
    # one after another; the next run spreads the windows by what the mirror holds.
    settings.AUTUMN_SYNC_WINDOWS = 4
    server = skewed_standin(1200)
    first = sync_all_customers(page_size=50)
    cut = sorted(w["end"] for w in first.windows if w["end"] is not None)[0]
    lopsided = [{"id": 0, "start": None, "end": cut, "pages": 20, "done": True},
                {"id": 1, "start": cut + 1, "end": None, "pages": 5, "done": True}]
    SyncRun.objects.filter(pk=first.pk).update(windows=lopsided)

    second = sync_all_customers(page_size=50)

    assert_windows_partition_the_key_space(second)
    assert len(second.windows) == 4
    present = Customer.objects.filter(deleted_at__isnull=True).count()
    # Equal shares a customer short of whole pages: no window ends on a full page (which
    # would cost a request for an empty one), the last takes what is left over.
    share = -(-present // 4 // 50) * 50 + 49
    assert [w["pages"] for w in second.windows[:3]] == [share // 50] * 3, second.windows
    assert second.windows[3]["pages"] <= share // 50 + 1
    assert_mirror_matches(server)
    # Balanced: the next run keeps it, so its pages (and their memos) are the same.
    third = sync_all_customers(page_size=50)
    assert [(w["start"], w["end"]) for w in third.windows] == [(w["start"], w["end"]) for w in second.windows]
    assert third.unchanged == present and third.created == third.updated == 0


def test_a_plan_is_balanced_while_no_window_takes_much_more_than_a_crawler_s_share():
    from autumn_django.sync.partition import _balanced

    def plan(*pages: int) -> list[dict]:
        last = len(pages) - 1
        return [{"id": n, "start": None if n == 0 else n * 10, "end": None if n == last else n * 10 + 9,
                 "pages": p} for n, p in enumerate(pages)]

    # 12 pages for 8 crawlers: a share of 2; a window of 6 makes the run wait on it.
    assert not _balanced(plan(6, 1, 4, 1), crawlers=8)
    assert _balanced(plan(2, 2, 2, 2, 2, 1), crawlers=8)
    assert _balanced(plan(13, 13, 13, 13, 13, 13, 13, 10), crawlers=8)
    assert not _balanced(plan(13, 13, 13, 13, 13, 13, 13, 40), crawlers=8)  # new customers, all in the last
    # More than a share and a page: the run would wait on it (balanced by the rule before).
    assert not _balanced(plan(5, 1, 1, 1, 1, 1, 1, 1), crawlers=8)


def test_a_first_sync_of_bunched_customers_leaves_a_plan_its_first_re_sync_keeps(skewed_standin, settings):
    # Its windows are cut where the customers are, so none is left with many pages to
    # crawl one after another: the next run keeps them, so its pages are the ones stored
    # (those of customers whose reset came due differ; the test above compares pages).
    # Cut by halving key space, a window took 19 of 66 pages, and the next run re-planned.
    settings.AUTUMN_SYNC_WINDOWS = 4
    server = skewed_standin(3000)
    first = sync_all_customers(page_size=50)
    shares = [w["pages"] for w in first.windows]
    assert max(shares) <= -(-sum(shares) // 4) + 1, shares

    again = sync_all_customers(page_size=50)

    def bounds(run):
        return sorted((w["start"] or 0, w["end"] or 0) for w in run.windows)

    assert bounds(again) == bounds(first)
    assert (again.created, again.updated, again.deleted) == (0, 0, 0)
    assert_mirror_matches(server)
