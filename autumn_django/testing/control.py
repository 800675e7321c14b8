"""The stand-in's opt-in control channel: change customers behind the public API's back.

Real billing changes (usage recorded, a plan attached, a period rolled over) reach a
customer through Autumn's dashboard and Stripe, never through ``customers.update``. A test
or benchmark driving a stand-in in *another process* cannot call ``modify_customer()``, so
``AutumnStandIn(control=True)`` (``serve --control``) also answers these routes, with the
same semantics as the in-process helpers:

    GET  /_standin/customer?customer_id=ID&env=sandbox     -> the full customer
    POST /_standin/modify       {"customer_id", "env", "fields": {...}}  -> the result
    POST /_standin/modify_many  {"env", "changes": [{"customer_id", "fields"}, ...]}
                                -> {"modified": n}; all or nothing
    POST /_standin/add          {"customer": {...}, "env"}  -> the customer as stored
    POST /_standin/delete       {"customer_id", "env"}      -> {"success": true}

Entities (``entity_control.py``), answered as entities.get serves them (the entity with
its customer's plans, balances and flags pooled in). An entity is addressed by its
``customer_id`` and ``entity_id`` (null, or empty on GET: the customer's one entity
without an id):

    GET  /_standin/entity?customer_id=C&entity_id=E&env=sandbox  -> that entity
    GET  /_standin/entity?env=sandbox[&customer_id=C]  -> {"list": [...]}, newest first
    POST /_standin/entity/add     {"entity": {... "customer_id": C ...}, "env"}
    POST /_standin/entity/modify  {"customer_id", "entity_id", "env", "fields": {...}}
    POST /_standin/entity/delete  {"customer_id", "entity_id", "env"} -> {"success": true}

``fields`` replace the entity's own top-level keys (``customer_id`` and ``env`` cannot
change; ``id`` renames it). Errors: 404 ``entity_not_found`` (or ``customer_not_found``
when adding to an unknown customer), 409 ``entity_already_exists``.

``fields`` replace top-level keys whole (a shallow replace, like ``modify_customer``), so
a caller changing one balance sends the whole ``balances`` object: read, modify, write.
``env`` defaults to ``"sandbox"``. An id-less customer is addressed as ``"customer_id":
null`` plus its ``"email"`` (``?email=`` on GET), the way the API keys such customers.

There is no key check: this is a test harness, reachable only where the stand-in itself
listens (127.0.0.1 by default). Control calls are not recorded in ``requests`` and no
fault applies to them. Errors are JSON like the API's: 400 ``invalid_inputs`` for bad
input, 404 ``customer_not_found``, 409 ``customer_already_exists`` for a taken id.
"""

from __future__ import annotations

import copy
import json
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from .endpoints import ApiError, Reply, error_reply
from .entity_control import ENTITY_ROUTES
from .store import Record, Store, dumps

if TYPE_CHECKING:  # server.py imports this module
    from .server import AutumnStandIn

PREFIX = "/_standin/"
# The store stamps its own env on every customer and ``replace`` does not re-stamp it, so
# a field "env" would make a customer claim the other env while living in this one.
FORBIDDEN_FIELDS = frozenset({"env"})

Target = tuple[str | None, str | None]  # (customer_id, email of an id-less customer)
Route = Callable[["AutumnStandIn", dict], Reply]


def _bad(problem: str) -> ApiError:
    return ApiError(400, "invalid_inputs", problem)


def _not_found(target: Target) -> ApiError:
    cid, email = target
    who = cid if cid is not None else f"with null id and email {email}"
    return ApiError(404, "customer_not_found", f"Customer {who} not found")


def _taken(customer_id: Any) -> ApiError:
    return ApiError(409, "customer_already_exists", f"Customer {customer_id} already exists")


# -- input readers -------------------------------------------------------------------
def _store(standin: AutumnStandIn, body: dict) -> Store:
    """The store of the body's ``env`` (default sandbox)."""
    env = body.get("env", "sandbox")
    if not isinstance(env, str) or env not in standin._stores:
        choices = " | ".join(repr(e) for e in standin._stores)
        raise _bad(f"env: Expected {choices}, received {json.dumps(env)[:40]}")
    return standin._stores[env]


def _target(body: dict, where: str = "") -> Target:
    """``customer_id`` (a string), or null plus the ``email`` of an id-less customer."""
    if "customer_id" not in body:
        raise _bad(f"{where}customer_id: Required")
    cid = body["customer_id"]
    if isinstance(cid, str) and cid:
        return cid, None
    email = body.get("email")
    if cid is None and isinstance(email, str) and email.strip():
        return None, email
    if cid is None:
        raise _bad(f"{where}email: Required (a string) when customer_id is null")
    raise _bad(f"{where}customer_id: Expected a non-empty string or null")


def _fields(body: dict, where: str = "") -> dict:
    fields = body.get("fields")
    if not isinstance(fields, dict):
        raise _bad(f"{where}fields: Expected object")
    bad = sorted(FORBIDDEN_FIELDS & fields.keys())
    if bad:
        raise _bad(f"{where}fields: {bad[0]!r} cannot be set; send the env at the top level")
    new_id = fields.get("id")
    if new_id is not None and not (isinstance(new_id, str) and new_id):
        raise _bad(f"{where}fields.id: Expected a non-empty string or null")
    return fields


def _find(store: Store, target: Target) -> Record:
    cid, email = target
    rec = store.find(cid) if cid is not None else store.find_idless(email or "")
    if rec is None:
        raise _not_found(target)
    return rec


def _customer(rec: Record) -> Reply:
    return Reply(200, dumps(rec.data))


# -- routes --------------------------------------------------------------------------
def get(standin: AutumnStandIn, params: dict) -> Reply:
    if "customer_id" not in params and "email" in params:
        params["customer_id"] = None  # a query string cannot say null; email implies it
    target = _target(params)
    store = _store(standin, params)
    with store.lock:
        return _customer(_find(store, target))


def modify(standin: AutumnStandIn, body: dict) -> Reply:
    target, fields = _target(body), _fields(body)
    store = _store(standin, body)
    with store.lock:
        rec = _find(store, target)
        _replace(store, rec, fields)
        return _customer(rec)


def modify_many(standin: AutumnStandIn, body: dict) -> Reply:
    """Many modifies in one request (a benchmark changes 1,000 customers): all validated
    first, then applied under one lock; a failure undoes the ones already applied."""
    changes = body.get("changes")
    if not isinstance(changes, list):
        raise _bad("changes: Expected array")
    parsed = []
    for i, change in enumerate(changes):
        where = f"changes[{i}]."
        if not isinstance(change, dict):
            raise _bad(f"changes[{i}]: Expected object")
        parsed.append((_target(change, where), _fields(change, where)))
    store = _store(standin, body)
    with store.lock:
        done: list[tuple[Record, dict]] = []
        try:
            for target, fields in parsed:
                rec = _find(store, target)
                done.append((rec, rec.data))
                _replace(store, rec, fields)
        except Exception:
            for rec, before in reversed(done):  # newest first, so renames unwind cleanly
                store.replace(rec, before)
            raise
    return Reply(200, dumps({"modified": len(parsed)}))


def add(standin: AutumnStandIn, body: dict) -> Reply:
    customer = body.get("customer")
    if not isinstance(customer, dict):
        raise _bad("customer: Expected object")
    if "id" not in customer:
        raise _bad("customer.id: Required (null for a customer keyed by email)")
    cid = customer["id"]
    if cid is not None and not (isinstance(cid, str) and cid):
        raise _bad("customer.id: Expected a non-empty string or null")
    store = _store(standin, body)
    with store.lock:  # check-then-add: the store would raise ValueError on a taken id
        if cid is not None and store.find(cid) is not None:
            raise _taken(cid)
        return _customer(store.add(copy.deepcopy(customer)))


def delete(standin: AutumnStandIn, body: dict) -> Reply:
    target = _target(body)
    store = _store(standin, body)
    with store.lock:
        store.remove(_find(store, target))
    return Reply(200, b'{"success":true}')


def _replace(store: Store, rec: Record, fields: dict) -> None:
    """``modify_customer``'s shallow replace, with a taken id reported as 409."""
    new_id = fields.get("id")
    if new_id is not None and new_id != rec.data.get("id") and store.find(new_id) is not None:
        raise _taken(new_id)
    store.replace(rec, {**rec.data, **copy.deepcopy(fields)})


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "customer"): get,
    ("POST", "modify"): modify,
    ("POST", "modify_many"): modify_many,
    ("POST", "add"): add,
    ("POST", "delete"): delete,
    **ENTITY_ROUTES,
}


def route_for(method: str, path: str) -> Route | None:
    """The route for a request, or None (the caller answers its usual 404)."""
    name = urlsplit(path).path
    if not name.startswith(PREFIX):
        return None
    return ROUTES.get((method, name[len(PREFIX) :].rstrip("/")))


def respond(standin: AutumnStandIn, route: Route, method: str, path: str, raw: bytes) -> Reply:
    """Run ``route`` on the JSON body (GET: the query string's parameters). Errors are JSON
    like the API's, with the request's env when it names a valid one."""
    env = "sandbox"
    try:
        if method == "GET":
            query = parse_qs(urlsplit(path).query, keep_blank_values=True)
            body: Any = {k: v[-1] for k, v in query.items()}
        else:
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError:
                raise _bad("body: Invalid JSON") from None
            if not isinstance(body, dict):
                raise _bad("body: Expected object")
        named = body.get("env")
        if isinstance(named, str) and named in standin._stores:
            env = named
        return route(standin, body)
    except ApiError as e:
        return error_reply(e.status, e.code, e.message, env)
    except Exception:  # a stand-in bug: a 500 the harness sees, and why on stderr
        traceback.print_exc(file=sys.stderr)
        return error_reply(500, "internal_error", "Internal server error", env)
