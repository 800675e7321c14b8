"""The stand-in's webhook endpoint API: ``webhooks.create``, ``webhooks.list``, ``webhooks.update``.

Autumn's contract page names these calls but gives no shapes, and the open-source server
snapshot has none of them; these are the shapes ``autumn_django.webhooks.endpoints``
assumes (see its docstring), kept in memory per environment: each env's endpoints live
beside that env's customer store, as Autumn keeps one Svix app per env. No switches.

    webhooks.list    {}                                   -> {"list": [endpoint, ...]}
    webhooks.create  {"url", "events", "description"?}    -> endpoint + {"secret": "whsec_..."}
    webhooks.update  {"webhook_id", "url"?, "events"?, "description"?, "disabled"?} -> endpoint

An endpoint is ``{"id", "url", "events", "description", "disabled", "created_at"}``; its
signing secret is answered by ``webhooks.create`` only.
"""

from __future__ import annotations

import base64
import copy
import re
import secrets
import threading
import weakref
from typing import Any

from .endpoints import ApiError, Ctx, Reply, _bad, _str, _type_name
from .store import Store, dumps, now_ms

URL_RE = re.compile(r"^https?://[^\s/]+(/\S*)?$")
EVENT_RE = re.compile(r"^[a-z_]+(\.[a-z_*]+)+$")


class WebhookEndpoints:
    """The webhook endpoints of one environment."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.endpoints: dict[str, dict[str, Any]] = {}  # id -> endpoint, in creation order
        self.secrets: dict[str, str] = {}  # id -> signing secret

    def listed(self) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(e) for e in self.endpoints.values()]


_BY_STORE: weakref.WeakKeyDictionary[Store, WebhookEndpoints] = weakref.WeakKeyDictionary()
_BY_STORE_LOCK = threading.Lock()


def endpoints_of(store: Store) -> WebhookEndpoints:
    """The webhook endpoints of the env whose customers ``store`` holds."""
    with _BY_STORE_LOCK:
        found = _BY_STORE.get(store)
        if found is None:
            found = _BY_STORE[store] = WebhookEndpoints()
        return found


def server_endpoints(server: Any, env: str = "sandbox") -> list[dict[str, Any]]:
    """For tests: the webhook endpoints of ``server``'s ``env``, as webhooks.list answers."""
    return endpoints_of(server._stores[env]).listed()


def server_secret(server: Any, endpoint_id: str, env: str = "sandbox") -> str | None:
    """For tests: the signing secret Autumn (the stand-in) signs ``endpoint_id``'s deliveries with."""
    return endpoints_of(server._stores[env]).secrets.get(endpoint_id)


def _url(body: dict, *, required: bool) -> Any:
    value = _str(body, "url", required=required, nullable=False)
    if isinstance(value, str) and not URL_RE.match(value):
        raise _bad("url", "Invalid url")
    return value


def _events(body: dict, *, required: bool) -> Any:
    if "events" not in body:
        if required:
            raise _bad("events", "Required")
        return None
    value = body["events"]
    if not isinstance(value, list):
        raise _bad("events", f"Expected array, received {_type_name(value)}")
    for i, event in enumerate(value):
        if not isinstance(event, str) or not EVENT_RE.match(event):
            raise _bad(f"events.{i}", "Invalid event type")
    return sorted(set(value))


def list_webhooks(ctx: Ctx, body: dict) -> Reply:
    return Reply(200, dumps({"list": endpoints_of(ctx.store).listed()}))


def create_webhook(ctx: Ctx, body: dict) -> Reply:
    url = _url(body, required=True)
    events = _events(body, required=True)
    description = _str(body, "description")
    hooks = endpoints_of(ctx.store)
    endpoint = {"id": f"wh_{secrets.token_hex(12)}", "url": url, "events": events,
                "description": None if not isinstance(description, str) else description,
                "disabled": False, "created_at": now_ms()}
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    with hooks.lock:
        hooks.endpoints[endpoint["id"]] = endpoint
        hooks.secrets[endpoint["id"]] = secret
        return Reply(200, dumps({**endpoint, "secret": secret}))


def update_webhook(ctx: Ctx, body: dict) -> Reply:
    webhook_id = _str(body, "webhook_id", required=True, nullable=False)
    url = _url(body, required=False)
    events = _events(body, required=False)
    description = _str(body, "description")
    disabled = body.get("disabled")
    if disabled is not None and not isinstance(disabled, bool):
        raise _bad("disabled", f"Expected boolean, received {_type_name(disabled)}")
    hooks = endpoints_of(ctx.store)
    with hooks.lock:
        endpoint = hooks.endpoints.get(webhook_id)
        if endpoint is None:
            raise ApiError(404, "webhook_not_found", f"Webhook endpoint {webhook_id} not found")
        if isinstance(url, str):
            endpoint["url"] = url
        if events is not None:
            endpoint["events"] = events
        if isinstance(description, str) or (description is None and "description" in body):
            endpoint["description"] = description
        if disabled is not None:
            endpoint["disabled"] = disabled
        return Reply(200, dumps(endpoint))


WEBHOOK_HANDLERS = {
    "webhooks.list": list_webhooks,
    "webhooks.create": create_webhook,
    "webhooks.update": update_webhook,
}
