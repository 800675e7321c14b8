"""The client's entity and catalogue endpoints: ``client.entities``, ``client.features``
and ``client.plans`` (attached by ``AutumnClient``; ``client.py`` keeps the transport).

``entities.list`` pages newest first and has neither ``sort_order`` nor
``created_at_range`` (autumn-api.md, "Entities and seats"), so entities created while a
crawl runs sort ahead of its cursor: the next crawl sees them. Its cursor shares the
customers' defect: ``next_cursor`` is null after a full page whose last entity has no id
(server: ``server/src/internal/entities/handlers/handleListEntitiesV2.ts``, ``nextCursor =
hasMore && lastEntity?.id ... : null``). ``iter_pages`` works around it by asking for the
same page again, shorter, so that it ends on an entity with an id (the rules are
``entity_listing``'s; ``page_response`` hands an answer over undecoded, for the sync).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import requests

# client.py imports this module only when a client is built, so this import is not circular.
from .client import AutumnClient, _preview, decode_answer
from .conf import autumn_settings
from .entity_listing import EntityCrawl, last_with_id
from .exceptions import AutumnResponseError


@dataclass
class EntityPage:
    """One page of an ``entities.list`` crawl."""

    entities: list[Any]  # as decoded: may hold garbage, which the caller validates
    cursor: str  # the start_cursor that produced this page
    next_cursor: str | None  # None: the crawl ended (see ``complete``)
    limit: int  # the limit this page was asked with (lowered to the org maximum, or to end on an id)
    requested_at: datetime  # when the request for this page was sent (aware UTC)
    complete: bool = True  # False: the crawl stopped early, on a page it could not get past
    warnings: list[str] = field(default_factory=list)


class EntityRead(NamedTuple):
    """An entity as ``entities.get`` answered it, and when the request was sent (UTC)."""

    entity: dict[str, Any]
    read_at: datetime


def _list_of(response: requests.Response, endpoint: str, *, cursor: bool) -> dict[str, Any]:
    """The decoded ``{list, next_cursor}`` (``{list}`` when not ``cursor``), or an
    ``AutumnResponseError`` naming the endpoint."""
    page = decode_answer(response, endpoint)
    shape_ok = isinstance(page, dict) and isinstance(page.get("list"), list)
    if cursor:
        shape_ok = shape_ok and isinstance(page.get("next_cursor"), (str, type(None)))
    if not shape_ok:
        expected = "{list: [...], next_cursor: ...}" if cursor else "{list: [...]}"
        raise AutumnResponseError(f"Autumn's {endpoint} answer is not {expected}: {_preview(page)}")
    return page


def entity_list_answer(response: requests.Response) -> dict[str, Any]:
    """An ``entities.list`` answer decoded: ``{list, next_cursor}``, or an
    ``AutumnResponseError``. Every entities page anything decodes goes through here."""
    return _list_of(response, "entities.list", cursor=True)


class EntitiesAPI:
    """``client.entities``: ``entities.list`` and ``entities.get``."""

    def __init__(self, client: AutumnClient) -> None:
        self._client = client

    def _list(self, *, start_cursor: str, limit: int | None, customer_id: str | None,
              **filters: Any) -> requests.Response:
        body: dict[str, Any] = {"start_cursor": start_cursor, **filters}
        if limit is not None:
            body["limit"] = limit
        if customer_id is not None:
            body["customer_id"] = customer_id
        return self._client.post_for_response("entities.list", body)

    def list(self, *, start_cursor: str = "", limit: int | None = None, customer_id: str | None = None,
             **filters: Any) -> dict[str, Any]:
        """One page of ``entities.list``, newest first: ``{"list": [...], "next_cursor":
        str | None}``. ``filters``: ``search``, ``plans``, ``subscription_status``,
        ``processors``, as Autumn names them."""
        response = self._list(start_cursor=start_cursor, limit=limit, customer_id=customer_id, **filters)
        return entity_list_answer(response)

    def iter_pages(self, *, limit: int | None = None, cursor: str = "",
                   customer_id: str | None = None) -> Iterator[EntityPage]:
        """Crawl every entity (of ``customer_id``, if given), newest first, from ``cursor``,
        by the rules of ``entity_listing.EntityCrawl``.

        A limit above the org maximum is lowered to the maximum Autumn names. A full page
        whose ``next_cursor`` is null and whose last entity has no id (the server's defect)
        is asked again with the limit that ends it on its last entity with an id; that
        shorter page's cursor carries the crawl on. A full page of entities none of which
        has an id cannot be got past: it comes with ``complete=False`` and a warning, and
        ends the crawl (a caller must not settle deletions after such a crawl).
        """
        crawl = EntityCrawl(limit or autumn_settings.SYNC_PAGE_SIZE, cursor, customer_id)
        while not crawl.done:
            response = self.page_response(crawl)
            answer = entity_list_answer(response)
            entities = answer["list"]
            step = crawl.advance(len(entities), answer["next_cursor"], last_with_id(entities))
            if step is None:
                continue  # the same cursor, asked again shorter
            yield EntityPage(entities, step.cursor, step.next_cursor, step.limit, response.requested_at,
                             complete=step.complete, warnings=step.warnings)

    def page_response(self, crawl: EntityCrawl) -> requests.Response:
        """The answer to ``crawl``'s next request, undecoded: the caller decodes it (or
        knows its bytes) and tells the crawl where it leads (``AutumnClient.page_for_response``)."""
        return self._client.page_for_response("entities.list", crawl)

    def get(self, entity_id: str, *, customer_id: str | None = None) -> dict[str, Any]:
        return self.get_read(entity_id, customer_id=customer_id).entity

    def get_read(self, entity_id: str, *, customer_id: str | None = None) -> EntityRead:
        """``entities.get`` (the entity with what it inherits from its customer), with when
        its request was sent. Unknown entity: ``NotFoundError`` (code ``entity_not_found``)."""
        body: dict[str, Any] = {"entity_id": entity_id}
        if customer_id is not None:
            body["customer_id"] = customer_id
        response = self._client.post_for_response("entities.get", body)
        entity = decode_answer(response, "entities.get")
        if not isinstance(entity, dict) or "id" not in entity:
            raise AutumnResponseError(f"Autumn's entities.get answer is not an entity: {_preview(entity)}")
        return EntityRead(entity, response.requested_at)


class _CatalogueAPI:
    endpoint = ""

    def __init__(self, client: AutumnClient) -> None:
        self._client = client

    def list(self) -> list[dict[str, Any]]:
        """Every item Autumn lists (one request: the catalogue is small and not paged)."""
        response = self._client.post_for_response(self.endpoint, {})
        items = _list_of(response, self.endpoint, cursor=False)["list"]
        if not all(isinstance(item, dict) and isinstance(item.get("id"), str) for item in items):
            raise AutumnResponseError(f"Autumn's {self.endpoint} answer lists an item without an id: "
                                      f"{_preview(items)}")
        return items


class FeaturesAPI(_CatalogueAPI):
    """``client.features``: ``features.list``, the org's features (credit systems carry
    their ``credit_schema``)."""

    endpoint = "features.list"


class PlansAPI(_CatalogueAPI):
    """``client.plans``: ``plans.list``, the org's plans with their items."""

    endpoint = "plans.list"
