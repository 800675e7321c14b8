"""The Django admin for the mirror.

- ``customers``: the customer list and page (children, balances with usage bars, links,
  its seat pools and a table of its entities).
- ``entities``: the entity list and page (an entity's page is like a customer's).
- ``children``: the read-only tables of a customer's or an entity's children.
- ``catalogue``: the org's features and plans; ``names`` puts their names beside ids.
- ``balances``: balances across customers and entities.
- ``sync_runs``: the sync runs and the "Sync now" button.
- ``actions``: "Refresh from Autumn" and "Sync now", through ``autumn_django.dispatch``.
- ``filters``, ``pagination``, ``display``: cheap list filters, a count that does not scan
  a large table, and how values are shown.
- Webhook events have their admin beside their view, in ``autumn_django.webhooks.admin``.

The mirror is written by syncs only, so its rows cannot be added, deleted or edited here
(a customer's link to its owner, a user by default, is the exception). Browsing needs Django's view (or
change) permission on each model; syncing needs ``autumn_django.sync_customers``.
"""

from ..webhooks.admin import WebhookEventAdmin
from .balances import BalanceAdmin
from .catalogue import FeatureAdmin, PlanAdmin
from .customers import CustomerAdmin
from .entities import EntityAdmin
from .sync_runs import SyncRunAdmin

__all__ = ["BalanceAdmin", "CustomerAdmin", "EntityAdmin", "FeatureAdmin", "PlanAdmin", "SyncRunAdmin",
           "WebhookEventAdmin"]
