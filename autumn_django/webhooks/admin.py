"""The stored webhook events in the admin: what arrived, what became of it, and why.

Registered when this module is imported (the app's ``admin.py`` imports it). Events are
read-only, since they are what Autumn sent; deleting old ones is allowed. "Process again"
processes selected events that failed (or still wait for a worker) as a delivery would:
queued with Celery, otherwise now, within the inline budget. It refreshes customers from
Autumn, so it needs the ``autumn_django.sync_customers`` permission.
"""

from __future__ import annotations

import json
from collections import Counter

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..admin.display import without_secrets
from ..models import WebhookEvent
from .processing import FINAL_STATUSES, deliver_event

# Inline, each event may take the inline budget (seconds): keep a request's worth.
MAX_PROCESS_AGAIN = 20

@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ("received_at", "event_type", "customer_id", "env", "status", "attempts", "svix_id")
    # Not event_type: a filter on a field without choices runs SELECT DISTINCT over the table.
    list_filter = ("status", "env")
    search_fields = ("=svix_id", "=customer_id", "event_type")
    ordering = ("-received_at",)
    show_full_result_count = False
    fields = ("svix_id", "event_type", "customer_id", "env", "status", "error", "attempts", "signed_at",
              "received_at", "processed_at", "formatted_payload")
    readonly_fields = fields
    actions = ("process_again",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description=_("body as received"))
    def formatted_payload(self, obj: WebhookEvent) -> str:
        shown = without_secrets(obj.payload)
        return format_html("<pre>{}</pre>", json.dumps(shown, indent=2, ensure_ascii=False))

    def has_process_permission(self, request: HttpRequest) -> bool:
        from ..admin.actions import has_sync_permission

        return has_sync_permission(request)

    @admin.action(description=_("Process again"), permissions=["process"])
    def process_again(self, request: HttpRequest, queryset: QuerySet) -> None:
        rows = list(queryset.order_by("pk").values_list("pk", "status")[: MAX_PROCESS_AGAIN + 1])
        if len(rows) > MAX_PROCESS_AGAIN:
            self.message_user(request, _("Select at most %(max)d events to process again.")
                              % {"max": MAX_PROCESS_AGAIN}, messages.ERROR)
            return
        outcomes: Counter[str] = Counter()
        for pk, status in rows:
            if status in FINAL_STATUSES:
                outcomes["done"] += 1
                continue
            outcomes[deliver_event(pk).status] += 1
        for status, level, text in (
            (WebhookEvent.Status.PROCESSED, messages.SUCCESS, ngettext(
                "Processed %(count)d event.", "Processed %(count)d events.",
                outcomes[WebhookEvent.Status.PROCESSED])),
            (WebhookEvent.Status.IGNORED, messages.SUCCESS, ngettext(
                "Processed %(count)d event, which asked for nothing (see its note).",
                "Processed %(count)d events, which asked for nothing (see their notes).",
                outcomes[WebhookEvent.Status.IGNORED])),
            (WebhookEvent.Status.RECEIVED, messages.SUCCESS, ngettext(
                "Queued %(count)d event; a Celery worker will process it.",
                "Queued %(count)d events; a Celery worker will process them.",
                outcomes[WebhookEvent.Status.RECEIVED])),
            (WebhookEvent.Status.FAILED, messages.ERROR, ngettext(
                "%(count)d event failed again: its error says why.",
                "%(count)d events failed again: their errors say why.",
                outcomes[WebhookEvent.Status.FAILED])),
            ("done", messages.WARNING, ngettext(
                "Skipped %(count)d event already processed or ignored: it is not processed twice.",
                "Skipped %(count)d events already processed or ignored: they are not processed twice.",
                outcomes["done"])),
        ):
            if outcomes[status]:
                self.message_user(request, text % {"count": outcomes[status]}, level)
