"""Query-string filters for the staff customer list, as a DRF filter backend.

They follow ``customers.list``'s own filters where Autumn has one:

- ``plan`` (repeatable): a subscription or purchase of any of these plans;
- ``status`` (``active`` | ``scheduled``): a subscription in that status;
- ``feature``: a balance or a flag for this feature;
- ``search``: a substring of the id, name or email (case-insensitive);
- ``deleted``: ``true`` lists customers Autumn no longer has instead of present ones.

Conditions on child rows are ``EXISTS`` subqueries, not joins: a customer with three
matching subscriptions is still one row, and the page stays one query.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.filters import BaseFilterBackend

from ..models import Balance, Flag, Purchase, Subscription

TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


class CustomerFilterBackend(BaseFilterBackend):
    def filter_queryset(self, request: Any, queryset: QuerySet, view: Any) -> QuerySet:
        params = request.query_params
        deleted = params.get("deleted", "").lower()
        if deleted not in TRUE + FALSE:
            raise ValidationError({"deleted": "Expected true or false."})
        queryset = queryset.filter(deleted_at__isnull=deleted not in TRUE)

        plans = [plan for plan in params.getlist("plan") if plan]
        if plans:
            queryset = queryset.filter(
                Exists(Subscription.objects.filter(customer=OuterRef("pk"), plan_id__in=plans))
                | Exists(Purchase.objects.filter(customer=OuterRef("pk"), plan_id__in=plans))
            )
        status = params.get("status")
        if status:
            if status not in Subscription.Status.values:
                raise ValidationError({"status": f"Expected one of {', '.join(Subscription.Status.values)}."})
            queryset = queryset.filter(
                Exists(Subscription.objects.filter(customer=OuterRef("pk"), status=status))
            )
        feature = params.get("feature")
        if feature:
            queryset = queryset.filter(
                Exists(Balance.objects.filter(customer=OuterRef("pk"), feature_id=feature))
                | Exists(Flag.objects.filter(customer=OuterRef("pk"), feature_id=feature))
            )
        search = params.get("search", "").strip()
        if search:
            queryset = queryset.filter(
                Q(autumn_id__icontains=search) | Q(name__icontains=search) | Q(email__icontains=search)
            )
        return queryset

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        def param(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
            return {"name": name, "required": False, "in": "query", "description": description,
                    "schema": schema}

        return [
            param("plan", "Has a subscription or purchase of this plan (repeatable).",
                  {"type": "array", "items": {"type": "string"}}),
            param("status", "Has a subscription in this status.",
                  {"type": "string", "enum": list(Subscription.Status.values)}),
            param("feature", "Has a balance or flag for this feature.", {"type": "string"}),
            param("search", "Substring of the id, name or email.", {"type": "string"}),
            param("deleted", "List customers Autumn no longer has.", {"type": "boolean"}),
        ]


class EntityFilterBackend(BaseFilterBackend):
    """The staff entity list's filters: ``customer_id`` (the customer's Autumn id, as
    ``entities.list`` takes it), ``feature_id``, and ``deleted`` as for customers."""

    def filter_queryset(self, request: Any, queryset: QuerySet, view: Any) -> QuerySet:
        params = request.query_params
        deleted = params.get("deleted", "").lower()
        if deleted not in TRUE + FALSE:
            raise ValidationError({"deleted": "Expected true or false."})
        queryset = queryset.filter(deleted_at__isnull=deleted not in TRUE)
        if params.get("customer_id"):
            queryset = queryset.filter(customer__autumn_id=params["customer_id"])
        if params.get("feature_id"):
            queryset = queryset.filter(feature_id=params["feature_id"])
        return queryset

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {"name": name, "required": False, "in": "query", "description": description,
             "schema": schema}
            for name, description, schema in (
                ("customer_id", "The customer's Autumn id.", {"type": "string"}),
                ("feature_id", "The feature the entity counts against.", {"type": "string"}),
                ("deleted", "List entities Autumn no longer has.", {"type": "boolean"}),
            )
        ]
