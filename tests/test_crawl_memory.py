"""The partitioned crawl keeps few pages in memory however many windows run: the prefetch
child's peak RSS grew with the windows in flight (170 MiB at 10,000 customers, 8 windows)
while each crawler held a decoded page ahead and a prepared one in hand."""

from __future__ import annotations

import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import pytest

from autumn_django.client import AutumnClient
from autumn_django.exceptions import NotFoundError
from autumn_django.sync.pages import crawl as crawl_module
from autumn_django.sync.pages import rawpages
from autumn_django.sync.pages.fingerprints import Fingerprints
from autumn_django.sync.pages.preparer import MirrorView, PagePreparer
from autumn_django.sync.pages.records import RowForm
from autumn_django.sync.pages.windows import Window, WindowPlan


def _eight_windows(server) -> list[Window]:
    """Eight windows of equal counts, so every crawler has pages to prepare at once."""
    times = sorted(c["created_at"] for c in server.list_customers())
    edges = [times[len(times) * n // 8] for n in range(1, 8)]
    return [Window(n, None if n == 0 else edges[n - 1] + 1, edges[n] if n < 7 else None) for n in range(8)]


def _started_crawl(server, crawlers: int = 8, pack=None) -> crawl_module.WindowedCrawl:
    """A crawl of ``server``'s customers over eight windows, pages of 40, started."""
    view = MirrorView(Fingerprints, dict)
    plan = WindowPlan(_eight_windows(server), fixed=True)
    crawl = crawl_module.WindowedCrawl(plan, make_client=AutumnClient, limit=40, crawlers=crawlers, view=view,
                                       pack=pack)
    crawl.start()
    view.load()  # the mirror's state arrives while the first pages are on their way
    return crawl


@pytest.mark.parametrize("crawlers", [1, 8])
def test_prepared_pages_in_memory_stay_within_the_queue_however_many_windows_run(make_standin, monkeypatch,
                                                                                  crawlers):
    server = make_standin(1600, seed=3)
    counts = {"prepared": 0, "taken": 0, "peak": 0}
    lock = threading.Lock()
    prepare = PagePreparer.prepare

    def counted(self, page):
        prepared = prepare(self, page)
        with lock:
            counts["prepared"] += 1
            counts["peak"] = max(counts["peak"], counts["prepared"] - counts["taken"])
        return prepared

    monkeypatch.setattr(PagePreparer, "prepare", counted)
    crawl = _started_crawl(server, crawlers)
    seen = 0
    for prepared in crawl.pages():
        seen += len(prepared.records)
        time.sleep(0.01)  # a writer slower than the crawl: the crawlers wait, not pile up
        with lock:
            counts["taken"] += 1

    assert seen == 1600
    # The consumer's page, and at most QUEUE_PAGES prepared and waiting (in the queue or a
    # crawler's hand); before the bound, 8 crawlers held one each besides the queue.
    assert counts["taken"] >= 1600 // 40
    assert counts["peak"] <= crawl_module.QUEUE_PAGES + 1, counts


def test_a_crawler_keeps_nothing_of_a_page_the_writer_took(make_standin, monkeypatch):
    """Once the writer has a page, no crawler still references it, its answer or its
    decoded rows while awaiting the next. Before the fix, each crawler's local variables
    (the crawl loop's page, the preparer's raw page, the page source's response and rows)
    kept its last page alive: with 8 windows, 8 pages besides the queue, and the prefetch
    child's peak RSS grew with the windows in flight (231 MiB at 100,000 customers, then
    165)."""
    server = make_standin(1600, seed=3)
    alive = {"prepared": 0, "raw": 0, "answers": 0}
    peaks = dict(alive)
    lock = threading.Lock()

    def track(kind, value):
        def gone():
            with lock:
                alive[kind] -= 1
        with lock:
            alive[kind] += 1
        weakref.finalize(value, gone)

    prepare, decode = PagePreparer.prepare, rawpages._decode

    def tracked_prepare(self, page):
        track("raw", page)
        prepared = prepare(self, page)
        track("prepared", prepared)
        return prepared

    def tracked_decode(response):
        track("answers", response)
        return decode(response)

    monkeypatch.setattr(PagePreparer, "prepare", tracked_prepare)
    monkeypatch.setattr(rawpages, "_decode", tracked_decode)
    crawl = _started_crawl(server)
    seen = 0
    for prepared in crawl.pages():
        seen += len(prepared.records)
        del prepared  # the writer is done with it
        time.sleep(0.01)  # a writer slower than the crawl: the crawlers wait for slots
        with lock:
            for kind, count in alive.items():
                peaks[kind] = max(peaks[kind], count)

    assert seen == 1600
    # At most QUEUE_PAGES prepared and not taken, and one being prepared per slot; a page
    # waiting for a slot (its bytes and row heads, not decoded) is held by each crawler
    # (8), besides those.
    bound = crawl_module.QUEUE_PAGES + 1
    assert peaks["prepared"] <= bound, peaks
    assert peaks["raw"] <= bound + 8, peaks
    assert peaks["answers"] <= bound + 8, peaks


def test_re_reads_wait_for_their_answers_without_a_slot(make_standin, monkeypatch):
    """A page's ``customers.get`` re-reads (customers at the product cap, or due to reset)
    wait on the network before the page takes a slot, so every window's crawler can be
    waiting on its re-reads at once. Before the fix a slot was taken as each answer
    arrived and held through its re-reads: at 250 ms a request, a no-change re-sync of
    100,000 customers over 8 windows fetched 4.7 pages a second. Here each window's
    first page has one re-read that waits until all 8 are in flight (or 3 s)."""
    server = make_standin(1600, seed=3)
    waiting = {"now": 0, "peak": 0}
    changed = threading.Condition()
    first_pages: set[int] = set()
    read_in_full = PagePreparer._read_in_full

    def one_slow_re_read() -> NotFoundError:
        with changed:
            waiting["now"] += 1
            waiting["peak"] = max(waiting["peak"], waiting["now"])
            changed.notify_all()
            changed.wait_for(lambda: waiting["now"] >= 8, timeout=3)
            waiting["now"] -= 1
        return NotFoundError("gone", status=404)  # as for a customer deleted since its page was read

    pool = ThreadPoolExecutor(max_workers=8)

    def with_a_re_read(self, ids):
        reading = read_in_full(self, ids)
        if id(self) not in first_pages:
            first_pages.add(id(self))
            reading[("id", f"slow-{id(self)}")] = pool.submit(one_slow_re_read)
        return reading

    monkeypatch.setattr(PagePreparer, "_read_in_full", with_a_re_read)
    crawl = _started_crawl(server)
    seen = sum(len(prepared.records) for prepared in crawl.pages())

    pool.shutdown()
    assert seen == 1600
    assert len(first_pages) == 8
    assert waiting["peak"] == 8, waiting


def test_a_page_keeps_no_customer_decoded_once_it_is_parsed(make_standin, monkeypatch):
    """While a page is classified, each customer's decoded object goes once its rows are
    built. Before, every row kept its decoded customer until the page was done: ~9 MB of
    1,000 customers, per page being prepared, in the prefetch child's peak."""
    server = make_standin(400, seed=3)
    current: dict[str, list] = {"rows": []}
    most_at_once = 0
    prepare, parse = PagePreparer.prepare, RowForm.parse

    def watched_prepare(self, page):
        current["rows"] = list(page.rows)
        return prepare(self, page)

    def watched_parse(self, data, *args, **kwargs):
        nonlocal most_at_once
        held = sum(row._data is not rawpages._UNDECODED for row in current["rows"])
        most_at_once = max(most_at_once, held)
        return parse(self, data, *args, **kwargs)

    monkeypatch.setattr(PagePreparer, "prepare", watched_prepare)
    monkeypatch.setattr(RowForm, "parse", watched_parse)
    crawl = _started_crawl(server, crawlers=1)
    assert sum(len(prepared.records) for prepared in crawl.pages()) == 400
    assert 0 < most_at_once <= 1


def test_pages_are_packed_by_the_crawler_that_prepared_them(make_standin):
    """The prefetch child's pages wait for the writer pickled (half their size as
    objects): ``pack`` runs on the crawlers' threads, before a page is queued, and the
    crawl gives what it returns."""
    server = make_standin(400, seed=3)
    packed_on: set[str] = set()

    def pack(prepared):
        packed_on.add(threading.current_thread().name)
        return ("packed", len(prepared.records))

    crawl = _started_crawl(server, pack=pack)
    items = list(crawl.pages())
    assert all(kind == "packed" for kind, _ in items)
    assert sum(count for _, count in items) == 400
    assert packed_on and all(name.startswith("autumn-window-") for name in packed_on), packed_on
