"""The project's webhook endpoint in Autumn, registered through Autumn's webhook API
(``manage.py autumn_webhook``).

Assumption. Autumn's contract names ``webhooks.create``, ``webhooks.list`` and
``webhooks.update`` (and ``webhooks.delete``, ``webhooks.sync``) and says the signing secret
is returned once, at creation; it gives no request or response shapes, and the open-source
server snapshot the app was written against has none of these routes. This module assumes
the minimal shapes below, in the style of the customer calls (``POST /v1/<resource>.<verb>``,
snake_case JSON, the key's environment decided by its prefix); the local stand-in
(``autumn_django.testing.webhook_endpoints``) serves the same. Check them against Autumn's
API reference before relying on them; only this module and the stand-in know them.

    webhooks.list    {}                                  -> {"list": [endpoint, ...]}
    webhooks.create  {"url", "events", "description"}    -> endpoint + {"secret": "whsec_..."}
    webhooks.update  {"webhook_id", "url", "events"}     -> endpoint (never the secret)

    endpoint = {"id", "url", "events": [type, ...], "description", "disabled", "created_at"}

Idempotent by URL: ``register`` lists the env's endpoints and updates the one whose URL is
the project's (its events), else creates it. So running it twice leaves one endpoint, and
the secret is known only from the run that created it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..client import AutumnClient
from ..exceptions import AutumnResponseError
from .processing import EVENT_TYPES

DESCRIPTION = "autumn_django mirror"


def handled_events() -> list[str]:
    """Every event type the app handles (``processing.EVENT_TYPES``), sorted."""
    return sorted(EVENT_TYPES)


@dataclass(frozen=True)
class Registration:
    endpoint: dict[str, Any]
    created: bool
    secret: str | None  # only when created: Autumn shows it once


def _endpoint(value: Any, call: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("id"), str):
        raise AutumnResponseError(f"Autumn's {call} answer is not a webhook endpoint: {str(value)[:200]}")
    return value


def list_endpoints(client: AutumnClient) -> list[dict[str, Any]]:
    answer = client.post("webhooks.list", {})
    endpoints = answer.get("list") if isinstance(answer, dict) else None
    if not isinstance(endpoints, list):
        raise AutumnResponseError(
            f"Autumn's webhooks.list answer is not {{list: [...]}}: {str(answer)[:200]}")
    return [e for e in endpoints if isinstance(e, dict)]


def register(client: AutumnClient, url: str, events: list[str] | None = None) -> Registration:
    """Create the endpoint at ``url`` in the client's environment, subscribed to
    ``events`` (default: every type the app handles), or update the one already there."""
    events = handled_events() if events is None else sorted(events)
    for endpoint in list_endpoints(client):
        if endpoint.get("url") == url:
            updated = client.post("webhooks.update", {"webhook_id": endpoint["id"], "url": url,
                                                      "events": events})
            return Registration(_endpoint(updated, "webhooks.update"), created=False, secret=None)
    created = _endpoint(client.post("webhooks.create", {"url": url, "events": events,
                                                        "description": DESCRIPTION}), "webhooks.create")
    secret = created.pop("secret", None)
    return Registration(created, created=True, secret=secret if isinstance(secret, str) else None)
