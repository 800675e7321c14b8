"""Send the app's signals for what a write changed (after it committed).

Nothing here runs unless a project listens: with no receivers connected, a sync pays
neither the queries nor the comparisons.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import transaction

from ..models import Balance, Customer
from ..signals import balance_changed, customer_created, customer_deleted, customer_updated
from .records import BALANCE_FIELDS, CustomerRecord
from .writer import WriteResult

# The balance fields whose change is a change of the balance (breakdown detail is not).
COMPARED_FIELDS = ("granted", "remaining", "usage", "unlimited", "overage_allowed",
                   "max_purchase", "next_reset_at")
Balances = dict[str, dict[str, Any]]


def balance_recorder(using: str) -> tuple[dict[int, Balances] | None, Any]:
    """``(previous, before_replace)`` for ``MirrorWriter.write``: the hook fills ``previous``
    with changed customers' balances as they were. Both None when nobody listens."""
    if not balance_changed.has_listeners(Customer):
        return None, None
    previous: dict[int, Balances] = {}
    return previous, lambda pks: previous.update(stored_balances(pks, using))


def stored_balances(customer_pks: Sequence[int], using: str) -> dict[int, Balances]:
    """The balances of these customers as stored now (before a write replaces them)."""
    found: dict[int, Balances] = {pk: {} for pk in customer_pks}
    for row in Balance.objects.using(using).filter(customer_id__in=customer_pks).values(
        "customer_id", "feature_id", *COMPARED_FIELDS
    ):
        found[row.pop("customer_id")][row.pop("feature_id")] = row
    return found


def send_write_events_on_commit(result: WriteResult, records: Iterable[CustomerRecord],
                                previous_balances: dict[int, Balances] | None, using: str) -> None:
    """Send the signals for a write once its transaction commits (at once outside one)."""
    records = list(records)
    transaction.on_commit(lambda: send_write_events(result, records, previous_balances, using),
                          using=using)


def send_write_events(result: WriteResult, records: Iterable[CustomerRecord],
                      previous_balances: dict[int, Balances] | None, using: str) -> None:
    listening = (customer_created.has_listeners(Customer), customer_updated.has_listeners(Customer),
                 previous_balances is not None)
    if not any(listening) or not (result.created or result.updated):
        return
    customers = Customer.objects.using(using).in_bulk(result.created + result.updated)
    for pk in result.created:
        customer_created.send(sender=Customer, customer=customers[pk])
    for pk in result.updated:
        customer_updated.send(sender=Customer, customer=customers[pk])
    if previous_balances is None:
        return
    by_pk = {result.pk_by_key[record.key]: record for record in records}
    for pk in result.updated:
        current = {row[0]: dict(zip(BALANCE_FIELDS, row, strict=True)) for row in by_pk[pk].balances}
        _send_balance_changes(customers[pk], previous_balances.get(pk, {}), current)


def send_deleted_events(customer_pks: Sequence[int], using: str) -> None:
    if not customer_pks or not customer_deleted.has_listeners(Customer):
        return
    for start in range(0, len(customer_pks), 1000):
        for customer in Customer.objects.using(using).filter(pk__in=customer_pks[start:start + 1000]):
            customer_deleted.send(sender=Customer, customer=customer)


def _send_balance_changes(customer: Customer, previous: Balances, current: Balances) -> None:
    for feature_id in sorted(previous.keys() | current.keys()):
        before = previous.get(feature_id)
        after = None
        if feature_id in current:
            after = {name: current[feature_id][name] for name in COMPARED_FIELDS}
        if before != after:
            balance_changed.send(sender=Customer, customer=customer, feature_id=feature_id,
                                 previous=before, current=after)
