"""Store a verified webhook, then process it in a transaction of its own.

Storing first (dj-stripe's way) means an event is on record, with its outcome, whatever
processing does; the unique ``svix_id`` makes every redelivery of it the same row.
Processing never uses the body as customer data: every event this app knows just names a
customer, and that customer is refreshed through ``customers.get``, which also creates it
in the mirror when it is new. ``customer.products.updated`` even carries a whole customer,
but in an older response shape than the mirror stores, so it is refreshed the same way.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from django.db import transaction
from django.utils import timezone as dj_timezone

from ..dispatch import dispatch
from ..models import WebhookEvent
from ..tasks import sync_customer_task

logger = logging.getLogger(__name__)

# Events that mean "this customer changed": each is answered by refreshing that customer.
REFRESH_EVENT_TYPES = frozenset({"billing.updated", "balances.limit_reached", "customer.products.updated"})

# A delivery of an event in one of these states is acknowledged without processing it again.
# A failed event is processed again when Svix redelivers it (it does, after a non-2xx).
FINAL_STATUSES = frozenset({WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED})


def customer_id_of(payload: Any) -> str | None:
    """The Autumn customer id an event is about: ``data.customer_id``, or the id of the
    customer object ``customer.products.updated`` carries in ``data.customer``."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        return None
    customer_id = data.get("customer_id")
    if customer_id is None and isinstance(data.get("customer"), dict):
        customer_id = data["customer"].get("id")
    return customer_id if isinstance(customer_id, str) and customer_id else None


def record_event(svix_id: str, timestamp: int, payload: dict[str, Any]) -> tuple[WebhookEvent, bool]:
    """Store a verified delivery, once per ``svix_id``; returns the row and whether it is new."""
    event_type = payload.get("type")
    return WebhookEvent.objects.get_or_create(
        svix_id=svix_id,
        defaults={
            "event_type": event_type if isinstance(event_type, str) else "",
            "customer_id": customer_id_of(payload),
            "payload": payload,
            "signed_at": datetime.fromtimestamp(timestamp, tz=timezone.utc),
        },
    )


def process_event(event_pk: int) -> WebhookEvent:
    """Process a stored event unless it is already done; returns it with its outcome.

    The row is locked for the whole transaction, so two deliveries of one event arriving
    together process it once (on databases with row locks). With ``AUTUMN_TASK_MODE``
    "inline" the refresh runs inside this transaction: the mirror row and the event's
    "processed" commit together.
    """
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().get(pk=event_pk)
        if event.status in FINAL_STATUSES:
            return event
        event.attempts += 1
        try:
            with transaction.atomic():  # a savepoint: a failure here still gets recorded
                event.status, event.error = _handle(event)
        except Exception as exc:
            logger.exception("Processing Autumn webhook %s (%s) failed.", event.svix_id, event.event_type)
            event.status, event.error = WebhookEvent.Status.FAILED, f"{type(exc).__name__}: {exc}"
        event.processed_at = dj_timezone.now()
        event.save(update_fields=["status", "error", "attempts", "processed_at"])
    return event


def _handle(event: WebhookEvent) -> tuple[str, str]:
    if event.event_type not in REFRESH_EVENT_TYPES:
        return WebhookEvent.Status.IGNORED, ""
    if not event.customer_id:
        # Retrying cannot help an event that names no customer; keep it visible instead.
        return WebhookEvent.Status.IGNORED, "The event names no customer: nothing to refresh."
    outcome = dispatch(sync_customer_task, event.customer_id, explicit=True)
    if outcome == "failed":
        return (WebhookEvent.Status.FAILED,
                f"Refreshing customer {event.customer_id!r} failed (see the autumn_django.dispatch log); "
                "Svix will deliver the event again.")
    return WebhookEvent.Status.PROCESSED, ""
