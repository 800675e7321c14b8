"""The partitioned crawl's plan: the ``created_at`` key space cut into windows, each crawled
with its own cursor, several at once (runs without Django: the prefetch child uses it).

Autumn answers a page in a quarter of a second from across the internet; one cursor means
one page in flight. ``customers.list`` takes ``created_at_range`` (inclusive epoch ms), so
the key space splits into windows crawled side by side. Customers bunch in time (a launch
day, an import), and Autumn gives no count, so the plan does not guess slices: a crawler
whose window is done takes the next one waiting, and when none waits it cuts the busy
window judged to have the most pages left (by the density of its latest full page, once
it proved large) a few pages ahead of its crawler, and crawls the far part
(``WindowPlan.next_window``). The last window has no end, so customers created during the
crawl are still seen.

A window's bounds change only here; its committed position (cursor, where it reached)
is the sync's to record, page by page, in the page's transaction (``SyncRun.windows``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Window:
    """One part of the key space and where its crawl stands.

    ``start``/``end`` are inclusive epoch ms (None: unbounded). ``cursor`` and
    ``created_at_start`` are the committed resume point, ``reached`` the ``created_at`` of
    the last customer committed, ``done`` whether its last page committed. ``fetched`` is
    how far its crawler has read (not committed): where a split may cut.
    """

    id: int
    start: int | None
    end: int | None
    cursor: str = ""
    created_at_start: int | None = None
    reached: int | None = None
    done: bool = False
    pages: int = 0  # committed
    fetched: int | None = field(default=None, compare=False)
    full_pages: int = field(default=0, compare=False)  # received full: it has more to give
    # The key space (ms) its latest full page took: the density the plan judges the rest
    # of it by (None before a full page of known span).
    page_span: int | None = field(default=None, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def bounds(self) -> tuple[int | None, int | None]:
        with self._lock:
            return self.start, self.end

    def whole(self) -> bool:
        """Whether it spans the whole key space: the one window of a plan made blind to where
        the customers are, which is spread once its first page comes back full (``spread``)."""
        return self.bounds() == (None, None)

    def received(self, created_at: int | None, full: bool = False) -> int | None:
        """Its crawler got a page reaching ``created_at`` (``full``: as many customers as
        asked for); the end now. A split cuts above everything received, under the same
        lock, so no customer is read by two windows."""
        with self._lock:
            if created_at is not None:
                before = self.fetched if self.fetched is not None else (
                    None if self.start is None else self.start - 1)
                if full and before is not None:
                    self.page_span = max(created_at - before, 1)
                self.fetched = max(self.fetched or created_at, created_at)
            self.full_pages += full
            return self.end

    def pages_to_cut(self, now: int) -> float:
        """How many pages it is judged to have left (its key space after what was
        received, at the density of its latest full page) when a cut is worth it: it proved
        large (``WindowPlan.LARGE_AFTER_PAGES`` full pages since its last cut) and has more
        than ``WindowPlan.KEEP_PAGES`` left. Else 0."""
        with self._lock:
            if self.full_pages < WindowPlan.LARGE_AFTER_PAGES or self.page_span is None \
                    or self.fetched is None:
                return 0.0
            left = (self.end if self.end is not None else now) - self.fetched
            pages = left / self.page_span
            return pages if left > WindowPlan.MIN_SPLIT_MS and pages > WindowPlan.KEEP_PAGES else 0.0

    def cut(self, now: int, new_id: int) -> Window | None:
        """Cut off its key space past the next ``WindowPlan.KEEP_PAGES`` pages (at the
        density of its latest full page; at most half of what is left) as a new window
        numbered ``new_id``; None when too little is left. Its crawler's next page stops
        at the new end, and it must prove large again before another cut.

        Cutting near what is being read puts crawlers where the customers are. Halving the
        key space instead cut empty months off a window whose crawler read a launch day
        page after page: a first sync of 100,000 bunched customers ended with windows of 24
        and 21 pages among 29, too lopsided for the next run to keep (``partition``), so
        its first re-sync read pages no memo knew."""
        with self._lock:  # its crawler may have received more meanwhile: cut above that
            if self.fetched is None:
                return None
            left = (self.end if self.end is not None else now) - self.fetched
            if left <= WindowPlan.MIN_SPLIT_MS:
                return None
            keep = left // 2
            if self.page_span is not None:
                keep = min(keep, WindowPlan.KEEP_PAGES * self.page_span)
            cut = self.fetched + keep
            far = Window(new_id, cut + 1, self.end)
            self.end, self.full_pages = cut, 0
            return far

    def spread(self, now: int, parts: int, first_id: int) -> list[Window]:
        """Cut its key space past what was received into ``parts`` equal spans: it keeps
        the first, the others are new windows numbered from ``first_id`` (the last as open
        as it was). None are cut when a span would be too small (``WindowPlan.MIN_SPLIT_MS``)."""
        with self._lock:  # as in ``cut``: above everything its crawler received
            if self.fetched is None or parts < 2:
                return []
            span = ((self.end if self.end is not None else now) - self.fetched) // parts
            if span <= WindowPlan.MIN_SPLIT_MS:
                return []
            cuts = [self.fetched + span * k for k in range(1, parts)]
            ends = [*cuts[1:], self.end]
            far = [Window(first_id + n, cut + 1, end)
                   for n, (cut, end) in enumerate(zip(cuts, ends, strict=True))]
            self.end, self.full_pages = cuts[0], 0
            return far

    def committed(self, after: Any, reached: int | None) -> None:
        """A page of it committed: ``after`` is its next ``ListPosition`` (None: the
        window is done), ``reached`` the latest ``created_at`` on it."""
        self.cursor = after.cursor if after else ""
        self.created_at_start = after.created_at_start if after else None
        self.done = after is None
        self.pages += 1
        if reached is not None:
            self.reached = max(self.reached or reached, reached)

    @property
    def started(self) -> bool:
        """Whether a page of it was committed (a resumed window)."""
        return bool(self.cursor) or self.created_at_start is not None or self.done

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "start": self.start, "end": self.end, "cursor": self.cursor,
                "created_at_start": self.created_at_start, "reached": self.reached, "done": self.done,
                "pages": self.pages}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Window:
        return cls(id=data["id"], start=data["start"], end=data["end"], cursor=data.get("cursor", ""),
                   created_at_start=data.get("created_at_start"), reached=data.get("reached"),
                   done=bool(data.get("done")), pages=data.get("pages", 0))


def bounds_of(windows: list[dict[str, Any]]) -> list[Window]:
    """A new plan with the bounds of ``windows`` (a finished run's), positions cleared: the
    next run cuts the key space where the last one ended up cutting it, so its pages, and
    their memos, come out the same when nothing changed."""
    return [Window(i, w["start"], w["end"]) for i, w in enumerate(sorted(
        windows, key=lambda w: -1 if w["start"] is None else w["start"]))]


class WindowPlan:
    """The windows of one attempt, handed to crawler threads; thread-safe.

    A crawl may start with one window for the whole key space: an org of a page is then
    read with one request. Once that window's first page comes back full, the key space
    past it is cut into equal spans, one for each of the ``crawlers`` (``Window.spread``):
    with nothing known of where the customers are, every crawler has a window after one
    request rather than after a cut per window proved large. At 250 ms a request, cuts
    alone left crawlers idle for the first several seconds of a first sync: 100,000
    bunched customers took 18.5 s on SQLite, a third of its pages in its first 8 s.

    From then on, a window that proves large (it gave ``LARGE_AFTER_PAGES`` full pages
    since its last cut) is cut for an idle crawler a few pages ahead of its own
    (``Window.cut``), again and again, so the crawlers spread over where the customers
    are, however they bunch.
    """

    LARGE_AFTER_PAGES = 2
    # What a cut leaves the window's own crawler, in pages at the density of its latest
    # full page; a window judged to have no more than this left is not cut (its far part
    # would be a page or less: one more request for little).
    KEEP_PAGES = 3
    # Do not cut a window whose remaining key space is smaller than this: a bunch of
    # customers created within a few ms cannot be split anyway.
    MIN_SPLIT_MS = 2
    # How often an idle crawler looks again for a window to cut while others crawl.
    IDLE_POLL_SECONDS = 0.02

    def __init__(self, windows: list[Window], now_ms: Callable[[], int] | None = None, *,
                 fixed: bool = False, crawlers: int = 1) -> None:
        # ``fixed``: a plan that came from the last complete run keeps its bounds, so the
        # pages, and their memos, stay the same from run to run.
        self.fixed = fixed
        # A plan of one window open above is spread over the crawlers once (``_spread``).
        self._spread_over = crawlers if not fixed and len(windows) == 1 and windows[0].whole() else 0
        self._lock = threading.Lock()
        self.windows = {w.id: w for w in windows}
        self._waiting = [w.id for w in sorted(windows, key=_order) if not w.done]
        self._busy: set[int] = set()
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)

    def next_window(self) -> Window | None:
        """A window for an idle crawler: the next one waiting, else the far part of the
        busy window judged to have the most pages left (``_split_largest``); None when no
        window is left to crawl or cut (the crawler is done)."""
        while True:
            with self._lock:
                if self._waiting:
                    window = self.windows[self._waiting.pop(0)]
                else:
                    window = self._spread() or self._split_largest()
                    if window is None and not self._busy:
                        return None
                if window is not None:
                    self._busy.add(window.id)
                    return window
            time.sleep(self.IDLE_POLL_SECONDS)

    def finished(self, window: Window) -> None:
        """Its crawler read its last page (not necessarily committed)."""
        with self._lock:
            self._busy.discard(window.id)

    def bounds(self) -> dict[int, tuple[int | None, int | None]]:
        """Every window's bounds now (sent with each page so the recorder knows splits)."""
        with self._lock:
            return {w.id: w.bounds() for w in self.windows.values()}

    def _spread(self) -> Window | None:
        """Once the plan's one window received a full page: its key space past that page
        in equal spans, one for each crawler (``Window.spread``); the caller takes the
        first new window, the others wait for theirs."""
        if self._spread_over < 2:
            return None
        [window] = self.windows.values()
        if window.id not in self._busy:  # read whole already
            self._spread_over = 0
            return None
        if window.full_pages < 1:
            return None
        far = window.spread(self._now_ms(), self._spread_over, max(self.windows) + 1)
        self._spread_over = 0  # once: from here on windows are cut as they prove large
        if not far:
            return None
        self.windows.update((new.id, new) for new in far)
        self._waiting.extend(new.id for new in far[1:])
        return far[0]

    def _split_largest(self) -> Window | None:
        """The far part of the busy window judged to have the most pages left, if any is
        worth cutting (``Window.pages_to_cut``, ``Window.cut``)."""
        if self.fixed:
            return None
        now = self._now_ms()
        best, best_left = None, 0.0
        for window_id in self._busy:
            window = self.windows[window_id]
            left = window.pages_to_cut(now)
            if left > best_left:
                best, best_left = window, left
        new = best.cut(now, max(self.windows) + 1) if best is not None else None
        if new is not None:
            self.windows[new.id] = new
        return new


def _order(window: Window) -> int:
    return -1 if window.start is None else window.start
