"""Entities: their list and page, and the table of a customer's entities on its page.

An entity (a seat, a workspace) is a sub-customer with its own plans, balances and flags;
its children are the customer's child models with ``entity`` set (``models.Entity``), so
its page reuses the customer page's tables. Read-only, as the whole mirror: written by
syncs only. Browsing needs the ``view_entity`` permission, as customers need theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import F, Prefetch, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from ..models import Customer, Entity, Scope, Subscription
from . import display, names
from .base import ReadOnlyAdmin
from .children import BalanceInline, FlagInline, PurchaseInline, SubscriptionInline
from .filters import DeletedFilter, EntityFeatureFilter, EntityPlanFilter
from .pagination import EstimatedCountPaginator

# A customer page lists this many of its entities, then links to the rest.
CUSTOMER_PAGE_ENTITIES = 20


def own_plans() -> Prefetch:
    """An entity's own subscriptions (``scope="entity"``; the rest are its customer's,
    inherited), with their plan names: one query for a whole page of entities."""
    rows = (Subscription.objects.filter(scope=Scope.ENTITY)
            .order_by("status", "add_on", "plan_id")
            .only("entity_id", "plan_id", "status", "add_on", "quantity")
            .annotate(plan_name=names.plan_name("entity__env")))
    return Prefetch("subscriptions", queryset=rows, to_attr="own_subscriptions")


def plans_text(entity: Entity) -> SafeString | str:
    """An entity's own plans, add-ons quieter, scheduled ones marked."""
    subscriptions = entity.own_subscriptions
    if not subscriptions:
        return display.EMPTY
    return format_html_join(", ", '<span class="autumn-plan{}">{}{}</span>', (
        (" autumn-addon" if s.add_on else "", names.labelled(s.plan_id, s.plan_name),
         f" ({_('scheduled')})" if s.status == Subscription.Status.SCHEDULED else "")
        for s in subscriptions))


def _entities(queryset: QuerySet) -> QuerySet:
    """What every list of entities needs: the feature's name and the customer's id and
    name in the same query (never the raw JSON of either), and their own plans."""
    return (queryset.defer("raw").select_related("customer").defer("customer__raw")
            .annotate(feature_name=names.feature_name("env")).prefetch_related(own_plans()))


class EntityChangeList(ChangeList):
    def get_queryset(self, request: HttpRequest, *args: Any, **kwargs: Any) -> QuerySet:
        return _entities(super().get_queryset(request, *args, **kwargs))


@admin.register(Entity)
class EntityAdmin(ReadOnlyAdmin):
    list_display = ("autumn_id", "display_name", "customer_link", "feature", "plans", "created_at",
                    "synced_at", "deleted")
    list_display_links = ("autumn_id", "display_name")
    list_filter = (EntityFeatureFilter, EntityPlanFilter, DeletedFilter, "env")
    # "=" (exact) for ids; names and emails match in part. Forward foreign keys only, so
    # no entity is listed twice and no DISTINCT is needed.
    search_fields = ("=autumn_id", "name", "=customer__autumn_id", "customer__email")
    search_help_text = _("The entity's Autumn id (exact) or part of its name; its customer's "
                         "Autumn id (exact) or part of its email.")
    # Newest first, as entities.list answers; served by the created_at index.
    ordering = ("-created_at", "-pk")
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    if hasattr(admin, "ShowFacets"):  # Django 5.0+: facet counts are a COUNT per choice
        show_facets = admin.ShowFacets.NEVER
    inlines = (BalanceInline, SubscriptionInline, FlagInline, PurchaseInline)
    fieldsets = (
        (None, {"fields": (("autumn_id", "env"), ("name", "customer_link"), ("feature", "created_at"),
                           ("synced_at", "deleted_at"), "read_at")}),
        (_("JSON"), {"fields": ("raw_json",)}),
    )
    readonly_fields = ("autumn_id", "env", "name", "customer_link", "feature", "created_at",
                       "synced_at", "deleted_at", "read_at", "raw_json")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The page's header facts in one query: the customer joined, the feature named.
        return (super().get_queryset(request).select_related("customer").defer("customer__raw")
                .annotate(feature_name=names.feature_name("env")))

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return EntityChangeList

    @admin.display(description=_("name"), ordering="name")
    def display_name(self, entity: Entity):
        if not entity.name:
            return self.get_empty_value_display()
        return format_html("<bdi>{}</bdi>", entity.name)

    @admin.display(description=_("customer"), ordering="customer__autumn_id")
    def customer_link(self, entity: Entity):
        customer = entity.customer
        url = reverse(f"{self.admin_site.name}:autumn_django_customer_change", args=[customer.pk])
        return display.named_link(url, customer, customer.name)

    @admin.display(description=_("feature"), ordering="feature_id")
    def feature(self, entity: Entity):
        if not entity.feature_id:
            return self.get_empty_value_display()
        return names.labelled(entity.feature_id, entity.feature_name)

    @admin.display(description=_("own plans"))
    def plans(self, entity: Entity):
        return plans_text(entity)

    @admin.display(description=_("deleted"), ordering="deleted_at")
    def deleted(self, entity: Entity):
        return display.deleted_mark(entity)

    @admin.display(description=_("JSON as received"))
    def raw_json(self, entity: Entity):
        return display.folded_json(entity.raw, _("Show the entity object Autumn sent"))


@dataclass(frozen=True)
class CustomerEntities:
    """The entities table of a customer's page: its first rows, and how many there are."""

    rows: list[dict[str, Any]]
    total: int
    view_all_url: str | None

    @property
    def capped(self) -> bool:
        return self.total > len(self.rows)


def customer_entities(admin_site: admin.AdminSite, request: HttpRequest,
                      customer: Customer) -> CustomerEntities:
    """A customer's entities for its page, present ones first, newest first: at most
    ``CUSTOMER_PAGE_ENTITIES`` of them (two queries, a third to count when there are more),
    linked to their pages and to the filtered Entities list for those who may browse them."""
    entity_admin = admin_site._registry.get(Entity)
    can_browse = entity_admin is not None and entity_admin.has_view_permission(request)
    queryset = _entities(Entity.objects.filter(customer=customer)).order_by(
        F("deleted_at").asc(nulls_first=True), "-created_at", "-pk")
    found = list(queryset[: CUSTOMER_PAGE_ENTITIES + 1])
    shown = found[:CUSTOMER_PAGE_ENTITIES]
    total = len(found) if len(found) <= CUSTOMER_PAGE_ENTITIES else (
        Entity.objects.filter(customer=customer).count())
    list_url = None
    if can_browse:
        list_url = (reverse(f"{admin_site.name}:autumn_django_entity_changelist")
                    + f"?customer__id__exact={customer.pk}")
    rows = []
    for entity in shown:
        url = (reverse(f"{admin_site.name}:autumn_django_entity_change", args=[entity.pk])
               if can_browse else None)
        rows.append({
            "entity": display.named_link(url, entity, entity.name),
            "feature": names.labelled(entity.feature_id, entity.feature_name) if entity.feature_id
            else display.EMPTY,
            "plans": plans_text(entity),
            "created": display.local_datetime(entity.created_at),
            "deleted": display.deleted_mark(entity),
        })
    return CustomerEntities(rows=rows, total=total, view_all_url=list_url)
