"""The read-only tables of a customer's or an entity's children on its page: subscriptions,
purchases, balances, flags, and a customer's seat pools (licenses).

The same inlines serve both pages: a child row belongs to a customer or to an entity
(``models.Subscription``), and the inline's parent says which. Plan and feature names
come from the catalogue in the rows' own query (``names``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from ..models import Balance, Flag, License, Purchase, Scope, Subscription
from . import display, names


class ChildInline(admin.TabularInline):
    """A customer's (or entity's) subscriptions, balances...: part of it, so read-only, and
    shown to whoever may view it (no separate permission per child model)."""

    extra = 0
    can_delete = False
    show_change_link = False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.admin_site._registry[self.parent_model].has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @property
    def env_ref(self) -> str:
        """The path from a child row to its env: through the parent the page shows."""
        return f"{self.parent_model._meta.model_name}__env"


class PlanNamed(ChildInline):
    """Rows with a ``plan_id``, shown with the plan's catalogue name."""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(plan_name=names.plan_name(self.env_ref))

    @admin.display(description=_("plan"))
    def plan(self, row: Any):
        return names.labelled(row.plan_id, row.plan_name)


class FeatureNamed(ChildInline):
    """Rows with a ``feature_id``, shown with the feature's catalogue name."""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(feature_name=names.feature_name(self.env_ref))

    @admin.display(description=_("feature"))
    def feature(self, row: Any):
        return names.labelled(row.feature_id, row.feature_name)


def scope_marker(row: Subscription | Purchase) -> str:
    """Autumn's scope, marked where it is an entity's: on a customer's page such a row is
    one of its entities' plans (folded in by Autumn), on an entity's page the entity's own."""
    if row.scope == Scope.ENTITY:
        return format_html('<span class="autumn-badge autumn-badge-entity">{}</span>', _("entity"))
    return _("customer")


class SubscriptionInline(PlanNamed):
    model = Subscription
    fields = ("plan", "scope_label", "state", "add_on_marker", "quantity", "started_at",
              "current_period_end", "trial_ends_at", "canceled_at", "expires_at")
    readonly_fields = ("plan", "scope_label", "state", "add_on_marker")
    # The owner's own plans first (a customer's, or an entity's), then the folded-in ones.
    ordering = ("scope", "status", "add_on", "plan_id")

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        # "customer" sorts before "entity": on an entity's page its own rows come first.
        return self.ordering if self.parent_model._meta.model_name == "customer" else (
            "-scope", "status", "add_on", "plan_id")

    @admin.display(description=_("scope"))
    def scope_label(self, subscription: Subscription):
        return scope_marker(subscription)

    @admin.display(description=_("status"))
    def state(self, subscription: Subscription):
        if not subscription.past_due:
            return subscription.status
        return format_html('{} <span class="autumn-badge autumn-badge-warn">{}</span>',
                           subscription.status, _("past due"))

    @admin.display(description=_("add-on"))
    def add_on_marker(self, subscription: Subscription) -> str:
        return _("add-on") if subscription.add_on else ""


class PurchaseInline(PlanNamed):
    model = Purchase
    fields = ("plan", "scope_label", "quantity", "started_at", "expires_at")
    readonly_fields = ("plan", "scope_label")
    ordering = ("-started_at",)

    @admin.display(description=_("scope"))
    def scope_label(self, purchase: Purchase):
        return scope_marker(purchase)


class BalanceInline(FeatureNamed):
    model = Balance
    fields = ("feature", "granted_amount", "used_amount", "remaining_amount", "usage_bar",
              "overage", "next_reset")
    readonly_fields = fields
    ordering = ("feature_id",)

    @admin.display(description=_("granted"))
    def granted_amount(self, balance: Balance) -> str:
        return _("unlimited") if balance.unlimited else display.format_amount(balance.granted)

    @admin.display(description=_("used"))
    def used_amount(self, balance: Balance) -> str:
        return display.format_amount(balance.usage)

    @admin.display(description=_("remaining"))
    def remaining_amount(self, balance: Balance):
        return display.remaining_amount(balance)

    @admin.display(description=_("usage"))
    def usage_bar(self, balance: Balance):
        return display.usage_bar(balance)

    @admin.display(description=_("overage"))
    def overage(self, balance: Balance) -> str:
        # Words, not a boolean icon: a red cross on every capped balance reads as an error.
        return _("allowed") if balance.overage_allowed else ""

    @admin.display(description=_("next reset"))
    def next_reset(self, balance: Balance):
        return display.next_reset(balance)


class FlagInline(FeatureNamed):
    model = Flag
    fields = ("feature", "plan", "expires_at")
    readonly_fields = ("feature", "plan")
    ordering = ("feature_id",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(plan_name=names.plan_name(self.env_ref))

    @admin.display(description=_("plan"))
    def plan(self, flag: Flag):
        return names.labelled(flag.plan_id, flag.plan_name) if flag.plan_id else display.EMPTY


class LicenseInline(ChildInline):
    """A customer's seat pools: seats granted by its plans, and how many entities use."""

    model = License
    verbose_name_plural = _("seat pools (licenses)")
    fields = ("license_plan", "parent_plan", "seats_used", "seats_bar", "paid_seats")
    readonly_fields = fields
    ordering = ("license_plan_id",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(
            plan_name=names.plan_name("customer__env", "license_plan_id"),
            parent_name=names.plan_name("customer__env", "parent_plan_id"))

    @admin.display(description=_("seat plan"))
    def license_plan(self, pool: License):
        # Autumn names the pool itself; the catalogue's name is the fallback.
        return names.labelled(pool.license_plan_id, pool.license_plan_name or pool.plan_name)

    @admin.display(description=_("granted by"))
    def parent_plan(self, pool: License):
        return names.labelled(pool.parent_plan_id, pool.parent_name) if pool.parent_plan_id else display.EMPTY

    @admin.display(description=_("seats used / granted"))
    def seats_used(self, pool: License) -> str:
        return f"{display.format_amount(pool.usage)} / {display.format_amount(pool.granted)}"

    @admin.display(description=_("seats in use"))
    def seats_bar(self, pool: License):
        if not pool.granted or pool.granted <= 0 or pool.usage is None:
            return display.EMPTY
        return display.meter(pool.usage, pool.granted, _("%(used)s of %(granted)s seats used") % {
            "used": display.format_amount(pool.usage), "granted": display.format_amount(pool.granted)})

    @admin.display(description=_("paid seats"))
    def paid_seats(self, pool: License) -> str:
        return display.format_amount(pool.paid_quantity)
