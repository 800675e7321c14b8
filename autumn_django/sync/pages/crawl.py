"""Prepared pages of a partitioned crawl: one thread per window in flight, each with its
own client (and HTTP session), their pages merged into one stream for the writer (runs
without Django: the prefetch child uses it).

Each window's pages come in its own order; windows interleave. A page carries its window's
id and every window's bounds as they stood when it was read, so the writer's record of the
run learns of splits in the order it commits pages.

Memory stays flat however many windows run: a crawler holds its window's next page as
bytes (a raw page is ~1/6 of the same page decoded into objects), prepares a page only
with one of ``QUEUE_PAGES`` slots, freed as the writer takes the page, and keeps no
reference to a page it handed on. At 10,000 customers and 8 windows, the prefetch
child's peak went from 170 MiB (every crawler one decoded page ahead and one prepared in
hand, besides the queue) to the figure in the README's performance table. In the prefetch
child a page waits for the writer pickled (``pack``): 5 MB of 1,000 customers, against
10 MB as objects.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ...client import AutumnClient, ListPosition
from .preparer import MirrorView, PagePreparer, PreparedPage
from .records import DATETIME_ROWS, RowForm
from .windows import Window, WindowPlan

# Pages prepared and not yet taken by the writer, at most. 2 rather than 4 took 31 MiB off
# the prefetch child's peak at 100,000 customers and 0 ms (the sync's peak RSS is the
# child's and the sync process's together, during the customers pass); with 3 the peak
# was 241-248 MiB, too near the 250 target. A slot is taken only for decoding and parsing
# (a page's re-reads answer before: ``preparer.PagePreparer.prepare``), so few slots do
# not hold the windows' requests back.
QUEUE_PAGES = 2

_DONE = object()


class WindowedCrawl:
    """Crawl ``plan`` with ``crawlers`` threads. ``make_client`` builds one client per
    crawler; ``view`` (shared by every window's preparer) must be loaded by the caller, on
    its own thread, once ``pages`` has started the crawlers."""

    def __init__(self, plan: WindowPlan, *, make_client: Callable[[], AutumnClient], limit: int,
                 crawlers: int, view: MirrorView, form: RowForm = DATETIME_ROWS,
                 pack: Callable[[PreparedPage], Any] | None = None) -> None:
        self.plan, self.make_client, self.limit = plan, make_client, limit
        self.crawlers = max(1, crawlers)
        self.view, self.form = view, form
        # What the crawl gives for each page, made by the crawler that prepared it (the
        # prefetch child's pickled frame); None: the page itself.
        self.pack = pack
        self._out: queue.Queue = queue.Queue(maxsize=QUEUE_PAGES)
        self._slots = threading.Semaphore(QUEUE_PAGES)  # pages prepared and not yet taken
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for n in range(self.crawlers):
            thread = threading.Thread(target=self._crawl, name=f"autumn-window-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def pages(self) -> Iterator[Any]:
        """Every window's pages as they come (each ``pack``ed, if given); raises the first
        crawler's error (and stops the others). Call ``start`` first."""
        running = len(self._threads)
        try:
            while running:
                item = self._out.get()
                if item is _DONE:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    self._slots.release()
                    yield item
        finally:
            self.stop()

    def stop(self) -> None:
        """Crawlers end after the request each may be making."""
        self._stopping.set()
        for _ in self._threads:
            self._slots.release()  # free any crawler waiting for a slot
        while True:  # free any crawler blocked on a full stream
            try:
                self._out.get_nowait()
            except queue.Empty:
                break

    def _crawl(self) -> None:
        try:
            with self.make_client() as client:
                while not self._stopping.is_set():
                    window = self.plan.next_window()
                    if window is None:
                        break
                    self._crawl_window(client, window)
        except BaseException as exc:  # raised again on the caller's thread
            self._put(exc)
        finally:
            self._put(_DONE)

    def _crawl_window(self, client: AutumnClient, window: Window) -> None:
        preparer = PagePreparer(client, form=self.form, view=self.view, slots=self._slots)
        pages = preparer.pages(ListPosition(window.cursor, window.created_at_start), self.limit,
                               window=window)
        try:
            for prepared in pages:
                prepared.window, prepared.bounds = window.id, self.plan.bounds()
                item = prepared if self.pack is None else self.pack(prepared)
                del prepared  # not held here while the next page's answer is awaited
                queued = self._put(item)
                del item
                if not queued:
                    return
        finally:
            pages.close()
            self.plan.finished(window)

    def _put(self, item: object) -> bool:
        """Queue ``item`` unless the crawl is stopping (then drop it: nobody reads)."""
        while not self._stopping.is_set():
            try:
                self._out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return item is _DONE
