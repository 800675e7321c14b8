"""The API's views. Authentication is the project's (``DEFAULT_AUTHENTICATION_CLASSES``);
each view sets the permission it cannot do without, replacing
``DEFAULT_PERMISSION_CLASSES`` as any DRF view that names its own does (subclass to add more).
"""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import generics
from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAdminUser, IsAuthenticated

from ..features import mirror_env
from ..models import Customer
from ..owners import owner_from_request
from .filters import CustomerFilterBackend
from .serializers import AutumnCustomerSerializer, StaffCustomerSerializer


class MeView(generics.RetrieveAPIView):
    """The customer of the request's owner (``AUTUMN_OWNER_FROM_REQUEST``: by default the
    signed-in user), as Autumn's ``customers.get`` returns it.

    There is no id to pass, so no way to ask for someone else's."""

    permission_classes = [IsAuthenticated]
    serializer_class = AutumnCustomerSerializer

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
