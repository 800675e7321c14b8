"""Switches that make the stand-in misbehave the ways the real API and its proxies do.

Every switch is thread-safe: a test flips it from its own thread while the server's
handler threads consume it. "Next n" faults are queued in the order they were armed and
each matching request takes one from the first fault that matches it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

ENDPOINTS = frozenset(
    {
        "customers.list",
        "customers.get",
        "customers.get_or_create",
        "customers.update",
        "customers.delete",
        "entities.list",
        "entities.get",
        "features.list",
        "plans.list",
    }
)


@dataclass
class Fault:
    """One armed fault; ``kind`` is "status", "rate_limit", "drop", "cut" or "malformed"."""

    kind: str
    remaining: int
    endpoint: str | None
    status: int = 0
    retry_after: int = 1
    rate_kind: str = "text"
    body: bytes = b""
    content_type: str = ""
    after: int = 0  # matching requests to let through before the fault starts


def _check_endpoint(endpoint: str | None) -> None:
    if endpoint is not None and endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {sorted(ENDPOINTS)}")


class Faults:
    """The fault switches of one :class:`AutumnStandIn`, reached as ``server.faults``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[Fault] = []
        self._delays: dict[str | None, float] = {}
        self._corrupt: dict[str, dict[Any, dict]] = {}
        self._corrupt_entities: dict[str, dict[tuple[str, str | None], dict]] = {}
        self._stale: dict[str, dict[str, dict]] = {}

    def _arm(self, fault: Fault) -> None:
        _check_endpoint(fault.endpoint)
        if fault.remaining < 0 or fault.after < 0:
            raise ValueError("n and after must be >= 0")
        if fault.remaining:
            with self._lock:
                self._queue.append(fault)

    def fail_next(self, n: int, status: int = 503, endpoint: str | None = None, retry_after: int = 1,
                  after: int = 0) -> None:
        """Answer the next ``n`` matching requests with ``status`` (after letting ``after``
        matching requests through: "the third page fails" whatever runs ahead).

        503 carries ``Retry-After`` and a JSON error, 500 is JSON ``internal_error``, 502 and
        504 are plain-text bodies as a proxy in front of the API would send.
        """
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        self._arm(Fault("status", n, endpoint, status=status, retry_after=retry_after, after=after))

    def rate_limit_next(
        self, n: int, retry_after: int = 1, kind: str = "text", endpoint: str | None = None,
        after: int = 0,
    ) -> None:
        """Answer the next ``n`` matching requests with a 429 (after ``after``).

        ``kind="text"`` is the main limiter (text/plain body, ``retry-after`` and
        ``ratelimit-*`` headers); ``kind="json"`` is the get/get_or_create limiter (JSON
        ``rate_limit_exceeded``, no ``retry-after``).
        """
        if kind not in ("text", "json"):
            raise ValueError('kind must be "text" or "json"')
        self._arm(Fault("rate_limit", n, endpoint, retry_after=retry_after, rate_kind=kind, after=after))

    def drop_next(self, n: int, endpoint: str | None = None, after: int = 0) -> None:
        """Close the connection without any response for the next ``n`` matching requests
        (after ``after``)."""
        self._arm(Fault("drop", n, endpoint, after=after))

    def cut_next(self, n: int, endpoint: str | None = None, after: int = 0) -> None:
        """Answer the next ``n`` matching requests with a 200 whose ``Content-Length``
        promises a body the connection is closed half-way through, as a connection lost
        mid-answer (after ``after``)."""
        self._arm(Fault("cut", n, endpoint, after=after))

    def malformed_next(
        self,
        n: int,
        endpoint: str | None = None,
        body: bytes = b"<html>oops</html>",
        content_type: str = "text/html",
        status: int = 200,
        after: int = 0,
    ) -> None:
        """Answer the next ``n`` matching requests with this raw body (after ``after``)."""
        if isinstance(body, str):
            body = body.encode("utf-8")
        self._arm(Fault("malformed", n, endpoint, status=status, body=body, content_type=content_type,
                        after=after))

    def delay(self, seconds: float, endpoint: str | None = None) -> None:
        """Sleep ``seconds`` before answering matching requests until cleared with 0."""
        _check_endpoint(endpoint)
        with self._lock:
            if seconds and seconds > 0:
                self._delays[endpoint] = float(seconds)
            else:
                self._delays.pop(endpoint, None)

    def corrupt_customer(self, customer_id: str | None, patch: dict, env: str = "sandbox") -> None:
        """Merge ``patch`` into that customer's top level in every response carrying it.

        The store keeps the true object; only what goes over the wire is corrupted, e.g.
        ``{"created_at": "not a number"}`` to test a record the client cannot parse.
        """
        if not isinstance(patch, dict):
            raise TypeError("patch must be a dict")
        with self._lock:
            self._corrupt.setdefault(env, {})[customer_id] = dict(patch)

    def corrupt_entity(self, customer_id: str, entity_id: str | None, patch: dict,
                       env: str = "sandbox") -> None:
        """Merge ``patch`` into that entity's top level wherever it is answered
        (entities.list and entities.get); the store keeps the true entity. An empty
        ``patch`` ends it."""
        if not isinstance(patch, dict):
            raise TypeError("patch must be a dict")
        with self._lock:
            if patch:
                self._corrupt_entities.setdefault(env, {})[(customer_id, entity_id)] = dict(patch)
            else:
                self._corrupt_entities.get(env, {}).pop((customer_id, entity_id), None)

    def stale_get_cache(self, plan_id: str, fields: dict, env: str = "sandbox") -> None:
        """customers.get answers every subscription to ``plan_id`` with ``fields`` merged
        in, while customers.list shows the store's values: Autumn's per-customer cache after
        a catalogue change that did not reach it (seen for days on a plan's ``auto_enable``).
        An empty ``fields`` ends it for that plan."""
        if not isinstance(fields, dict):
            raise TypeError("fields must be a dict")
        with self._lock:
            if fields:
                self._stale.setdefault(env, {})[plan_id] = dict(fields)
            else:
                self._stale.get(env, {}).pop(plan_id, None)

    def clear(self) -> None:
        """Disarm everything: queued faults, delays, corrupted customers and entities, and
        stale caches."""
        with self._lock:
            self._queue.clear()
            self._delays.clear()
            self._corrupt.clear()
            self._corrupt_entities.clear()
            self._stale.clear()

    # -- used by the server ---------------------------------------------------------
    def take(self, endpoint: str) -> Fault | None:
        """Consume one use of the first armed fault matching ``endpoint``."""
        with self._lock:
            for fault in self._queue:
                if fault.remaining > 0 and fault.endpoint in (None, endpoint):
                    if fault.after:
                        fault.after -= 1
                        continue
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._queue.remove(fault)
                    return fault
            return None

    def delay_for(self, endpoint: str) -> float:
        with self._lock:
            return self._delays.get(endpoint, self._delays.get(None, 0.0))

    def patches(self, env: str) -> dict:
        """``{customer_id: patch}`` for ``env`` (a snapshot, safe to read unlocked)."""
        with self._lock:
            return dict(self._corrupt.get(env) or {})

    def entity_patches(self, env: str) -> dict:
        """``{(customer_id, entity_id): patch}`` for ``env`` (a snapshot)."""
        with self._lock:
            return dict(self._corrupt_entities.get(env) or {})

    def through_get_cache(self, env: str, customer: dict) -> dict:
        """``customer`` as customers.get answers it under ``stale_get_cache``."""
        with self._lock:
            stale = dict(self._stale.get(env) or {})
        subscriptions = customer.get("subscriptions")
        if not stale or not isinstance(subscriptions, list):
            return customer
        return {**customer, "subscriptions": [
            {**item, **stale[item["plan_id"]]} if isinstance(item, dict) and item.get("plan_id") in stale
            else item for item in subscriptions]}
