"""The partitioned crawl's plan: the ``created_at`` key space cut into windows, each crawled
with its own cursor, several at once (runs without Django: the prefetch child uses it).

Autumn answers a page in a quarter of a second from across the internet; one cursor means
one page in flight. ``customers.list`` takes ``created_at_range`` (inclusive epoch ms), so
the key space splits into windows crawled side by side. Customers bunch in time (a launch
day, an import), and Autumn gives no count, so the plan does not guess slices: a crawler
whose window is done takes the next one waiting, and when none waits it cuts the busy
window with the most key space left (once that window proved large) in two and crawls the
far half (``WindowPlan.next_window``). The last window has no end, so customers created
during the crawl are still seen.

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
    # How much key space its latest full page took, and how many customers that was: the
    # density the plan judges the rest of it by (a window cut off another starts with the
    # other's, so it can be cut again before its first page arrives).
    page_span: int | None = field(default=None, compare=False)
    page_size: int = field(default=0, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def bounds(self) -> tuple[int | None, int | None]:
        with self._lock:
            return self.start, self.end

    def received(self, created_at: int | None, full: bool = False, count: int = 0) -> int | None:
        """Its crawler got a page of ``count`` customers reaching ``created_at`` (``full``:
        as many as asked for); the end now. A split cuts above everything received, under
        the same lock, so no customer is read by two windows."""
        with self._lock:
            before = self._position()
            if created_at is not None:
                self.fetched = max(self.fetched or created_at, created_at)
                if full and before is not None:
                    self.page_span, self.page_size = max(self.fetched - before, 1), count
            self.full_pages += full
            return self.end

    def left(self, now: int) -> float | None:
        """The pages it is judged to have left (its key space after what was received, at
        the density of its latest full page); None when that is unknown, or too few for a
        cut to be worth its requests (``WindowPlan.CUT_PAGES_LEFT``)."""
        with self._lock:
            position = self._position()
            if self.page_span is None or position is None:
                return None
            span = (self.end if self.end is not None else now) - position
            pages = span / self.page_span
            return pages if pages >= WindowPlan.CUT_PAGES_LEFT and span > WindowPlan.MIN_SPLIT_MS else None

    def cut(self, now: int) -> Window | None:
        """Cut off the part of its key space after the next ``WindowPlan.KEEP_PAGES`` pages
        (at its latest density; at most half of what is left) as a new window, numbered
        ``id`` 0 for the caller to renumber; None when too little is left. Its crawler's
        next page stops at the new end. Cutting near what is being read, rather than
        halving the key space, puts the crawlers where the customers are: halving cut
        empty years while one crawler read a bunch (a launch day) page after page."""
        with self._lock:
            position = self._position()
            if position is None:
                return None
            span = (self.end if self.end is not None else now) - position
            if span <= WindowPlan.MIN_SPLIT_MS:
                return None
            keep = span // 2
            if self.page_span is not None:
                keep = min(keep, WindowPlan.KEEP_PAGES * self.page_span)
            cut = position + max(keep, 1)
            far = Window(0, cut + 1, self.end, page_span=self.page_span, page_size=self.page_size)
            self.end = cut
            return far

    def _position(self) -> int | None:
        """The created_at its crawler has read up to (the ms before its start, before any)."""
        if self.fetched is not None:
            return self.fetched
        return None if self.start is None else self.start - 1

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

    A crawl may start with one window for the whole key space: an org of a few pages is
    then read with one cursor, a few requests. A window judged to have many pages left
    (``Window.left``, by the density of its latest full page) is cut for an idle crawler,
    again and again, the one with the most left first (``Window.cut``), so the crawlers
    spread over where the customers are, however they bunch.
    """

    # Cut a window only when it is judged to have this many pages left: cutting one that
    # would end in a page or two only adds a request (30,000 bunched customers at 250 ms:
    # cut at any size, the crawl read 96 pages for 30 pages of customers).
    CUT_PAGES_LEFT = 4
    # What a cut leaves the window's own crawler: pages at its latest density. Each window
    # ends with a request for a short page, so small windows cost requests; large ones
    # leave crawlers idle at the end.
    KEEP_PAGES = 3
    # Do not cut a window whose remaining key space is smaller than this: a bunch of
    # customers created within a few ms cannot be split anyway.
    MIN_SPLIT_MS = 2
    # How often an idle crawler looks again for a window to cut while others crawl.
    IDLE_POLL_SECONDS = 0.02

    def __init__(self, windows: list[Window], now_ms: Callable[[], int] | None = None, *,
                 fixed: bool = False) -> None:
        # ``fixed``: a plan that came from the last complete run keeps its bounds, so the
        # pages, and their memos, stay the same from run to run.
        self.fixed = fixed
        self._lock = threading.Lock()
        self.windows = {w.id: w for w in windows}
        self._waiting = [w.id for w in sorted(windows, key=_order) if not w.done]
        self._busy: set[int] = set()
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)

    def next_window(self) -> Window | None:
        """A window for an idle crawler: the next one waiting, else the far half of the busy
        window with the most key space left once one proves large; None when no window is
        left to crawl or cut (the crawler is done)."""
        while True:
            with self._lock:
                if self._waiting:
                    window = self.windows[self._waiting.pop(0)]
                else:
                    window = self._split_largest()
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

    def _split_largest(self) -> Window | None:
        if self.fixed:
            return None
        now = self._now_ms()
        judged = [(left, window) for window in (self.windows[i] for i in self._busy)
                  if (left := window.left(now)) is not None]
        if not judged:
            return None
        _, best = max(judged, key=lambda item: item[0])  # the most pages left
        far = best.cut(now)
        if far is None:
            return None
        far.id = max(self.windows) + 1
        self.windows[far.id] = far
        return far


def _order(window: Window) -> int:
    return -1 if window.start is None else window.start
