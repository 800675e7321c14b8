"""Balances across all customers and entities: who is running out of what."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Case, F, FloatField, QuerySet, Value, When
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from ..models import Balance
from . import display, names
from .base import ReadOnlyAdmin
from .filters import ExhaustedFilter, FeatureFilter
from .pagination import EstimatedCountPaginator

# usage / granted in percent, as display.usage_percent computes it, so the column sorts.
USAGE_PERCENT = Case(
    When(unlimited=False, granted__gt=0, then=F("usage") * 100.0 / F("granted")),
    default=Value(None), output_field=FloatField(),
)


@admin.register(Balance)
class BalanceAdmin(ReadOnlyAdmin):
    list_display = ("feature", "customer_link", "granted_amount", "used_amount",
                    "remaining_amount", "usage_percent", "next_reset")
    list_filter = (FeatureFilter, ExhaustedFilter, "unlimited")
    search_fields = ("=customer__autumn_id", "customer__email", "=feature_id", "=entity__autumn_id")
    search_help_text = _("Customer's Autumn id (exact) or part of its email, a feature id, or an "
                         "entity's Autumn id (exact).")
    # Served by the (customer, feature_id) unique index; a total order, so no extra sort key.
    ordering = ("customer_id", "feature_id")
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    if hasattr(admin, "ShowFacets"):  # Django 5.0+
        show_facets = admin.ShowFacets.NEVER
    fields = ("customer_link", "feature", "granted_amount", "used_amount", "remaining_amount",
              "usage_bar", "unlimited", "overage_allowed", "max_purchase", "next_reset",
              "breakdown_json")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The owner's name for each row in the same query, without raw JSON: a customer's,
        # or an entity's and its customer's; and the feature's catalogue name.
        return (super().get_queryset(request).select_related("customer", "entity__customer")
                .defer("customer__raw", "entity__raw", "entity__customer__raw")
                .annotate(usage_percent=USAGE_PERCENT, feature_name=names.feature_name(names.CHILD_ENV)))

    @admin.display(description=_("feature"), ordering="feature_id")
    def feature(self, balance: Balance):
        return names.labelled(balance.feature_id, balance.feature_name)

    @admin.display(description=_("customer"), ordering="customer__autumn_id")
    def customer_link(self, balance: Balance):
        """The customer, or the entity (linked to its page) and its customer."""
        site = self.admin_site.name
        entity = balance.entity
        customer = balance.customer if entity is None else entity.customer
        url = reverse(f"{site}:autumn_django_customer_change", args=[customer.pk])
        link = display.named_link(url, customer, customer.name)
        if entity is None:
            return link
        entity_url = reverse(f"{site}:autumn_django_entity_change", args=[entity.pk])
        return format_html("{} {} {}", display.named_link(entity_url, entity, entity.name), _("of"), link)

    @admin.display(description=_("granted"), ordering="granted")
    def granted_amount(self, balance: Balance) -> str:
        return _("unlimited") if balance.unlimited else display.format_amount(balance.granted)

    @admin.display(description=_("used"), ordering="usage")
    def used_amount(self, balance: Balance) -> str:
        return display.format_amount(balance.usage)

    @admin.display(description=_("remaining"), ordering="remaining")
    def remaining_amount(self, balance: Balance):
        return display.remaining_amount(balance)

    # Balances without a percentage (unlimited, nothing granted) sort below the fullest
    # ones on every database (PostgreSQL and SQLite disagree on where NULL goes).
    @admin.display(description=_("usage"), ordering=F("usage_percent").asc(nulls_first=True))
    def usage_percent(self, balance: Balance):
        return display.usage_bar(balance)

    @admin.display(description=_("usage"))
    def usage_bar(self, balance: Balance):
        return display.usage_bar(balance)

    @admin.display(description=_("next reset"), ordering="next_reset_at")
    def next_reset(self, balance: Balance):
        return display.next_reset(balance)

    @admin.display(description=_("breakdown"))
    def breakdown_json(self, balance: Balance):
        return display.folded_json(balance.breakdown, _("Show the grants this balance adds up"))
