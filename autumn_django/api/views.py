"""The API's views. Authentication is the project's (``DEFAULT_AUTHENTICATION_CLASSES``);
each view sets the permission it cannot do without, replacing
``DEFAULT_PERMISSION_CLASSES`` as any DRF view that names its own does (subclass to add more).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import generics
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.response import Response

from ..features import mirror_env
from ..models import Customer, Entity
from ..owners import owner_from_request
from .filters import CustomerFilterBackend, EntityFilterBackend
from .serializers import AutumnCustomerSerializer, StaffCustomerSerializer, StaffEntitySerializer

# What ``me/?expand=`` can add to the customer.
EXPANSIONS = ("entities",)


class MeView(generics.RetrieveAPIView):
    """The customer of the request's owner (``AUTUMN_OWNER_FROM_REQUEST``: by default the
    signed-in user), as Autumn's ``customers.get`` returns it.

    There is no id to pass, so no way to ask for someone else's.

    ``?expand=entities`` adds the customer's entities that Autumn still has, under
    ``entities``, each as ``entities.get`` returns it (its own plans, then the customer's it
    inherits, its balances and flags), newest first as ``entities.list`` lists them. Autumn's
    own ``expand`` gives bare entities; this one gives them whole, as the mirror has them.
    One query more, however many entities."""

    permission_classes = [IsAuthenticated]
    serializer_class = AutumnCustomerSerializer

    def expansions(self) -> set[str]:
        """``expand`` as Autumn's SDKs send it: repeated, or comma-separated."""
        asked = {part.strip() for value in self.request.query_params.getlist("expand")
                 for part in value.split(",") if part.strip()}
        unknown = sorted(asked - set(EXPANSIONS))
        if unknown:
            raise ValidationError({"expand": f"Unknown: {', '.join(unknown)}. Expected one of "
                                             f"{', '.join(EXPANSIONS)}."})
        return asked

    def retrieve(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        expand = self.expansions()  # a bad value is a 400 before anything is read
        customer = self.get_object()
        body = self.get_serializer(customer).data
        if "entities" in expand:
            entities = (Entity.objects.filter(customer=customer, deleted_at__isnull=True)
                        .order_by("-created_at", "-pk").values_list("raw", flat=True))
            body = {**body, "entities": list(entities)}
        return Response(body)

    def get_object(self) -> Customer:
        owner = owner_from_request(self.request)
        customer = None if owner is None else (
            Customer.objects.present()
            .filter(env=mirror_env(), owner=owner)
            .only("raw")
            .first()
        )
        if customer is None:
            raise NotFound("No Autumn customer is linked to your account yet.",
                           code="customer_not_found")
        self.check_object_permissions(self.request, customer)
        return customer


class CustomerPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class StaffCustomerMixin:
    """Staff-only access to the mirror of the key's environment."""

    permission_classes = [IsAdminUser]
    serializer_class = StaffCustomerSerializer

    def get_queryset(self) -> QuerySet:
        return Customer.objects.filter(env=mirror_env())


class CustomerListView(StaffCustomerMixin, generics.ListAPIView):
    """Present customers, newest first, filtered (see ``filters``). Two queries a page
    (count and rows), whatever the page size: everything served is on the customer row."""

    pagination_class = CustomerPagination
    filter_backends = [CustomerFilterBackend]

    def get_queryset(self) -> QuerySet:
        return super().get_queryset().order_by("-created_at", "-pk")


class CustomerDetailView(StaffCustomerMixin, generics.RetrieveAPIView):
    """One customer by its Autumn id, deleted ones included (``deleted_at`` says so)."""

    lookup_field = "autumn_id"


class EntityListView(generics.ListAPIView):
    """Staff only: the entities of the key's environment that Autumn still has, newest
    first (as ``entities.list``), filtered by ``customer_id`` (the customer's Autumn id)
    and ``feature_id``; ``deleted=true`` lists the ones it no longer has. Paginated as the
    customer list. Two queries a page (count and rows), whatever the page size."""

    permission_classes = [IsAdminUser]
    serializer_class = StaffEntitySerializer
    pagination_class = CustomerPagination
    filter_backends = [EntityFilterBackend]

    def get_queryset(self) -> QuerySet:
        # The customer's id comes joined, without its raw JSON.
        return (Entity.objects.filter(env=mirror_env()).select_related("customer")
                .only("autumn_id", "env", "feature_id", "synced_at", "deleted_at", "raw",
                      "customer__autumn_id")
                .order_by("-created_at", "-pk"))
