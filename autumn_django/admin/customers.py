"""The customer list and page.

The mirror is Autumn's data, written by syncs only: every mirror field is read-only here,
customers cannot be added or deleted, and children show as read-only tables. The one
editable field is ``owner``, the link to a user (or the ``AUTUMN_CUSTOMER_OWNER_MODEL``): it
is this project's data, not Autumn's (no sync writes it), and staff need to fix a customer
linked to the wrong owner.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import router
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from .. import freshness
from ..models import Customer, Scope, Subscription, SyncRun
from . import actions, display, entities, names
from .base import ReadOnlyAdmin
from .children import BalanceInline, FlagInline, LicenseInline, PurchaseInline, SubscriptionInline
from .filters import DeletedFilter, PastDueFilter, PlanFilter, StatusFilter
from .pagination import EstimatedCountPaginator


class CustomerForm(forms.ModelForm):
    def clean_owner(self):
        # The model's (owner, env) constraint is not checked by the form, because env is
        # read-only here; a clash would otherwise be an IntegrityError.
        owner = self.cleaned_data.get("owner")
        if owner is not None:
            other = (Customer.objects.filter(env=self.instance.env, owner=owner)
                     .exclude(pk=self.instance.pk).first())
            if other is not None:
                raise ValidationError(
                    _("%(owner)s is already linked to the %(env)s customer %(customer)s; "
                      "unlink it there first."),
                    params={"owner": owner, "env": other.env, "customer": other})
        return owner


class CustomerChangeList(ChangeList):
    def get_queryset(self, request: HttpRequest, *args: Any, **kwargs: Any) -> QuerySet:
        # The list needs the active plans of its rows (one query for the whole page, with
        # their catalogue names) and never the raw JSON (kilobytes per row). Only here: the
        # customer page needs raw. The customer's own plans: its entities' (scope "entity",
        # folded in by Autumn) are on its page.
        active = (Subscription.objects.filter(status=Subscription.Status.ACTIVE, scope=Scope.CUSTOMER)
                  .order_by("add_on", "plan_id")
                  .only("customer_id", "plan_id", "add_on", "past_due", "quantity")
                  .annotate(plan_name=names.plan_name("customer__env")))
        # The owner column: joined, so a page costs no query per row.
        return (super().get_queryset(request, *args, **kwargs).defer("raw").select_related("owner")
                .prefetch_related(Prefetch("subscriptions", queryset=active, to_attr="active_subscriptions")))


@admin.register(Customer)
class CustomerAdmin(ReadOnlyAdmin):
    list_display = ("autumn_id", "display_name", "email", "env", "owner_link", "active_plans",
                    "past_due", "synced_at", "deleted")
    list_display_links = ("autumn_id", "display_name")
    list_filter = ("env", PlanFilter, StatusFilter, PastDueFilter, DeletedFilter)
    # "=" (exact) for ids; names and emails match in part.
    search_fields = ("=autumn_id", "name", "email")
    search_help_text = _("Autumn id (exact), or part of a name or an email.")
    # Newest first. The created_at index serves it: PostgreSQL scans it backwards and sorts
    # only ties (0.1 ms for a page of 100,000 customers); SQLite's index ends with the rowid.
    ordering = ("-created_at", "-pk")
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    if hasattr(admin, "ShowFacets"):  # Django 5.0+: facet counts are a COUNT per choice
        show_facets = admin.ShowFacets.NEVER
    actions = ("refresh_from_autumn",)
    form = CustomerForm
    # A raw id, not a dropdown of every owner; the widget links to the owner's admin page.
    raw_id_fields = ("owner",)
    # What support looks for comes first: who it is, then balances and plans (the change
    # form template puts the fieldsets after the first one below the children); paired
    # fields share a row, so the balances show without scrolling.
    inlines = (BalanceInline, SubscriptionInline, FlagInline, PurchaseInline, LicenseInline)
    fieldsets = (
        (None, {"fields": (("autumn_id", "env"), ("name", "email"), ("created_at", "dashboard_link"),
                           ("synced_at", "deleted_at"), "owner")}),
        (_("Billing"), {"fields": (("stripe_id", "fingerprint", "send_email_receipts"),)}),
        (_("Metadata and JSON"), {"fields": ("metadata", "raw_json")}),
    )
    readonly_fields = ("autumn_id", "name", "email", "env", "created_at", "dashboard_link",
                       "stripe_id", "fingerprint", "send_email_receipts", "synced_at",
                       "deleted_at", "metadata", "raw_json")

    # -- permissions: the mirror is written by syncs only; the owner link is the project's
    # own data, the one thing staff with the change permission may edit here.
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return admin.ModelAdmin.has_change_permission(self, request, obj)

    def has_sync_permission(self, request: HttpRequest) -> bool:
        return actions.has_sync_permission(request)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return CustomerChangeList

    def save_model(self, request: HttpRequest, obj: Customer, form: forms.ModelForm, change: bool) -> None:
        # Write the owner link alone: saving the whole row would put back mirror fields as
        # they were when this request loaded them, undoing a sync that ran meanwhile.
        if "owner" in form.changed_data:
            obj.save(update_fields=["owner"])

    # -- list columns ------------------------------------------------------------------
    @admin.display(description=_("name"), ordering="name")
    def display_name(self, customer: Customer):
        if not customer.name:
            return self.get_empty_value_display()
        # <bdi>: a right-to-left name must not reorder the rest of the row.
        return format_html("<bdi>{}</bdi>", customer.name)

    @admin.display(description=_("owner"), ordering="owner")
    def owner_link(self, customer: Customer):
        """The owner, linked to its admin page when its model is registered on this site."""
        owner = customer.owner  # joined by the list's query
        if owner is None:
            return self.get_empty_value_display()
        url = display.admin_change_url(self.admin_site, owner)
        if url is None:
            return str(owner)
        return format_html('<a href="{}">{}</a>', url, owner)

    @admin.display(description=_("active plans"))
    def active_plans(self, customer: Customer):
        subscriptions = customer.active_subscriptions
        if not subscriptions:
            return self.get_empty_value_display()
        return format_html_join(
            ", ", '<span class="autumn-plan{}">{}{}</span>',
            ((" autumn-addon" if s.add_on else "", names.labelled(s.plan_id, s.plan_name),
              f" \u00d7{s.quantity}" if s.quantity and s.quantity > 1 else "") for s in subscriptions))

    # Markers rather than boolean icons: a column of red crosses on every healthy row
    # would hide the few rows that matter.
    @admin.display(description=_("past due"))
    def past_due(self, customer: Customer):
        if not any(s.past_due for s in customer.active_subscriptions):
            return ""
        return format_html('<span class="autumn-badge autumn-badge-warn">{}</span>', _("past due"))

    @admin.display(description=_("deleted"), ordering="deleted_at")
    def deleted(self, customer: Customer):
        return display.deleted_mark(customer)

    # -- customer page -----------------------------------------------------------------
    @admin.display(description=_("in Autumn"))
    def dashboard_link(self, customer: Customer):
        url = display.dashboard_url(customer)
        if url is None:
            return _("No Autumn id: not addressable in Autumn's dashboard.")
        return format_html('<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>',
                           url, _("Open in Autumn's dashboard"))

    @admin.display(description=_("metadata"))
    def metadata(self, customer: Customer):
        return display.pretty_json(customer.metadata) if customer.metadata else display.EMPTY

    @admin.display(description=_("JSON as received"))
    def raw_json(self, customer: Customer):
        return display.folded_json(customer.raw, _("Show the customer object Autumn sent"))

    # -- actions and buttons -----------------------------------------------------------
    @admin.action(description=_("Refresh from Autumn"), permissions=["sync"])
    def refresh_from_autumn(self, request: HttpRequest, queryset: QuerySet) -> None:
        rows = queryset.prefetch_related(None).order_by().values_list("autumn_id", "env")
        for level, text in actions.refresh_customers(rows[: actions.MAX_REFRESH + 1]):
            self.message_user(request, text, level)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path("<path:object_id>/refresh/", self.admin_site.admin_view(self.refresh_view),
                 name="{}_{}_refresh".format(*info)),
            *super().get_urls(),
        ]

    def refresh_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The customer page's "Refresh from Autumn" button."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_sync_permission(request):
            raise PermissionDenied
        customer = self.get_object(request, object_id)
        if customer is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        for level, text in actions.refresh_customers([(customer.autumn_id, customer.env)]):
            self.message_user(request, text, level)
        return HttpResponseRedirect(reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_change",
            args=[customer.pk]))

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra_context = {**(extra_context or {}), "autumn_can_sync": self.has_sync_permission(request),
                         "autumn_freshness": _freshness()}
        return super().changelist_view(request, extra_context)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None):
        extra_context = {**(extra_context or {}), "autumn_can_sync": self.has_sync_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    def render_change_form(self, request: HttpRequest, context: dict, add: bool = False,
                           change: bool = False, form_url: str = "", obj: Customer | None = None):
        # Its entities: a capped table of their own (an inline would list them all).
        if obj is not None:
            context["autumn_entities"] = entities.customer_entities(self.admin_site, request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)


def _freshness() -> freshness.Freshness | None:
    """When the key's env was last synced completely, for the list's banner (one query);
    None without a valid key (the system checks say so)."""
    env = freshness.key_env()
    if env is None:
        return None
    return freshness.freshness(env, using=router.db_for_read(SyncRun))
