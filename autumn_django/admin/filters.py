"""List filters that stay cheap at 100,000 customers.

Choices come from DISTINCT over an indexed column of a child table (a handful of plan or
feature ids), never from a foreign-key dropdown of every customer. Conditions on children
are EXISTS subqueries: a customer with two matching subscriptions is still listed once,
without DISTINCT over the whole list.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..models import Balance, Entity, Scope, Subscription
from . import names

YES_NO = (("yes", _("Yes")), ("no", _("No")))


def _subscriptions(**conditions) -> Exists:
    return Exists(Subscription.objects.filter(customer=OuterRef("pk"), **conditions))


def _distinct_choices(model, field: str, labels: dict[str, str] | None = None,
                      **conditions) -> list[tuple[str, str]]:
    """Every value of an indexed column, as choices: served by its index. ``labels``
    (catalogue names by id) label the ids they name."""
    values = (model.objects.filter(**conditions).order_by(field).values_list(field, flat=True)
              .distinct())
    return [(value, names.choice_label(value, labels or {})) for value in values if value is not None]


class _YesNoFilter(admin.SimpleListFilter):
    def lookups(self, request, model_admin):
        return YES_NO


class PlanFilter(admin.SimpleListFilter):
    """Customers with an active subscription of their own (``scope="customer"``) to a plan:
    at API 2.3 a customer's rows also hold its entities' plans, and a seat's plan does not
    make the customer a subscriber of it."""

    title = _("active plan")
    parameter_name = "plan"

    def lookups(self, request, model_admin):
        # The few plan ids there are, not the customers.
        return _distinct_choices(Subscription, "plan_id", names.plan_names(), scope=Scope.CUSTOMER)

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() is None:
            return queryset
        return queryset.filter(_subscriptions(plan_id=self.value(), status=Subscription.Status.ACTIVE,
                                              scope=Scope.CUSTOMER))


class StatusFilter(admin.SimpleListFilter):
    """Where a customer stands with its subscriptions."""

    title = _("subscription status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return (
            ("active", _("Has an active plan")),
            ("trialing", _("Trialing")),
            ("canceling", _("Canceled, runs to period end")),
            ("scheduled", _("Has a scheduled change")),
            ("none", _("No active plan")),
        )

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        active = Subscription.Status.ACTIVE
        conditions = {
            "active": _subscriptions(status=active),
            "trialing": _subscriptions(status=active, trial_ends_at__gt=timezone.now()),
            "canceling": _subscriptions(status=active, canceled_at__isnull=False),
            "scheduled": _subscriptions(status=Subscription.Status.SCHEDULED),
            "none": ~_subscriptions(status=active),
        }
        condition = conditions.get(self.value())
        return queryset if condition is None else queryset.filter(condition)


class PastDueFilter(_YesNoFilter):
    title = _("past due")
    parameter_name = "past_due"

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(_subscriptions(past_due=True))
        if self.value() == "no":
            return queryset.filter(~_subscriptions(past_due=True))
        return queryset


class DeletedFilter(_YesNoFilter):
    title = _("gone from Autumn")
    parameter_name = "deleted"

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() in ("yes", "no"):
            return queryset.filter(deleted_at__isnull=self.value() == "no")
        return queryset


class FeatureFilter(admin.SimpleListFilter):
    title = _("feature")
    parameter_name = "feature"

    def lookups(self, request, model_admin):
        return _distinct_choices(Balance, "feature_id", names.feature_names())

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        return queryset if self.value() is None else queryset.filter(feature_id=self.value())


EXHAUSTED = Q(unlimited=False, remaining__lte=0)


class ExhaustedFilter(_YesNoFilter):
    """Balances with nothing left (unlimited ones never run out, and one whose reset time
    has passed is back to its grant: Autumn resets it at the next customers.get)."""

    title = _("exhausted")
    parameter_name = "exhausted"

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        exhausted = EXHAUSTED & ~Q(next_reset_at__lte=timezone.now())
        if self.value() == "yes":
            return queryset.filter(exhausted)
        if self.value() == "no":
            return queryset.exclude(exhausted)
        return queryset


class EntityPlanFilter(admin.SimpleListFilter):
    """Entities with an active subscription to a plan, their own or inherited from their
    customer, as ``entities.list``'s ``plans`` filter answers (Autumn's server:
    apps/docs/mintlify/api-reference/entities/listEntities.mdx, "plans")."""

    title = _("active plan")
    parameter_name = "plan"

    def lookups(self, request, model_admin):
        return _distinct_choices(Subscription, "plan_id", names.plan_names(), entity__isnull=False,
                                 status=Subscription.Status.ACTIVE)

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() is None:
            return queryset
        return queryset.filter(Exists(Subscription.objects.filter(
            entity=OuterRef("pk"), plan_id=self.value(), status=Subscription.Status.ACTIVE)))


class EntityFeatureFilter(admin.SimpleListFilter):
    """Entities counting against a feature (seats, workspaces)."""

    title = _("feature")
    parameter_name = "feature"

    def lookups(self, request, model_admin):
        return _distinct_choices(Entity, "feature_id", names.feature_names())

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        return queryset if self.value() is None else queryset.filter(feature_id=self.value())
