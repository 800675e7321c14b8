"""The org's catalogue: ``features.list`` into ``Feature`` rows, ``plans.list`` into ``Plan``
rows. Both answers are small (a page or two), so each sync reads them whole and writes
them with the ORM; a feature or plan no longer listed is marked deleted, not removed,
so names stay readable beside old subscriptions.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone

from ..client import AutumnClient
from ..exceptions import AutumnResponseError
from ..models import Feature, Plan

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CatalogueResult:
    features: int
    plans: int
    deleted: int
    problems: list[str]


def sync_catalogue(client: AutumnClient, *, using: str = DEFAULT_DB_ALIAS) -> CatalogueResult:
    """Read the env's features and plans and mirror them in one transaction. Raises the
    ``AutumnError`` of a call that failed; an entry that cannot be stored is skipped and
    named in ``problems``."""
    return store_catalogue(client.env, client.features.list(), client.plans.list(), using=using)


class CatalogueAhead:
    """The catalogue read on a thread of its own (with a client of its own), so its two
    requests wait on the network beside a customers pass's first ones; ``store`` mirrors
    the answers. At 250 ms a request they took half a second before the first customers
    request; the first customers page takes longer than both to come."""

    def __init__(self, client: AutumnClient) -> None:
        self.env = client.env
        self._answers: Future[tuple[list[Any], list[Any]]] = Future()
        # A daemon thread: a sync stopped meanwhile (Ctrl-C, SIGTERM) exits without waiting
        # for these requests, as an executor's thread would make it.
        threading.Thread(target=self._read, args=(client.arguments(),), name="autumn-catalogue",
                         daemon=True).start()

    def store(self, *, using: str = DEFAULT_DB_ALIAS) -> CatalogueResult:
        """``sync_catalogue``'s result, once the answers are in: raises as it does."""
        features, plans = self._answers.result()
        return store_catalogue(self.env, features, plans, using=using)

    def _read(self, arguments: dict[str, Any]) -> None:
        try:
            with AutumnClient(**arguments) as client:
                answers = client.features.list(), client.plans.list()
        except BaseException as exc:  # raised again by ``store``, on the sync's thread
            self._answers.set_exception(exc)
        else:
            self._answers.set_result(answers)


def store_catalogue(env: str, features: list[Any], plans: list[Any], *,
                    using: str = DEFAULT_DB_ALIAS) -> CatalogueResult:
    """Mirror the answers of ``features.list`` and ``plans.list`` in one transaction (see
    ``sync_catalogue``)."""
    now = timezone.now()
    problems: list[str] = []
    feature_rows = _rows(features, "feature", _feature_values, problems)
    plan_rows = _rows(plans, "plan", _plan_values, problems)
    with transaction.atomic(using=using):
        deleted = _mirror(Feature, "feature_id", env, feature_rows, now, using)
        deleted += _mirror(Plan, "plan_id", env, plan_rows, now, using)
    return CatalogueResult(len(feature_rows), len(plan_rows), deleted, problems)


def _rows(entries: list[Any], kind: str, values, problems: list[str]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(entries):
        try:
            entry_id, fields = values(entry)
        except AutumnResponseError as exc:
            problems.append(f"{kind} #{index}: {exc}")
            continue
        rows[entry_id] = {**fields, "raw": entry}
        if kind == "feature":
            rows[entry_id]["position"] = index
    return rows


def _mirror(model: type, id_field: str, env: str, rows: dict[str, dict[str, Any]], now: datetime,
            using: str) -> int:
    manager = model._default_manager.using(using)
    existing = {getattr(obj, id_field): obj for obj in manager.filter(env=env)}
    new, changed = [], []
    for entry_id, fields in rows.items():
        obj = existing.get(entry_id)
        if obj is None:
            new.append(model(env=env, **{id_field: entry_id}, **fields, synced_at=now))
            continue
        if obj.deleted_at is not None or any(getattr(obj, name) != value for name, value in fields.items()):
            for name, value in fields.items():
                setattr(obj, name, value)
            obj.synced_at, obj.deleted_at = now, None
            changed.append(obj)
    manager.bulk_create(new)
    if changed:
        manager.bulk_update(changed, [*next(iter(rows.values())).keys(), "synced_at", "deleted_at"])
    gone = [obj.pk for entry_id, obj in existing.items() if entry_id not in rows and obj.deleted_at is None]
    return manager.filter(pk__in=gone).update(deleted_at=now) if gone else 0


def _text(entry: dict, name: str, *, required: bool = False, limit: int | None = None) -> str | None:
    value = entry.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value) or (limit and len(value) > limit):
        most = f" of at most {limit} characters" if limit else ""
        raise AutumnResponseError(f"{name}: expected text{most}")
    return value


def _flag(entry: dict, name: str) -> bool:
    value = entry.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise AutumnResponseError(f"{name}: expected true or false")
    return value


def _list(entry: dict, name: str) -> list:
    value = entry.get(name) or []
    if not isinstance(value, list):
        raise AutumnResponseError(f"{name}: expected a list")
    return value


def _feature_values(entry: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(entry, dict):
        raise AutumnResponseError(f"expected an object, got {type(entry).__name__}")
    schema = _list(entry, "credit_schema")
    for item in schema:
        cost = item.get("credit_cost") if isinstance(item, dict) else None
        if (not isinstance(item, dict) or not isinstance(item.get("metered_feature_id"), str)
                or not isinstance(cost, (int, float)) or isinstance(cost, bool)):
            raise AutumnResponseError("credit_schema: expected [{metered_feature_id, credit_cost}]")
    return _text(entry, "id", required=True, limit=255), {
        "name": _text(entry, "name"),
        "type": _text(entry, "type", required=True, limit=32),
        "consumable": _flag(entry, "consumable"),
        "archived": _flag(entry, "archived"),
        "credit_schema": schema,
    }


def _plan_values(entry: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(entry, dict):
        raise AutumnResponseError(f"expected an object, got {type(entry).__name__}")
    version = entry.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise AutumnResponseError("version: expected a whole number")
    return _text(entry, "id", required=True, limit=255), {
        "name": _text(entry, "name"),
        "group": _text(entry, "group", limit=255),
        "version": version,
        "add_on": _flag(entry, "add_on"),
        "auto_enable": _flag(entry, "auto_enable"),
        "items": _list(entry, "items"),
    }
