"""Signals the app sends when the mirror changes, so a project can react without polling.

All are sent with ``sender=Customer`` after the change is committed, once per real change:
a re-sync that finds a customer unchanged sends nothing.

- ``customer_created(customer)``: a customer appeared in the mirror.
- ``customer_updated(customer)``: its data changed (an undeleted customer counts).
- ``customer_deleted(customer)``: Autumn no longer has it; the row got ``deleted_at``.
- ``balance_changed(customer, feature_id, previous, current)``: one balance of an existing
  customer changed; ``previous``/``current`` are dicts of the balance's fields (granted,
  remaining, usage, unlimited, overage_allowed, max_purchase, next_reset_at), ``None``
  when the balance appeared or went away. Not sent for a new customer's balances:
  ``customer_created`` carries those.

    @receiver(balance_changed)
    def warn_when_exhausted(sender, customer, feature_id, previous, current, **kwargs):
        ran_out = current and not current["unlimited"] and current["remaining"] <= 0
        if ran_out and (previous or {}).get("remaining", 1) > 0:
            ...
"""

from django.dispatch import Signal

customer_created = Signal()
customer_updated = Signal()
customer_deleted = Signal()
balance_changed = Signal()
