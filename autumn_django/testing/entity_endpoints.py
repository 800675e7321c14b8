"""The entity and catalogue endpoints at 2.3: ``entities.list``, ``entities.get``,
``features.list`` and ``plans.list``.

Validation follows the server's schemas (``shared/api/entities/crud/
listEntitiesParamsV2_3.ts``, ``getEntityParams.ts``) the way ``endpoints.py`` does for
customers: the first problem is a ``400 invalid_inputs`` ``"<field>: <problem>"``.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from .endpoints import ApiError, Ctx, Reply, _bad, _filters, _int, _str
from .entities import EntityStore, build_entity_match, compose, decode_cursor
from .store import dumps

ANSWER_FILTERS = ("plans", "subscription_status", "processors")


class Catalogue:
    """One env's features and plans, replaced whole (``set_features`` / ``set_plans``)."""

    def __init__(self, features: list[dict], plans: list[dict]) -> None:
        self.lock = threading.Lock()
        self.features = self._checked(features, "features")
        self.plans = self._checked(plans, "plans")

    @staticmethod
    def _checked(items: Any, what: str) -> list[dict]:
        if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("id"), str)
                                                  for i in items):  # fmt: skip
            raise ValueError(f"{what} must be a list of objects, each with a string 'id'")
        return copy.deepcopy(items)

    def set(self, what: str, items: list[dict]) -> None:
        checked = self._checked(items, what)
        with self.lock:
            setattr(self, what, checked)

    def answer(self, what: str) -> bytes:
        with self.lock:
            return dumps({"list": getattr(self, what)})


def _entities(ctx: Ctx) -> EntityStore:
    if ctx.entities is None:  # a Ctx built without entities (an old caller): none there
        ctx.entities = EntityStore(ctx.store)
    return ctx.entities


def list_entities(ctx: Ctx, body: dict) -> Reply:
    limit = _int(body, "limit", 1, 5000, 50)
    if limit > ctx.org_max_limit:
        message = f"limit {limit} exceeds max of {ctx.org_max_limit} for this org"
        raise ApiError(400, "invalid_request", message)
    customer_id = _str(body, "customer_id", nullable=False)
    customer_id = customer_id.strip() if isinstance(customer_id, str) else None
    if customer_id == "":
        raise _bad("customer_id", "String must contain at least 1 character(s)")
    search = _str(body, "search", nullable=False)
    by_search = build_entity_match(search if isinstance(search, str) else None)
    # Plans, subscription status and processors: the customers' filters (and their
    # validation), applied to the answer the entity is listed with, which holds the plans
    # it inherits (the schema: "including plans inherited from the parent customer").
    on_answer, _, _ = _filters({k: body[k] for k in ANSWER_FILTERS if k in body})
    match = None
    if on_answer is not None or by_search is not None:

        def match(entity: dict, customer: dict) -> bool:
            if by_search is not None and not by_search(entity, customer):
                return False
            if on_answer is None:
                return True
            return on_answer({**compose(entity, customer), "processors": customer.get("processors")})

    cursor = _str(body, "start_cursor")
    after = None
    if isinstance(cursor, str) and cursor:
        after = decode_cursor(cursor)
        if after is None:
            raise ApiError(400, "invalid_cursor", "Invalid cursor: could not decode start_cursor")
    rows, next_cursor = _entities(ctx).cursor_page(
        after=after, limit=limit, customer_id=customer_id, match=match, patches=ctx.entity_patches)
    return Reply(200, b'{"list":[' + b",".join(rows) + b'],"next_cursor":' + dumps(next_cursor) + b"}")


def get_entity(ctx: Ctx, body: dict) -> Reply:
    entity_id = _str(body, "entity_id", required=True, nullable=False)
    customer_id = _str(body, "customer_id", nullable=False)
    customer_id = customer_id if isinstance(customer_id, str) and customer_id else None
    rec = _entities(ctx).find(customer_id, entity_id)
    if rec is None:
        raise ApiError(404, "entity_not_found", f"Entity {entity_id} not found")
    patch = (ctx.entity_patches or {}).get(rec.address())
    return Reply(200, rec.answer_bytes(patch))


def _catalogue_list(what: str) -> Any:
    def handler(ctx: Ctx, body: dict) -> Reply:
        if ctx.catalogue is None:
            return Reply(200, b'{"list":[]}')
        return Reply(200, ctx.catalogue.answer(what))

    handler.__name__ = f"list_{what}"
    return handler


ENTITY_HANDLERS = {
    "entities.list": list_entities,
    "entities.get": get_entity,
    "features.list": _catalogue_list("features"),
    "plans.list": _catalogue_list("plans"),
}
