"""Send the app's signals for what a write changed (after it committed).

Nothing here runs unless a project listens: with no receivers connected, a sync pays
neither the queries nor the comparisons.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.db import transaction

from ..models import Balance, Customer, SyncRun
from ..signals import balance_changed, customer_created, customer_deleted, customer_updated, sync_finished
from .writer import WriteResult

logger = logging.getLogger(__name__)

# The counts ``sync_finished`` carries: the run's fields of those names.
RUN_COUNTS = ("created", "updated", "unchanged", "deleted", "undeleted", "skipped", "reread",
              "entities_created", "entities_updated", "entities_unchanged", "entities_deleted",
              "entities_skipped")

# The balance fields whose change is a change of the balance (breakdown detail is not).
COMPARED_FIELDS = ("granted", "remaining", "usage", "unlimited", "overage_allowed",
                   "max_purchase", "next_reset_at")
Balances = dict[str, dict[str, Any]]


class BalanceChanges:
    """Balances of changed customers as stored before and after a write (same
    transaction), so ``balance_changed`` compares like with like."""

    def __init__(self, using: str) -> None:
        self.using = using
        self.before: dict[int, Balances] = {}
        self.after: dict[int, Balances] = {}

    def before_replace(self, customer_pks: list[int]) -> None:
        self.before.update(stored_balances(customer_pks, self.using))

    def after_write(self, result: WriteResult) -> None:
        self.after = stored_balances(result.updated, self.using)


def balance_recorder(using: str) -> BalanceChanges | None:
    """A recorder for ``MirrorWriter.write(before_replace=...)``; None when nobody listens."""
    return BalanceChanges(using) if balance_changed.has_listeners(Customer) else None


def stored_balances(customer_pks: Sequence[int], using: str) -> dict[int, Balances]:
    """The balances of these customers as stored now."""
    found: dict[int, Balances] = {pk: {} for pk in customer_pks}
    for row in Balance.objects.using(using).filter(customer_id__in=customer_pks).values(
        "customer_id", "feature_id", *COMPARED_FIELDS
    ):
        found[row.pop("customer_id")][row.pop("feature_id")] = row
    return found


def send_write_events_on_commit(result: WriteResult, balances: BalanceChanges | None,
                                using: str) -> None:
    """Send the signals for a write once its transaction commits (at once outside one)."""
    if balances is not None:
        balances.after_write(result)
    transaction.on_commit(lambda: send_write_events(result, balances, using), using=using)


def send_write_events(result: WriteResult, balances: BalanceChanges | None, using: str) -> None:
    listening = (customer_created.has_listeners(Customer), customer_updated.has_listeners(Customer),
                 balances is not None)
    if not any(listening) or not (result.created or result.updated):
        return
    customers = Customer.objects.using(using).in_bulk(result.created + result.updated)
    for pk in result.created:
        customer_created.send(sender=Customer, customer=customers[pk])
    for pk in result.updated:
        customer_updated.send(sender=Customer, customer=customers[pk])
    if balances is not None:
        for pk in result.updated:
            _send_balance_changes(customers[pk], balances.before.get(pk, {}), balances.after.get(pk, {}))


def send_deleted_events(customer_pks: Sequence[int], using: str) -> None:
    if not customer_pks or not customer_deleted.has_listeners(Customer):
        return
    for start in range(0, len(customer_pks), 1000):
        for customer in Customer.objects.using(using).filter(pk__in=customer_pks[start:start + 1000]):
            customer_deleted.send(sender=Customer, customer=customer)


def _send_balance_changes(customer: Customer, previous: Balances, current: Balances) -> None:
    for feature_id in sorted(previous.keys() | current.keys()):
        before, after = previous.get(feature_id), current.get(feature_id)
        if before != after:
            balance_changed.send(sender=Customer, customer=customer, feature_id=feature_id,
                                 previous=before, current=after)


def send_sync_finished_on_commit(run: SyncRun, using: str) -> None:
    """``sync_finished`` for a run that succeeded, once its last write is committed (at
    once outside a transaction). A receiver that raises is logged: the run stays succeeded
    and the caller gets it back."""
    def send() -> None:
        counts = {name: getattr(run, name) for name in RUN_COUNTS}
        for receiver, result in sync_finished.send_robust(sender=SyncRun, run=run, counts=counts,
                                                          using=using):
            if isinstance(result, Exception):
                logger.error("A receiver of sync_finished (run #%s), %s, raised %s: %s. The run "
                             "stays succeeded.", run.pk, getattr(receiver, "__qualname__", receiver),
                             type(result).__name__, result,
                             exc_info=(type(result), result, result.__traceback__))

    transaction.on_commit(send, using=using)
