"""Store a verified webhook, process it in a transaction of its own, then tell the project.

Storing first (dj-stripe's way) means an event is on record, with its outcome, whatever
processing does; the unique ``svix_id`` makes every redelivery of it the same row.
Processing never uses the body as customer data: an event that can change a customer's
plans or balances is answered by refreshing that customer through ``customers.get``, which
also creates it in the mirror when it is new. ``customer.products.updated`` even carries a
whole customer, but in an older response shape than the mirror stores, so it is refreshed
the same way. Once the outcome is committed, the event's signal and ``webhook_received``
are sent (``autumn_django.signals``).

What each type does (types and bodies as Autumn's server sends them, read at
useautumn/autumn@187c0a7: shared/api/webhooks/webhookEventType.ts, webhookRegistry.ts and
the schemas beside them; the senders under server/src/internal/balances/ and
server/src/internal/billing/). Each known type has its signal, named as the type with its
dots as underscores (``billing.updated``: ``signals.billing_updated``):

  type                             refresh  why
  -------------------------------  -------  -----------------------------------------------
  billing.updated                  yes      Plans were activated, scheduled, updated or
                                            expired; the body lists the changes, not the
                                            customer's new state.
  balances.limit_reached           yes      Usage reached a limit: balances moved, and
                                            tracking usage sends no webhook of its own.
  balances.usage_alert_triggered   yes      Likewise: usage crossed an alert threshold.
  billing.auto_topup_succeeded     yes      A balance was granted; without the refresh it
                                            stays invisible until the next full sync.
  billing.auto_topup_failed        yes      Nothing was granted, but usage took the balance
                                            under the threshold (unseen by the mirror), and
                                            failures can suspend the customer's auto
                                            top-ups (its billing controls).
  invoice.finalized                yes      Invoices are finalized at renewals (the period
                                            moves on, balances reset) and plan changes.
                                            Listed by the contract page; the server read
                                            sends it through no code path found, so its
                                            body is taken as it comes (``data.invoice``).
  customer.products.updated        yes      Legacy plan change; its customer is an older
                                            shape, so it is refreshed, never stored.
  customer.threshold_reached       yes      Legacy (API versions before 2.1): usage
                                            reached a limit, as balances.limit_reached.
  vercel.resources.provisioned     no       About a Vercel marketplace installation, not
  vercel.resources.deleted         no       an Autumn customer: nothing of the mirror
  vercel.resources.rotate_secrets  no       changes. Signalled for the project to act on.
  vercel.webhooks.event            no
  any other type                   no       Stored, acknowledged (200, "ignored") and sent
                                            as ``webhook_received``: a newer Autumn may send
                                            types this version does not know.

Known types end "processed" (or "ignored" with a note when a refreshing type names no
customer), unknown ones "ignored"; a refresh that fails leaves the event "failed" and the
delivery gets a 500, so Svix delivers it again; staff can also "Process again" in the admin.

Which environment an event is about. Svix's envelope carries none (``{type, data}``, plus
``id`` and ``occurred_at`` for auto top-ups: server/src/external/svix/svixHelpers.ts):
Autumn keeps one Svix app per env and sends each event to the app of the env it happened
in (svixUtils.ts, ``getSvixAppId``). So the endpoint decides: each env's endpoint
(``webhooks/sandbox/``, ``webhooks/live/``; ``webhooks/`` is ``AUTUMN_ENV``'s) verifies with
that env's signing secret alone (``AUTUMN_WEBHOOK_SECRETS``), so a delivery signed by the
other env's app is refused there (400), and its event is processed in that env: the refresh
uses that env's key. The env travels with the event's processing (``deliver_event``,
``process_event`` and the Celery task take ``env``): ``WebhookEvent`` has no column for it
without a migration, so "Process again" in the admin processes in ``AUTUMN_ENV``. Only the
legacy events also say the env in their body: the customer (and entity) objects they carry
have ``env``. An event whose body names an env other than the endpoint's is refused: stored
"ignored" with the reason, logged as an error, answered 200 (a redelivery would be refused
alike), no call to Autumn, no signal, so it can never become a refresh in the wrong env, nor
a 404 read as a deletion. An event whose body names no env is taken to be of the endpoint's
env; its refresh reads and writes only that env (``customers.get`` with that env's key, a
404 marks only that env's row deleted, which is then true of that env).

Time. Inline (no worker), the refresh runs inside the delivery, and Svix gives a delivery
15 s: it gets a client of its own with short timeouts and a short retry budget
(``INLINE_TIMEOUT``, ``INLINE_RETRY_SECONDS``, ``INLINE_MAX_RETRIES``: at worst about 9 s).
Past it the event stays "failed". With Celery the delivery only queues the event; the
worker processes it with the usual client and retries Autumn's transient errors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import Any

from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone as dj_timezone

from .. import signals
from ..client import AutumnClient
from ..conf import autumn_settings, project_env
from ..dispatch import dispatch, task_mode
from ..exceptions import AutumnConfigurationError, AutumnError, scrub_secrets
from ..models import Customer, WebhookEvent
from ..sync import sync_customer

logger = logging.getLogger(__name__)

# The inline refresh's budget, well inside Svix's 15 s with the rest of the request: one
# attempt may take 2 s to connect and 5 s to read, retries start within 2 s of the first.
# A smaller AUTUMN_TIMEOUT / AUTUMN_MAX_RETRIES / AUTUMN_RETRY_MAX_SECONDS wins.
INLINE_TIMEOUT = (2.0, 5.0)
INLINE_RETRY_SECONDS = 2.0
INLINE_MAX_RETRIES = 2


@dataclass(frozen=True)
class EventType:
    """What the app does with one type of event."""

    signal: Signal
    refreshes: bool
    # keyword argument -> key in ``data`` (sent as None when absent)
    fields: dict[str, str] = field(default_factory=dict)
    lists: frozenset[str] = frozenset()  # keyword arguments that default to [] instead


def _same(*names: str) -> dict[str, str]:
    return {name: name for name in names}


EVENT_TYPES: dict[str, EventType] = {
    "billing.updated": EventType(signals.billing_updated, True, _same("plan_changes", "tags"),
                                 lists=frozenset({"plan_changes", "tags"})),
    "balances.limit_reached": EventType(signals.balances_limit_reached, True,
                                        _same("feature_id", "limit_type", "filter")),
    "balances.usage_alert_triggered": EventType(signals.balances_usage_alert_triggered, True,
                                                _same("feature_id", "usage_alert")),
    "billing.auto_topup_succeeded": EventType(
        signals.billing_auto_topup_succeeded, True,
        _same("feature_id", "quantity_granted", "threshold", "balance_after", "invoice_mode", "invoice")),
    "billing.auto_topup_failed": EventType(
        signals.billing_auto_topup_failed, True,
        _same("feature_id", "reason", "quantity", "threshold", "balance", "invoice_mode", "error")),
    "invoice.finalized": EventType(signals.invoice_finalized, True, _same("invoice")),
    "customer.products.updated": EventType(signals.customer_products_updated, True,
                                           _same("scenario", "updated_product", "entity")),
    "customer.threshold_reached": EventType(signals.customer_threshold_reached, True,
                                            _same("threshold_type", "feature")),
    "vercel.resources.provisioned": EventType(signals.vercel_resources_provisioned, False,
                                              _same("resource", "installation_id", "access_token")),
    "vercel.resources.deleted": EventType(signals.vercel_resources_deleted, False,
                                          _same("resource", "installation_id")),
    "vercel.resources.rotate_secrets": EventType(
        signals.vercel_resources_rotate_secrets, False,
        _same("resource", "installation_id", "vercel_request_body")),
    "vercel.webhooks.event": EventType(signals.vercel_webhooks_event, False,
                                       {"installation_id": "installation_id", "vercel_event": "event"}),
}

# Events that mean "this customer may have changed": each is answered by refreshing it.
REFRESH_EVENT_TYPES = frozenset(name for name, kind in EVENT_TYPES.items() if kind.refreshes)

# A delivery of an event in one of these states is acknowledged without processing it again.
# A failed (or still queued) event is processed again when Svix redelivers it (it does,
# after a non-2xx) or when staff choose "Process again".
FINAL_STATUSES = frozenset({WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED})

ENVS = ("sandbox", "live")


def _data(payload: Any) -> dict[str, Any]:
    data = payload.get("data") if isinstance(payload, dict) else None
    return data if isinstance(data, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def customer_id_of(payload: Any) -> str | None:
    """The Autumn customer id an event is about: ``data.customer_id`` (Autumn's internal
    id for a customer without one), or the id of the customer object the legacy events
    carry in ``data.customer``."""
    return _id_of(payload, "customer")


def entity_id_of(payload: Any) -> str | None:
    """``data.entity_id``, or the id of the entity object ``customer.products.updated``
    carries in ``data.entity``."""
    return _id_of(payload, "entity")


def _id_of(payload: Any, kind: str) -> str | None:
    """``data.<kind>_id``, else the ``id`` of the object ``data.<kind>``."""
    data = _data(payload)
    found = data.get(f"{kind}_id")
    if found is None and isinstance(data.get(kind), dict):
        found = data[kind].get("id")
    return _text(found)


def env_of(payload: Any) -> str | None:
    """The Autumn env an event's body names, if any: only the customer and entity objects
    of the legacy events do (see the module's docstring)."""
    data = _data(payload)
    for holder in (data, data.get("customer"), data.get("entity")):
        env = holder.get("env") if isinstance(holder, dict) else None
        if env in ENVS:
            return env
    return None


def record_event(svix_id: str, timestamp: int, payload: dict[str, Any],
                 env: str = "") -> tuple[WebhookEvent, bool]:
    """Store a verified delivery to ``env``'s endpoint, once per ``svix_id``; returns the
    row and whether it is new."""
    event_type = payload.get("type")
    return WebhookEvent.objects.get_or_create(
        svix_id=svix_id,
        defaults={
            "event_type": event_type if isinstance(event_type, str) else "",
            "customer_id": customer_id_of(payload),
            "payload": payload,
            "env": env,
            "signed_at": datetime.fromtimestamp(timestamp, tz=timezone.utc),
        },
    )


def inline_client(env: str | None = None) -> AutumnClient:
    """The client of a refresh of ``env`` (default ``AUTUMN_ENV``) that runs inside a
    request: the inline budget above, or the configured one where that is smaller."""
    configured = autumn_settings.TIMEOUT
    pair = tuple(configured) if isinstance(configured, (tuple, list)) else (configured, configured)
    try:
        timeout = tuple(min(mine, float(theirs)) for mine, theirs in zip(INLINE_TIMEOUT, pair, strict=True))
        retries = min(INLINE_MAX_RETRIES, int(autumn_settings.MAX_RETRIES))
        seconds = min(INLINE_RETRY_SECONDS, float(autumn_settings.RETRY_MAX_SECONDS))
    except (TypeError, ValueError):  # a malformed setting (the checks say which): ours
        timeout, retries, seconds = INLINE_TIMEOUT, INLINE_MAX_RETRIES, INLINE_RETRY_SECONDS
    return AutumnClient(env=env, timeout=timeout, max_retries=max(retries, 0),
                        retry_max_seconds=max(seconds, 0.0))


def deliver_event(event_pk: int, env: str | None = None) -> WebhookEvent:
    """Process a stored event of ``env`` (the endpoint's; default ``AUTUMN_ENV``) the way
    ``AUTUMN_TASK_MODE`` says: queue it for a Celery worker, or process it now with the
    inline budget ("inline", and "off": Autumn asked). Returns the event as it stands:
    "received" while it waits in the queue. Without ``env`` (staff's "Process again"), the
    env of the endpoint that received it, as stored."""
    if env is None:
        env = WebhookEvent.objects.filter(pk=event_pk).values_list("env", flat=True).first() or None
    try:
        mode = task_mode()
    except AutumnConfigurationError as exc:
        return _fail(event_pk, f"{exc} The event is processed again when Svix delivers it again.")
    if mode != "celery":
        return process_event(event_pk, env=env, make_client=partial(inline_client, env))
    from ..tasks import process_webhook_event_task

    if dispatch(process_webhook_event_task, event_pk, env, explicit=True) == "queued":
        return WebhookEvent.objects.get(pk=event_pk)
    return _fail(event_pk, "Could not queue the event for a Celery worker (see the "
                           "autumn_django.dispatch log); Svix delivers it again.")


def process_event(event_pk: int, *, env: str | None = None,
                  make_client: Callable[[], AutumnClient] | None = None,
                  reraise: tuple[type[Exception], ...] = ()) -> WebhookEvent:
    """Process a stored event unless it is already done; returns it with its outcome.

    ``env`` is the environment of the endpoint that received it (default ``AUTUMN_ENV``):
    the refresh reads it with that env's key (``make_client``, default ``AutumnClient(env=env)``).

    The row is locked for the whole transaction, so two deliveries of one event arriving
    together process it once (on databases with row locks); the refresh runs inside it, so
    the mirror row and the event's "processed" commit together. The signals follow the
    commit. An error of a type in ``reraise`` is raised once the failure is recorded (the
    Celery task retries Autumn's transient errors so).
    """
    error: Exception | None = None
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().get(pk=event_pk)
        if event.status in FINAL_STATUSES:
            return event
        event.attempts += 1
        try:
            with transaction.atomic():  # a savepoint: a failure here still gets recorded
                outcome = _handle(event, env, make_client or partial(AutumnClient, env=env))
        except Exception as exc:
            error, outcome = exc, None
            if isinstance(exc, AutumnError):
                logger.warning("Processing Autumn webhook %s (%s) failed: %s", event.svix_id,
                               event.event_type, exc)
            else:
                logger.exception("Processing Autumn webhook %s (%s) failed.", event.svix_id, event.event_type)
            event.status, event.error = WebhookEvent.Status.FAILED, _failure_text(event, exc)
        else:
            event.status, event.error = outcome.status, outcome.error
        event.processed_at = dj_timezone.now()
        event.save(update_fields=["status", "error", "attempts", "processed_at"])
        if outcome is not None and outcome.signalled:
            transaction.on_commit(partial(send_signals, event, outcome.customer))
    if error is not None and isinstance(error, reraise):
        raise error
    return event


@dataclass(frozen=True)
class _Outcome:
    status: str
    error: str = ""
    customer: Customer | None = None
    signalled: bool = True


def _handle(event: WebhookEvent, env: str | None, make_client: Callable[[], AutumnClient]) -> _Outcome:
    kind = EVENT_TYPES.get(event.event_type)
    refused = _other_env(event, env)
    if refused:
        return _Outcome(WebhookEvent.Status.IGNORED, refused, signalled=False)
    if kind is None:
        return _Outcome(WebhookEvent.Status.IGNORED)
    if not kind.refreshes:
        return _Outcome(WebhookEvent.Status.PROCESSED)
    if not event.customer_id:
        # Retrying cannot help an event that names no customer; keep it visible instead.
        return _Outcome(WebhookEvent.Status.IGNORED, "The event names no customer: nothing to refresh.")
    with make_client() as client:
        customer = sync_customer(event.customer_id, client=client)
    return _Outcome(WebhookEvent.Status.PROCESSED, customer=customer)


def _other_env(event: WebhookEvent, env: str | None) -> str:
    """Why the event is refused when its body names another env than the endpoint's; ""."""
    named = env_of(event.payload)
    try:
        endpoint_env = env or project_env()
    except Exception:  # a bad AUTUMN_ENV: the checks say so; a refresh fails
        return ""
    if named is None or named == endpoint_env:
        return ""
    logger.error(
        "Refused Autumn webhook %s (%s): its body is about the %s environment, and the endpoint "
        "that received it is for %s. Each Autumn environment sends its webhooks from its own "
        "Svix app: point the %s endpoint at webhooks/%s/ and give that URL the %s endpoint's "
        "signing secret (AUTUMN_WEBHOOK_SECRETS).",
        event.svix_id, event.event_type, named, endpoint_env, named, named, named)
    return (f"Refused: the event is about the {named} environment and the endpoint that received "
            f"it is for {endpoint_env}. Nothing was refreshed and no signal was sent.")


def _failure_text(event: WebhookEvent, exc: Exception) -> str:
    what = f"Refreshing customer {event.customer_id!r}" if event.customer_id else "Processing"
    reason = exc.message if isinstance(exc, AutumnError) else f"{type(exc).__name__}: {exc}"
    reason = reason if reason.endswith(".") else f"{reason}."
    return scrub_secrets(f"{what} failed: {reason} Svix delivers the event again; "
                         "\"Process again\" in the admin processes it now.")


def _fail(event_pk: int, error: str) -> WebhookEvent:
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().get(pk=event_pk)
        if event.status not in FINAL_STATUSES:
            event.status, event.error = WebhookEvent.Status.FAILED, error
            event.save(update_fields=["status", "error"])
    return event


def signal_arguments(event: WebhookEvent, customer: Customer | None) -> dict[str, Any]:
    """The keyword arguments of an event's signals (``sender`` aside)."""
    data = _data(event.payload)
    arguments: dict[str, Any] = {
        "event": event, "customer_id": event.customer_id,
        "entity_id": entity_id_of(event.payload), "customer": customer, "data": data,
    }
    kind = EVENT_TYPES.get(event.event_type)
    if kind is not None:
        for name, key in kind.fields.items():
            value = data.get(key)
            arguments[name] = ([] if value is None else value) if name in kind.lists else value
    return arguments


def send_signals(event: WebhookEvent, customer: Customer | None) -> None:
    """The event's own signal, then ``webhook_received``. A receiver that raises is
    logged; the others still run, and the event stays processed."""
    arguments = signal_arguments(event, customer)
    kind = EVENT_TYPES.get(event.event_type)
    sends: list[tuple[Signal, dict[str, Any]]] = []
    if kind is not None:
        sends.append((kind.signal, arguments))
    generic = {key: arguments[key] for key in ("event", "customer_id", "entity_id", "customer", "data")}
    sends.append((signals.webhook_received, {**generic, "event_type": event.event_type}))
    for signal, kwargs in sends:
        for receiver, result in signal.send_robust(sender=WebhookEvent, **kwargs):
            if isinstance(result, Exception):
                logger.error("A receiver of Autumn webhook %s (%s), %s, raised %s: %s. The event "
                             "stays %s.", event.svix_id, event.event_type, _name(receiver),
                             type(result).__name__, result, event.status,
                             exc_info=(type(result), result, result.__traceback__))


def _name(receiver: Any) -> str:
    return f"{getattr(receiver, '__module__', '?')}.{getattr(receiver, '__qualname__', repr(receiver))}"
