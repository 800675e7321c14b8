"""The mirror: Autumn customers and their entities, with their subscriptions, purchases,
balances and flags; customers' seat pools (licenses); the org's features and plans.

Rows are written by the sync only (``autumn_django.sync``); these models are for reading,
the admin and the schema. Every customer keeps the JSON exactly as Autumn last sent it in
``raw``, so fields this app does not model yet are never lost.
"""

from .catalogue import CatalogueQuerySet, Feature, Plan
from .children import Balance, Flag, License, Purchase, Subscription
from .customers import Customer, CustomerQuerySet, Entity, Env, Scope
from .runs import PageMemoRow, SyncedEntityPage, SyncedPage, SyncRun, SyncSighting, SyncWindow
from .webhooks import WebhookEvent

__all__ = [
    "Balance",
    "CatalogueQuerySet",
    "Customer",
    "CustomerQuerySet",
    "Entity",
    "Env",
    "Feature",
    "Flag",
    "License",
    "PageMemoRow",
    "Plan",
    "Purchase",
    "Scope",
    "Subscription",
    "SyncRun",
    "SyncSighting",
    "SyncWindow",
    "SyncedEntityPage",
    "SyncedPage",
    "WebhookEvent",
]
