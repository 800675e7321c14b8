"""The rules of paging through ``entities.list``, apart from HTTP and from decoding.

``EntityCrawl`` says what to ask next and where a page leads; whoever holds the bytes
decides how to read them (as ``listing`` does for ``customers.list``). The client's
``entities.iter_pages`` decodes every page; the full sync (``sync.pages.entitypages``)
does not decode a page whose bytes it has read before. Both go by the same rules:

- newest first, from a cursor (``entities.list`` has no ``sort_order``);
- a limit above the org's maximum is lowered to the maximum Autumn names;
- a full page whose ``next_cursor`` is null and whose last entity has no id (the server's
  defect: ``handleListEntitiesV2.ts``, ``nextCursor = hasMore && lastEntity?.id ...``) is
  asked again with the limit that ends it on its last entity with an id; that shorter
  page's cursor carries the crawl on. A full page none of whose entities has an id cannot
  be got past: it ends the crawl, incomplete, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .listing import org_max_limit

logger = logging.getLogger(__name__)


@dataclass
class EntityStep:
    """Where one page of the crawl led."""

    cursor: str  # the start_cursor that produced the page
    next_cursor: str | None  # None: the crawl ended (see ``complete``)
    limit: int  # the limit the page was asked with
    complete: bool = True  # False: the crawl stopped early, on a page it could not get past
    warnings: list[str] = field(default_factory=list)


@dataclass
class EntityCrawl:
    """One crawl of ``entities.list`` (of ``customer_id``'s entities, if given): send
    ``request()``, then ``advance`` with what the page holds (or ``recognise`` with what
    was kept of bytes read before) until ``done``."""

    limit: int
    cursor: str = ""
    customer_id: str | None = None
    done: bool = False
    ask: int = field(init=False)  # this cursor's limit: lowered to end a defective page on an id

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"limit must be at least 1, not {self.limit}")
        self.ask = self.limit

    @property
    def shortened(self) -> bool:
        """Whether the next request asks for less than the crawl's limit (to end a
        defective page on an id): its answer is not what the cursor gives at the limit."""
        return self.ask != self.limit

    def request(self) -> dict[str, Any]:
        """The body of the next ``entities.list`` request."""
        body: dict[str, Any] = {"start_cursor": self.cursor, "limit": self.ask}
        if self.customer_id is not None:
            body["customer_id"] = self.customer_id
        return body

    def lower_limit(self, message: str) -> int | None:
        """The org's maximum page size, if ``message`` (a 400's) names one below the limit
        asked: the crawl's limit is lowered to it, and the same request should be sent again."""
        org_max = org_max_limit(message)
        if org_max is None or org_max >= self.ask:
            return None
        self.limit = self.ask = org_max
        return org_max

    def advance(self, count: int, next_cursor: str | None, last_with_id: int | None) -> EntityStep | None:
        """The step of a decoded page of ``count`` entities, ``last_with_id`` the position
        of its last entity with an id (``last_with_id``); None: ask the same cursor again,
        for the shorter page ``request`` now asks for."""
        if next_cursor is None and count and count >= self.ask and last_with_id != count - 1:
            if last_with_id is not None:
                self.ask = last_with_id + 1
                return None
            warning = (f"entities.list returned a full page of {count} entities without an id "
                       f"(start_cursor={self.cursor!r}) and no next_cursor; the crawl could not continue "
                       "past it, so entities after it were not read.")
            logger.warning(warning)
            self.done = True
            return EntityStep(self.cursor, None, self.ask, complete=False, warnings=[warning])
        step = EntityStep(self.cursor, next_cursor, self.ask)
        if next_cursor is None:
            self.done = True
        else:
            self.cursor, self.ask = next_cursor, self.limit
        return step

    def recognise(self, count: int, next_cursor: str | None, ends_on_id: bool) -> EntityStep | None:
        """The step of a page known from bytes read before (its entity count, cursor, and
        whether its last entity has an id); None when only its entities can tell (the
        defect's case: which of them has an id): decode it."""
        if next_cursor is None and count and count >= self.ask and not ends_on_id:
            return None
        return self.advance(count, next_cursor, count - 1 if ends_on_id else None)


def has_id(entity: Any) -> bool:
    """What the server's cursor needs of a page's last entity: a (truthy) id."""
    return isinstance(entity, dict) and bool(entity.get("id"))


def last_with_id(entities: Sequence[Any]) -> int | None:
    """The position of the last entity with an id (``has_id``) on a page; None: none has."""
    for position in range(len(entities) - 1, -1, -1):
        if has_id(entities[position]):
            return position
    return None
