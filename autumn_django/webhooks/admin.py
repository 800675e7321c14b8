"""The stored webhook events in the admin: what arrived, what became of it, and why.

Registered when this module is imported (the app's ``admin.py`` imports it). Events are
read-only, since they are what Autumn sent; deleting old ones is allowed.
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from ..models import WebhookEvent


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ("received_at", "event_type", "customer_id", "status", "attempts", "svix_id")
    # Not event_type: a filter on a field without choices runs SELECT DISTINCT over the table.
    list_filter = ("status",)
    search_fields = ("=svix_id", "=customer_id", "event_type")
    ordering = ("-received_at",)
    show_full_result_count = False
    fields = ("svix_id", "event_type", "customer_id", "status", "error", "attempts", "signed_at",
              "received_at", "processed_at", "formatted_payload")
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description=_("body as received"))
    def formatted_payload(self, obj: WebhookEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, ensure_ascii=False))
