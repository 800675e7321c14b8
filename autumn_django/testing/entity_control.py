"""The control channel's entity routes (documented in ``control.py``): the in-process
``add_entity`` / ``modify_entity`` / ``delete_entity`` / ``get_entity`` /
``list_entities`` for a harness in another process."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .endpoints import ApiError, Reply
from .entities import EntityRecord, EntityStore
from .entity_access import FIXED_ENTITY_FIELDS
from .store import dumps

if TYPE_CHECKING:
    from .server import AutumnStandIn


def _bad(problem: str) -> ApiError:
    return ApiError(400, "invalid_inputs", problem)


def _store(standin: AutumnStandIn, body: dict) -> EntityStore:
    env = body.get("env", "sandbox")
    if not isinstance(env, str) or env not in standin._entities:
        choices = " | ".join(repr(e) for e in standin._entities)
        raise _bad(f"env: Expected {choices}, received {env!r}"[:120])
    return standin._entity_store(env)


def _address(body: dict) -> tuple[str, str | None]:
    """``customer_id`` (required) and ``entity_id`` (null: the customer's id-less entity)."""
    customer_id = body.get("customer_id")
    if not isinstance(customer_id, str) or not customer_id:
        raise _bad("customer_id: Expected a non-empty string")
    if "entity_id" not in body:
        raise _bad("entity_id: Required (null for the customer's entity without an id)")
    entity_id = body["entity_id"]
    if entity_id is not None and not (isinstance(entity_id, str) and entity_id):
        raise _bad("entity_id: Expected a non-empty string or null")
    return customer_id, entity_id


def _find(store: EntityStore, customer_id: str, entity_id: str | None) -> EntityRecord:
    try:
        rec = store.find(customer_id, entity_id)
    except ValueError as exc:  # several id-less entities: cannot tell which
        raise _bad(f"entity_id: {exc}") from None
    if rec is None:
        raise ApiError(404, "entity_not_found", f"Entity {entity_id} of customer {customer_id} not found")
    return rec


def _answer(rec: EntityRecord) -> Reply:
    return Reply(200, dumps(rec.answer()))


def get(standin: AutumnStandIn, params: dict) -> Reply:
    """One entity (``customer_id`` and ``entity_id``; an empty ``entity_id`` means null),
    or, without ``entity_id``, ``{"list": [...]}``: every entity of the env (or of
    ``customer_id``), newest first."""
    store = _store(standin, params)
    with store.lock:
        if "entity_id" not in params:
            customer_id = params.get("customer_id")
            recs = store.of_customer(customer_id) if customer_id else store.records()
            return Reply(200, dumps({"list": [r.answer() for r in recs]}))
        params = {**params, "entity_id": params["entity_id"] or None}
        return _answer(_find(store, *_address(params)))


def add(standin: AutumnStandIn, body: dict) -> Reply:
    entity = body.get("entity")
    if not isinstance(entity, dict):
        raise _bad("entity: Expected object")
    if "id" not in entity:
        raise _bad("entity.id: Required (null for an entity without an id)")
    entity_id = entity["id"]
    if entity_id is not None and not (isinstance(entity_id, str) and entity_id):
        raise _bad("entity.id: Expected a non-empty string or null")
    customer_id = entity.get("customer_id")
    if not isinstance(customer_id, str) or not customer_id:
        raise _bad("entity.customer_id: Expected a non-empty string")
    store = _store(standin, body)
    with store.lock:
        if store.customers.find(customer_id) is None:
            raise ApiError(404, "customer_not_found", f"Customer {customer_id} not found")
        if entity_id is not None and store.find(customer_id, entity_id) is not None:
            raise ApiError(409, "entity_already_exists", f"Entity {entity_id} already exists")
        return _answer(store.add(copy.deepcopy(entity)))


def modify(standin: AutumnStandIn, body: dict) -> Reply:
    address = _address(body)
    fields = body.get("fields")
    if not isinstance(fields, dict):
        raise _bad("fields: Expected object")
    fixed = sorted(FIXED_ENTITY_FIELDS & fields.keys())
    if fixed:
        raise _bad(f"fields: {fixed[0]!r} cannot be changed on an entity")
    new_id: Any = fields.get("id")
    if new_id is not None and not (isinstance(new_id, str) and new_id):
        raise _bad("fields.id: Expected a non-empty string or null")
    store = _store(standin, body)
    with store.lock:
        rec = _find(store, *address)
        if new_id is not None and new_id != rec.data.get("id") and store.find(address[0], new_id) is not None:
            raise ApiError(409, "entity_already_exists", f"Entity {new_id} already exists")
        store.replace(rec, {**rec.data, **copy.deepcopy(fields)})
        return _answer(rec)


def delete(standin: AutumnStandIn, body: dict) -> Reply:
    address = _address(body)
    store = _store(standin, body)
    with store.lock:
        store.remove(_find(store, *address))
    return Reply(200, b'{"success":true}')


ENTITY_ROUTES = {
    ("GET", "entity"): get,
    ("POST", "entity/add"): add,
    ("POST", "entity/modify"): modify,
    ("POST", "entity/delete"): delete,
}
