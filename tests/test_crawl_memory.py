"""The partitioned crawl keeps few pages in memory however many windows run: the prefetch
child's peak RSS grew with the windows in flight (170 MiB at 10,000 customers, 8 windows)
while each crawler held a decoded page ahead and a prepared one in hand."""

from __future__ import annotations

import threading
import time

import pytest

from autumn_django.client import AutumnClient
from autumn_django.sync.pages import crawl as crawl_module
from autumn_django.sync.pages.fingerprints import Fingerprints
from autumn_django.sync.pages.preparer import MirrorView, PagePreparer
from autumn_django.sync.pages.windows import Window, WindowPlan


@pytest.mark.parametrize("crawlers", [1, 8])
def test_prepared_pages_in_memory_stay_within_the_queue_however_many_windows_run(make_standin, monkeypatch,
                                                                                  crawlers):
    server = make_standin(1600, seed=3)
    times = sorted(c["created_at"] for c in server.list_customers())
    # Eight windows of equal counts, so every crawler has pages to prepare at once.
    edges = [times[len(times) * n // 8] for n in range(1, 8)]
    windows = [Window(n, None if n == 0 else edges[n - 1] + 1, edges[n] if n < 7 else None) for n in range(8)]
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
    view = MirrorView(Fingerprints, dict)
    crawl = crawl_module.WindowedCrawl(WindowPlan(windows, fixed=True), make_client=AutumnClient, limit=40,
                                       crawlers=crawlers, view=view)
    crawl.start()
    view.load()
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
