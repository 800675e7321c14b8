"""The endpoint Autumn's webhooks (through Svix) are delivered to.

A plain Django view, not DRF: it authenticates by signature alone, and a project's DRF
authentication (session CSRF checks, tokens) must not stand in its way.

Requests that fail verification are refused with 400 and not stored. Storing them would
let anyone who finds the URL fill the table, and could let a forger claim a genuine
event's ``svix-id`` first, so that the real delivery looked like a repeat and was never
processed. They are logged (without the secret or signatures) instead.
"""

from __future__ import annotations

import json
import logging

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

try:
    from django.contrib.auth.decorators import login_not_required
except ImportError:  # Django before 5.1 has no LoginRequiredMiddleware to be exempt from

    def login_not_required(view):
        return view

from ..conf import autumn_settings, project_env, webhook_secret_for
from ..models import WebhookEvent
from .processing import FINAL_STATUSES, deliver_event, record_event
from .signature import SecretError, SignatureError, verify

logger = logging.getLogger(__name__)

SVIX_ID_MAX_LENGTH = WebhookEvent._meta.get_field("svix_id").max_length


def _main() -> str | None:
    try:
        return project_env()
    except ImproperlyConfigured:
        return None


@csrf_exempt
@login_not_required  # Svix signs, it never logs in: a redirect to the login page is retried forever
@require_POST
@transaction.non_atomic_requests  # the event must be stored even when processing fails
def receive_webhook(request: HttpRequest, env: str | None = None) -> JsonResponse:
    """Verify, store, process. 200 when the event is handled (processed, ignored, queued
    for a Celery worker, or a repeat of one that was), 400 when the request is not a valid
    delivery, 500 when processing failed (Svix then delivers it again) or the secret is not
    set up.

    ``env`` is the environment the endpoint's URL names (``webhooks/live/``); without one
    (``webhooks/``) it is ``AUTUMN_ENV``. The delivery is verified with that env's signing
    secret only, so one signed by the other env's Svix app is refused (400), and its
    customer is refreshed from that env."""
    try:
        env = env or project_env()
    except ImproperlyConfigured as exc:
        logger.error("Refused an Autumn webhook: %s", exc)
        return JsonResponse({"error": "Webhooks are not configured on this server."}, status=500)
    secret = webhook_secret_for(env)
    setting = f"AUTUMN_WEBHOOK_SECRETS[{env!r}]" + (" (or AUTUMN_WEBHOOK_SECRET)" if env == _main() else "")
    if not secret:
        logger.error("Refused an Autumn webhook to the %s endpoint: %s is not set.", env, setting)
        return JsonResponse({"error": "Webhooks are not configured on this server."}, status=500)
    try:
        delivery = verify(secret, request.headers, request.body,
                          tolerance=autumn_settings.WEBHOOK_TOLERANCE_SECONDS)
    except (SecretError, TypeError) as exc:
        logger.error("Refused an Autumn webhook to the %s endpoint: %s is malformed (%s).", env, setting,
                     exc if isinstance(exc, SecretError) else "not a string")
        return JsonResponse({"error": "Webhooks are not configured on this server."}, status=500)
    except SignatureError as exc:
        logger.warning("Refused an Autumn webhook (svix-id %r): %s.",
                       request.headers.get("svix-id", "")[:100], exc)
        return JsonResponse({"error": f"Invalid webhook: {exc}."}, status=400)

    try:
        payload = json.loads(request.body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or len(delivery.svix_id) > SVIX_ID_MAX_LENGTH:
        logger.warning("Refused a signed Autumn webhook %r: not a JSON object with a usable id.",
                       delivery.svix_id[:100])
        return JsonResponse({"error": "Invalid webhook: the body is not a JSON object."}, status=400)

    event, created = record_event(delivery.svix_id, delivery.timestamp, payload, env)
    if not created and event.status in FINAL_STATUSES:
        return JsonResponse({"id": event.svix_id, "status": event.status, "duplicate": True})
    event = deliver_event(event.pk, env=env)
    failed = event.status == WebhookEvent.Status.FAILED
    return JsonResponse({"id": event.svix_id, "status": event.status}, status=500 if failed else 200)
