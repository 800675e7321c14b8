"""A run's windows (``windows.py``) as the database side keeps them: planned when an
attempt starts, recorded page by page in ``SyncRun.windows`` (in the page's transaction,
so a killed run resumes every unfinished window from its last committed page), and the
part of the key space an attempt saw whole, where it may settle deletions.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.db.models import Q

from ..conf import autumn_settings
from ..models import Customer, SyncRun
from .pages.preparer import PreparedPage
from .pages.timeforms import EPOCH
from .pages.windows import Window, bounds_of

logger = logging.getLogger(__name__)


class RunWindows:
    """The committed state of a run's windows, by id."""

    def __init__(self, windows: list[Window], *, fixed: bool = False) -> None:
        self.windows = {w.id: w for w in windows}
        self.fixed = fixed  # bounds from the last complete run: cut only the open-ended window
        # What this attempt will have seen whole when every window is done.
        self.judged = _judged(windows)

    @classmethod
    def for_run(cls, run: SyncRun, using: str) -> RunWindows:
        """The windows a run resumes, or a new plan (``plan_windows``)."""
        if run.windows:
            return cls([Window.from_dict(w) for w in run.windows], fixed=len(run.windows) > 1)
        if run.cursor or run.created_at_start is not None:  # a run from before windows
            return cls([Window(0, None, None, run.cursor, run.created_at_start)])
        windows = plan_windows(run.env, using, run.page_size)
        return cls(windows, fixed=len(windows) > 1)

    def restart(self) -> None:
        """Every window from its start (Autumn refused a saved cursor); all judged again."""
        for window in self.windows.values():
            window.cursor, window.created_at_start, window.reached, window.done = "", None, None, False
        self.judged = None

    def to_crawl(self) -> list[Window]:
        """Copies for a crawl to cut and move (the committed ones change only by ``record``)."""
        return [Window.from_dict(w.as_dict()) for w in self.windows.values() if not w.done]

    def record(self, prepared: PreparedPage) -> None:
        """A page of ``prepared.window`` is about to commit: its window moves on."""
        if prepared.window is None:
            return
        for window_id, (start, end) in (prepared.bounds or {}).items():
            window = self.windows.setdefault(window_id, Window(window_id, start, end))
            window.start, window.end = start, end
        window = self.windows[prepared.window]
        window.committed(prepared.page.next_position, prepared.reached_created_at)

    def as_json(self) -> list[dict]:
        return [w.as_dict() for w in sorted(self.windows.values(), key=lambda w: w.id)]

    @property
    def done(self) -> bool:
        return all(w.done for w in self.windows.values())

    def covered(self) -> float:
        """About how much of the key space is crawled (for progress): windows done count
        whole, the others by how far their time has moved."""
        now = time.time_ns() // 1_000_000
        total = len(self.windows)
        fraction = 0.0
        for w in self.windows.values():
            if w.done:
                fraction += 1
            elif w.reached is not None and w.start is not None:
                end = w.end if w.end is not None else now
                fraction += min(max((w.reached - w.start) / max(end - w.start, 1), 0.0), 1.0)
        return fraction / total if total else 1.0


def plan_windows(env: str, using: str, page_size: int | None = None) -> list[Window]:
    """The last complete run's windows, kept as they are (a no-change re-sync then reads
    the same pages, whose memos spare decoding them) while they stay balanced; else windows
    of equal shares of the customers the mirror holds (``spread_by_mirror``); else, for a
    mirror of a few pages, one window that splits as it proves large. One window only with
    ``AUTUMN_SYNC_WINDOWS = 1``."""
    count = autumn_settings.SYNC_WINDOWS
    if count > 1:
        last = (SyncRun.objects.using(using).filter(env=env, status=SyncRun.Status.SUCCEEDED)
                .exclude(windows=[]).order_by("-pk").values_list("windows", flat=True).first())
        if last and 1 < len(last) <= REUSED_WINDOWS_PER_CRAWLER * count and _balanced(last, count):
            return bounds_of(last)
        spread = spread_by_mirror(env, using, count, page_size or autumn_settings.SYNC_PAGE_SIZE)
        if spread:
            return spread
    return [Window(0, None, None)]


def spread_by_mirror(env: str, using: str, count: int, page_size: int) -> list[Window]:
    """``count`` windows holding equal shares of the customers the mirror holds (nearly
    what Autumn has), each a customer short of whole pages; none for a mirror of fewer
    than two pages.

    A first sync cuts windows blind, as windows prove large, so its plan can end lopsided
    (a window of many pages crawled one after another), and a kept plan becomes so as new
    customers land in its last window. Measured at 10,000 customers and 250 ms a request,
    a plan of windows of 6, 4, 1 and 1 pages made a no-change re-sync's customers pass
    5.4 s against 1.8 s to fetch them over 8 windows."""
    present = Customer.objects.using(using).filter(env=env, deleted_at__isnull=True)
    total = present.count()
    if total < 2 * page_size:
        return []
    share = -(-total // count)
    # A page short of whole pages: a window of exactly whole pages would end on a full
    # page, whose cursor costs one more request for an empty page.
    share = max(1, -(-share // page_size) * page_size - 1)
    ordered = present.order_by("created_at").values_list("created_at", flat=True)
    cuts: list[int] = []
    for index in range(share, total, share):
        if len(cuts) == count - 1:
            break  # the last window takes what is left over
        cut = (ordered[index - 1] - EPOCH) // timedelta(milliseconds=1)
        if not cuts or cut > cuts[-1]:  # customers of one instant stay in one window
            cuts.append(cut)
    starts = [None, *(cut + 1 for cut in cuts)]
    return [Window(n, start, end) for n, (start, end) in enumerate(zip(starts, [*cuts, None], strict=True))]


# A plan with more windows than this many per crawler costs more requests than the memos
# it keeps save: start afresh instead.
REUSED_WINDOWS_PER_CRAWLER = 4


def _balanced(windows: list[dict], crawlers: int) -> bool:
    """Whether no window takes much more than its share of pages, the share being what
    ``crawlers`` crawling side by side would each take. New customers all land in the
    last, open-ended window, and a blind first plan may leave a bunch in one window; once
    one does, a fresh plan spreads them again."""
    pages = [w.get("pages", 0) for w in windows]
    share = -(-sum(pages) // crawlers)
    # A window of up to twice the share kept every no-change re-sync waiting on one
    # crawler. With this rule and 8 re-read threads a window (``preparer``), a no-change
    # re-sync of 50,000 customers at 250 ms a request (SQLite): 10.3 -> 6.1 s.
    return max(pages) <= share + 1


def _judged(windows: list[Window]) -> Q | None:
    """The customers an attempt starting from ``windows`` will have seen if it finishes:
    the whole key space for a fresh pass (None); for a resumed one, each unfinished
    window's part after where it stood (strictly: customers at that very instant may
    have been seen by the attempt before, whose sightings died with it)."""
    if not any(w.started for w in windows):
        return None
    judged = Q(pk__in=[])
    for w in windows:
        if w.done:
            continue
        part = Q()
        if w.reached is not None:
            part &= Q(created_at__gt=EPOCH + timedelta(milliseconds=w.reached))
        elif w.start is not None:
            part &= Q(created_at__gte=EPOCH + timedelta(milliseconds=w.start))
        if w.end is not None:
            part &= Q(created_at__lte=EPOCH + timedelta(milliseconds=w.end))
        judged |= part
    return judged
