"""The rules of paging through ``customers.list``, apart from HTTP and from decoding.

``ListCrawl`` says what to ask next and where a page leads; whoever holds the bytes decides
how to read them. The client's ``customers.iter_pages`` decodes each page into dicts; the
sync (``sync.rawpages``) decodes only what it needs, and needs nothing for a page whose
bytes it has seen before. Both go by the same rules:

- ascending ``(created_at, id)``, so customers created during the crawl sort behind the
  cursor and are seen;
- a limit above the org's maximum is lowered to the maximum Autumn names;
- a full page ending in a customer with no id comes with a null ``next_cursor`` although
  more follow (Autumn's defect): the crawl goes on with ``created_at_range.start`` from
  that customer's ``created_at``, skipping the customers of that instant it already has;
- in a partitioned crawl, a ``Window`` bounds the ``created_at`` range and may be lowered
  while a request is out: rows past the new end are dropped, and end the crawl.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .exceptions import AutumnResponseError

Key = tuple[str, Any]  # ("id", id), ("email", email), or ("invalid", n) for a row that is not an object


@dataclass(frozen=True)
class ListPosition:
    """Where a ``customers.list`` crawl stands; stored by the sync so a run can resume.

    ``created_at_start`` is set when the crawl had to continue past Autumn's null-cursor
    defect: from then on every request carries ``created_at_range.start``.
    """

    cursor: str = ""
    created_at_start: int | None = None


@dataclass(frozen=True)
class PageOutline:
    """What the crawl needs of a page to go on from it, kept by a caller that has read the
    page before: with it, the same bytes again need no decoding at all."""

    next_cursor: str | None
    count: int  # customers on the page
    reached: int | None = None  # the latest created_at on it (epoch ms), when known


class Window(Protocol):
    """A part of the ``created_at`` key space (``sync.windows.Window``)."""

    def bounds(self) -> tuple[int | None, int | None]:
        """(start, end), inclusive epoch ms; None: unbounded on that side."""

    def received(self, created_at: int | None, full: bool) -> int | None:
        """A page reaching ``created_at`` arrived: note it (a split must cut above it) and
        return the window's end now, in one step."""


@dataclass
class Step:
    """Where one page led: the rows to keep (None: all of them), the position after it (None:
    the crawl is over), and the ``created_at`` it had to step past when a full page of
    customers created at one instant ended on one without an id (the caller may warn)."""

    position: ListPosition
    next_position: ListPosition | None
    keep: list[int] | None = None
    stuck_at: int | None = None
    reached: int | None = None  # the latest created_at among the rows kept
    dropped: bool = False  # rows were left out: the page is not as Autumn sent it

    def kept(self, rows: Sequence) -> list:
        return list(rows) if self.keep is None else [rows[i] for i in self.keep]


@dataclass
class ListCrawl:
    """One crawl of ``customers.list`` (one window of a partitioned one): call ``request``
    for each request's body, then ``advance`` with the page's rows (or ``recognise`` with
    the outline of bytes read before), until ``done``."""

    limit: int
    position: ListPosition = field(default_factory=ListPosition)
    window: Window | None = None
    filters: dict[str, Any] = field(default_factory=dict)
    done: bool = False
    _skip: set[Key] = field(default_factory=set)  # rows the next page may repeat
    _sent_end: int | None = None
    _went_back_to: int | None = None  # the instant the defect last sent the crawl back to

    @property
    def on_cursor(self) -> bool:
        """Whether pages come as Autumn pages them: not filtered for rows already had, so
        equal bytes mean equal pages (what a caller may remember them by)."""
        return not self._skip

    def request(self) -> dict[str, Any]:
        """The body of the next ``customers.list`` request."""
        body = {"start_cursor": self.position.cursor, "sort_order": "asc", **self.filters,
                "limit": self.limit}
        window_range = dict(self.filters.get("created_at_range", {}))
        self._sent_end = None
        if self.window is not None:
            window_start, self._sent_end = self.window.bounds()
            window_range.update({"start": window_start} if window_start is not None else {})
            window_range.update({"end": self._sent_end} if self._sent_end is not None else {})
        if self.position.created_at_start is not None:
            window_range["start"] = max(self.position.created_at_start, window_range.get("start", 0))
        if window_range:
            body["created_at_range"] = window_range
        return body

    def lower_limit(self, message: str) -> int | None:
        """The org's maximum page size, if ``message`` (a 400's) names one below the limit
        asked: the limit is lowered to it, and the same request should be sent again."""
        org_max = org_max_limit(message)
        if org_max is None or org_max >= self.limit:
            return None
        self.limit = org_max
        return org_max

    def recognise(self, outline: PageOutline) -> Step | None:
        """The step of a page known by its ``outline`` (the same bytes as a page read
        before), or None when only its rows can tell: at the defect, or when the window was
        lowered while the request was out."""
        next_position = self._plain_next(outline.next_cursor, outline.count)
        if next_position is _UNKNOWN:
            return None
        if self.window is not None and self.window.received(outline.reached, outline.count >= self.limit) \
                != self._sent_end:
            return None  # rows past the lowered end must be dropped: decode them
        return self._step(Step(self.position, next_position, reached=outline.reached))

    def advance(self, next_cursor: str | None, rows: Sequence[tuple[Key, int | None]]) -> Step:
        """The step of a decoded page: ``rows`` are each row's crawl key (``crawl_key``) and
        ``created_at`` (None when it is not an int), in the page's order."""
        keep = None
        if self._skip:
            keep = [i for i, (key, _) in enumerate(rows) if key not in self._skip]
        next_position, self._skip, stuck_at = self._next(next_cursor, rows)
        dropped = keep is not None and len(keep) < len(rows)
        if self.window is not None:
            end = self.window.received(_latest(rows, keep), len(rows) >= self.limit)
            if end != self._sent_end and end is not None:
                within = [i for i in (range(len(rows)) if keep is None else keep)
                          if rows[i][1] is None or rows[i][1] <= end]
                if len(within) < (len(rows) if keep is None else len(keep)):
                    keep, next_position, dropped = within, None, True
        return self._step(Step(self.position, next_position, keep, stuck_at, _latest(rows, keep), dropped))

    def _step(self, step: Step) -> Step:
        if step.next_position is None:
            self.done = True
        else:
            self.position = step.next_position
        return step

    def _plain_next(self, next_cursor: str | None, count: int) -> Any:
        if next_cursor:
            return ListPosition(next_cursor, self.position.created_at_start)
        if count < self.limit or count == 0:
            return None
        return _UNKNOWN

    def _next(self, next_cursor: str | None, rows: Sequence[tuple[Key, int | None]]
              ) -> tuple[ListPosition | None, set[Key], int | None]:
        plain = self._plain_next(next_cursor, len(rows))
        if plain is not _UNKNOWN:
            return plain, set(), None
        # A full page without a cursor: Autumn's defect when the last customer has no id.
        last_created = rows[-1][1]
        if last_created is None:
            raise AutumnResponseError(
                "customers.list returned a full page without next_cursor and its last customer "
                "has no usable created_at, so the crawl cannot continue safely."
            )
        start, stuck_at = last_created, None
        if (self.position.cursor == "" and self.position.created_at_start == last_created) \
                or self._went_back_to == last_created:
            # The whole page shares one created_at, or the crawl went back to it before and
            # paged to the same defect again (more customers at it than a page holds):
            # continuing from it again would loop.
            start, stuck_at = last_created + 1, last_created
        self._went_back_to = None if stuck_at is not None else start
        repeated = {key for key, created_at in rows if created_at == start}
        return ListPosition("", start), repeated, stuck_at


_UNKNOWN = object()  # the outline alone cannot say where the crawl goes next


def _latest(rows: Sequence[tuple[Key, int | None]], keep: list[int] | None) -> int | None:
    times = [rows[i][1] for i in (range(len(rows)) if keep is None else keep) if rows[i][1] is not None]
    return max(times) if times else None


def crawl_key(customer: Any, position: int = 0) -> Key:
    """How the crawl tells a list row from the others at one instant: its id, else its
    email; a row that is not an object, or whose id or email is not a plain value, is told
    by its ``position`` on the page. ``customer`` is a dict or has ``id`` and ``email``
    attributes (``sync.rawpages``)."""
    if isinstance(customer, dict):
        id_, email = customer.get("id"), customer.get("email")
    elif hasattr(customer, "id"):
        id_, email = customer.id, customer.email
    else:
        return ("invalid", position)
    name, value = ("id", id_) if id_ is not None else ("email", email)
    if value is not None and type(value) not in (str, int, float, bool):
        return ("invalid", position)
    return (name, value)


def created_at_ms(customer: Any) -> int | None:
    """A list row's ``created_at`` when it is an int (epoch ms), else None."""
    created_at = customer.get("created_at") if isinstance(customer, dict) else None
    return created_at if type(created_at) is int else None


def org_max_limit(message: str) -> int | None:
    """The maximum in ``limit 5000 exceeds max of 1000 for this org``, if that is the error."""
    words = message.split()
    if "exceeds" in words and "max" in words:
        try:
            return int(words[words.index("max") + 2])
        except (IndexError, ValueError):
            return None
    return None
