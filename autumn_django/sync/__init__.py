"""The sync service: the only code that writes mirror rows.

- ``sync_all_customers()``: the whole mirror of the key's env, resumable, one at a time.
- ``sync_customer(customer_id)``: one customer through ``customers.get``.
- ``get_or_create_customer(...)`` / ``update_customer(...)``: call Autumn and store its
  answer at once.

The names are loaded on first use: the sync's prefetch process imports modules of this
package without setting Django up, so importing the package must not load the models.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "SyncProgress": ".full",
    "sync_all_customers": ".full",
    "get_or_create_customer": ".single",
    "store_customer": ".single",
    "sync_customer": ".single",
    "update_customer": ".single",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)
