"""Serializers: Autumn's customer JSON as the mirror last received it.

The JSON is served from ``Customer.raw`` rather than rebuilt from the typed rows. The rows
are parsed from that same JSON in the same transaction, so they hold nothing it does not;
``raw`` also keeps what the rows do not model (metadata, billing controls, processors,
fields newer API versions add) and Autumn's exact spelling of every value (an integer stays
an integer, times stay epoch milliseconds). Front-end code written against
``customers.get`` therefore reads it unchanged.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from ..models import Customer, Entity


class AutumnCustomerSerializer(serializers.BaseSerializer):
    """A customer exactly as Autumn's ``customers.get`` returns it. Read-only."""

    def to_representation(self, instance: Customer) -> dict[str, Any]:
        return instance.raw


class StaffCustomerSerializer(serializers.ModelSerializer):
    """A mirror row for staff: where it stands in the mirror, and Autumn's JSON under
    ``customer`` (beside, not inside, so no mirror field can collide with one of Autumn's)."""

    customer = serializers.JSONField(source="raw", read_only=True)

    class Meta:
        model = Customer
        fields = ("autumn_id", "env", "owner", "synced_at", "deleted_at", "customer")
        read_only_fields = fields


class StaffEntitySerializer(serializers.ModelSerializer):
    """An entity's mirror row for staff, as ``StaffCustomerSerializer`` serves a customer's:
    its customer's Autumn id beside it, and Autumn's JSON under ``entity``."""

    customer_id = serializers.CharField(source="customer.autumn_id", read_only=True)
    entity = serializers.JSONField(source="raw", read_only=True)

    class Meta:
        model = Entity
        fields = ("autumn_id", "env", "customer_id", "feature_id", "synced_at", "deleted_at", "entity")
        read_only_fields = fields
