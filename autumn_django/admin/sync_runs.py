"""Sync runs: what each full sync did, what went wrong, and the "Sync now" button."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from ..models import SyncRun
from . import actions, display
from .base import ReadOnlyAdmin


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = ("number", "env", "status_label", "started_at", "finished_at", "duration",
                    "created", "updated", "unchanged", "deleted", "skipped", "read_again", "problems")
    list_filter = ("env", "status")
    ordering = ("-started_at", "-pk")
    fieldsets = (
        (None, {"fields": ("env", "status_label", "started_at", "finished_at", "duration",
                           "heartbeat_at", "attempts", "page_size", "pages")}),
        (_("Counts"), {"fields": ("created", "updated", "unchanged", "deleted", "undeleted",
                                  "skipped", "read_again")}),
        (_("Problems"), {"fields": ("failure", "errors_list")}),
        (_("Resume point"), {"fields": ("reached_created_at", "cursor", "created_at_start")}),
    )
    readonly_fields = ("status_label", "duration", "read_again", "errors_list")

    @admin.display(description=_("run"), ordering="pk")
    def number(self, run: SyncRun) -> str:
        return f"#{run.pk}"

    @admin.display(description=_("status"), ordering="status")
    def status_label(self, run: SyncRun):
        return format_html('<span class="autumn-status autumn-status-{}">{}</span>',
                           run.status, run.get_status_display())

    @admin.display(description=_("duration"))
    def duration(self, run: SyncRun) -> str:
        return display.format_duration(run.duration)

    # Customers whose list row fell short (at the 15-plan cap, a balance due to reset, or
    # older than the mirror's row), so the run read them through customers.get.
    @admin.display(description=_("read again (get)"), ordering="reread")
    def read_again(self, run: SyncRun) -> int:
        return run.reread

    @admin.display(description=_("problems"))
    def problems(self, run: SyncRun) -> int:
        return len(run.errors or [])

    @admin.display(description=_("skipped records and warnings"))
    def errors_list(self, run: SyncRun):
        """``errors`` holds ``{"customer", "error"}`` for a skipped record and
        ``{"warning"}`` for a warning; anything else is shown as JSON."""
        if not run.errors:
            return display.EMPTY
        return format_html('<ul class="autumn-errors">{}</ul>', format_html_join(
            "", "<li>{}</li>", ((_describe(entry),) for entry in run.errors)))

    # -- "Sync now" --------------------------------------------------------------------
    def get_urls(self):
        return [
            path("sync-now/", self.admin_site.admin_view(self.sync_now_view),
                 name=f"{self.opts.app_label}_{self.opts.model_name}_sync_now"),
            *super().get_urls(),
        ]

    def sync_now_view(self, request: HttpRequest) -> HttpResponse:
        """A full sync, queued (Celery) or run now (inline), from a button on the sync
        run and customer lists. POST only: it starts work."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not actions.has_sync_permission(request):
            raise PermissionDenied
        level, text = actions.sync_all()
        self.message_user(request, text, level)
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_changelist"))

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra_context = {**(extra_context or {}),
                         "autumn_can_sync": actions.has_sync_permission(request)}
        return super().changelist_view(request, extra_context)


def _describe(entry: Any):
    if isinstance(entry, dict) and set(entry) == {"customer", "error"}:
        return format_html("<code>{}</code>: {}", entry["customer"], entry["error"])
    if isinstance(entry, dict) and set(entry) == {"warning"}:
        return format_html("{}: {}", _("Warning"), entry["warning"])
    return display.pretty_json(entry)
