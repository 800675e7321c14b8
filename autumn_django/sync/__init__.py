"""The sync service: the only code that writes mirror rows.

- ``sync_all_customers()``: the whole mirror of the key's env, resumable, one at a time.
- ``sync_customer(customer_id)``: one customer through ``customers.get``.
- ``get_or_create_customer(...)`` / ``update_customer(...)``: call Autumn and store its
  answer at once.
"""

from .full import SyncProgress, sync_all_customers
from .single import get_or_create_customer, store_customer, sync_customer, update_customer

__all__ = [
    "SyncProgress",
    "get_or_create_customer",
    "store_customer",
    "sync_all_customers",
    "sync_customer",
    "update_customer",
]
