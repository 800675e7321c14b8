"""Which of Autumn's two answers the mirror trusts, field by field, when they disagree.

Autumn answers for a customer in two ways (autumn-api.md, "Consistency"):
- ``customers.list`` reads a replica of Autumn's database, which can lag behind the
  primary (usually well under a second, more under load);
- ``customers.get`` (and ``get_or_create``, ``update``) answers from a per-customer cache
  that usage tracking and billing changes update at once, but that a catalogue change (a
  plan's ``auto_enable``, say) may not reach for days.

Tried against a local build of Autumn's server, the two answers for a customer on a plan
differed in ``subscriptions[].auto_enable`` for days; a mirror storing whichever it read
last rewrote that customer back and forth on every sync and every refresh. The decision:

- **Catalogue fields: the list.** What a plan is, copied into each subscription to it:
  ``subscriptions[].auto_enable`` and ``subscriptions[].add_on`` (``LIST_TRUSTED``). An
  answer of ``customers.get`` is stored with these fields as the list last showed them
  for the same plan: the page's own row when a sync reads a customer again with ``get``
  (at the product cap, or below), the mirror's row when one customer is refreshed. A
  plan the list has not shown keeps ``get``'s values until it does.
- **Everything else: the later read**, balances and billing state above all (``get``'s
  cache has them first). Data read earlier never overwrites data read later (the
  writer's upsert enforces it), and a list row that disagrees with a ``get`` answer read
  less than ``AUTUMN_SYNC_REPLICA_LAG_SECONDS`` before its page was requested is not
  written either: the replica may not have caught up, so the sync reads that customer
  again with ``customers.get`` (``SyncRun.reread``).

So a customer nobody changed has one state, whichever call read it last, and neither a
sync nor a refresh finds anything to write, count or signal.
"""

from __future__ import annotations

from typing import Any

from ... import jsonlib
from .copytext import unescape
from .records import CUSTOMER_FIELDS, CustomerRecord

# Per list of a customer's items: the fields the list is trusted for.
LIST_TRUSTED = {"subscriptions": ("auto_enable", "add_on")}

# A customer's catalogue fields as the list showed them: {plan_id: {field: value}}.
Catalogue = dict[str, dict[str, Any]]

_FIELDS = LIST_TRUSTED["subscriptions"]
_RAW_AT = len(CUSTOMER_FIELDS)  # the raw JSON's place in a customer's COPY line


def list_catalogue(customer: Any) -> Catalogue:
    """The catalogue fields of each plan among ``customer``'s subscriptions (a list row,
    or the mirror's ``raw`` of a customer)."""
    found: Catalogue = {}
    subscriptions = customer.get("subscriptions") if isinstance(customer, dict) else None
    for item in subscriptions if isinstance(subscriptions, list) else ():
        if isinstance(item, dict) and isinstance(item.get("plan_id"), str):
            fields = {name: item[name] for name in _FIELDS if name in item}
            if fields:
                found.setdefault(item["plan_id"], fields)
    return found


def record_catalogue(record: CustomerRecord) -> Catalogue:
    """``list_catalogue`` of the JSON a record was parsed from."""
    if record.raw_json:
        return list_catalogue(jsonlib.loads(record.raw_json))
    if record.customer_text is not None:  # the JSON is in the COPY line (copytext)
        return list_catalogue(jsonlib.loads(unescape(record.customer_text.split("\t")[_RAW_AT])))
    return {}


def with_list_catalogue(answer: dict, catalogue: Catalogue) -> dict:
    """``answer`` (of ``customers.get``) with the catalogue fields of each subscription
    whose plan ``catalogue`` knows, as the list showed them. ``answer`` itself when
    nothing differs; it is never changed in place."""
    subscriptions = answer.get("subscriptions") if catalogue else None
    if not isinstance(subscriptions, list):
        return answer
    merged: list | None = None
    for n, item in enumerate(subscriptions):
        listed = catalogue.get(item.get("plan_id")) if isinstance(item, dict) else None
        if listed and any(name not in item or item[name] != value for name, value in listed.items()):
            if merged is None:
                merged = list(subscriptions)
            merged[n] = {**item, **listed}
    return answer if merged is None else {**answer, "subscriptions": merged}
