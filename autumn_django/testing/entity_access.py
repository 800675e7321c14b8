"""``AutumnStandIn``'s in-process helpers for entities and the catalogue (a mixin, so
``server.py`` stays about serving). Answers are deep copies, as the API serves them: the
entity composed with its customer (``entities.py``).

An entity without an id is addressed as ``entity_id=None``; that works while its customer
has only one such entity (ValueError otherwise).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .entities import EntityRecord, EntityStore
from .entity_endpoints import Catalogue

if TYPE_CHECKING:
    from .store import Store

# Fields a modify cannot change: the env is the store's, the customer is the record it
# belongs to (Autumn has no call that moves an entity to another customer).
FIXED_ENTITY_FIELDS = frozenset({"env", "customer_id"})


class EntityAccess:
    _entities: dict[str, EntityStore]
    _catalogues: dict[str, Catalogue]

    def _store(self, env: str) -> Store:  # provided by AutumnStandIn
        raise NotImplementedError

    def _entity_store(self, env: str) -> EntityStore:
        self._store(env)  # checks the env and lands queued resets
        return self._entities[env]

    def _entity(self, customer_id: str, entity_id: str | None, env: str) -> EntityRecord:
        rec = self._entity_store(env).find(customer_id, entity_id)
        if rec is None:
            raise KeyError((customer_id, entity_id))
        return rec

    def list_entities(self, env: str = "sandbox") -> list[dict]:
        """Every entity of ``env`` as entities.list answers it, newest first."""
        store = self._entity_store(env)
        with store.lock:
            return [copy.deepcopy(r.answer()) for r in store.records()]

    def get_entity(self, customer_id: str, entity_id: str | None, env: str = "sandbox") -> dict | None:
        """The entity as entities.get answers it, or None."""
        store = self._entity_store(env)
        with store.lock:
            rec = store.find(customer_id, entity_id)
            return None if rec is None else copy.deepcopy(rec.answer())

    def add_entity(self, entity: dict, env: str = "sandbox") -> dict:
        """Store an entity of an existing customer (``entity["customer_id"]``;
        ``created_at`` kept if given, else now); returns it as served."""
        store = self._entity_store(env)
        with store.lock:
            return copy.deepcopy(store.add(copy.deepcopy(entity)).answer())

    def modify_entity(self, customer_id: str, entity_id: str | None, /, env: str = "sandbox",
                      **fields: Any) -> dict:
        """Replace the entity's own top-level fields (``name=...``, ``balances=...``,
        ``id=...`` renames it); returns it as served."""
        fixed = sorted(FIXED_ENTITY_FIELDS & fields.keys())
        if fixed:
            raise ValueError(f"{fixed[0]!r} cannot be changed on an entity")
        store = self._entity_store(env)
        with store.lock:
            rec = self._entity(customer_id, entity_id, env)
            store.replace(rec, {**rec.data, **copy.deepcopy(fields)})
            return copy.deepcopy(rec.answer())

    def delete_entity(self, customer_id: str, entity_id: str | None, env: str = "sandbox") -> None:
        store = self._entity_store(env)
        with store.lock:
            store.remove(self._entity(customer_id, entity_id, env))

    def set_features(self, features: list[dict], env: str = "sandbox") -> None:
        """What features.list answers from now on (a deep copy of ``features``)."""
        self._store(env)
        self._catalogues[env].set("features", features)

    def set_plans(self, plans: list[dict], env: str = "sandbox") -> None:
        """What plans.list answers from now on (a deep copy of ``plans``)."""
        self._store(env)
        self._catalogues[env].set("plans", plans)
