"""One customer at a time: refresh from Autumn, or store what Autumn answered to a call
the app made (get_or_create, update, rename), so the mirror follows at once.

Each answer is stored with the time its request was sent, and never over data read
later: of two refreshes of one customer, the one that asked last wins, whichever
finishes first. The answer comes from Autumn's primary store and per-customer cache,
which is trusted for everything but a plan's catalogue fields: those are kept as the
mirror's row has them from the list (``trust``).
"""

from __future__ import annotations

import warnings
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone

from ..client import AutumnClient
from ..exceptions import AutumnResponseError, NotFoundError
from ..models import Customer
from . import events
from .entity_pass import mark_customer_entities_deleted, sync_customer_entities
from .pages.records import RecordError, parse_customer, record_key
from .pages.trust import Catalogue, list_catalogue, with_list_catalogue
from .writer import MirrorWriter, mark_deleted_by_get


def sync_customer(customer_id: str, *, client: AutumnClient | None = None,
                  using: str = DEFAULT_DB_ALIAS, entities: bool = True) -> Customer | None:
    """Refresh one customer through ``customers.get`` (fresher than the list for balances),
    and with ``entities`` its entities through ``entities.list`` filtered by customer.

    Returns the mirror row, or None when Autumn no longer has the customer: its row, if
    any, is then marked deleted (unless it holds data read after this refresh asked), and
    its entities with it.
    """
    client = client or AutumnClient()
    asked_at = timezone.now()
    try:
        read = client.customers.get_read(customer_id)
    except NotFoundError:
        with transaction.atomic(using=using):
            pks = mark_deleted_by_get(client.env, [customer_id], read_at=asked_at, now=timezone.now(),
                                      using=using)
            mark_customer_entities_deleted(client.env, pks, using=using)
            transaction.on_commit(lambda: events.send_deleted_events(pks, using), using=using)
        return None
    customer = store_customer(read.customer, env=client.env, using=using, read_at=read.read_at)
    if entities and customer.autumn_id:
        sync_customer_entities(client, customer.autumn_id, using=using)
    return customer


def get_or_create_customer(customer_id: str | None, *, owner: Any = None,
                           client: AutumnClient | None = None, using: str = DEFAULT_DB_ALIAS,
                           **fields: Any) -> Customer:
    """``customers.get_or_create`` and store the answer, linked to ``owner`` (an instance of
    ``AUTUMN_CUSTOMER_OWNER_MODEL``) if given."""
    owner = _owner_or_user(owner, fields.pop("user", None))  # never sent to Autumn
    client = client or AutumnClient()
    read = client.customers.get_or_create_read(customer_id, **fields)
    return store_customer(read.customer, env=client.env, owner=owner, using=using, read_at=read.read_at)


def update_customer(customer_id: str, *, client: AutumnClient | None = None,
                    using: str = DEFAULT_DB_ALIAS, **fields: Any) -> Customer:
    """``customers.update`` and store the answer. A rename (``new_customer_id``) keeps the
    mirror row, and with it the link to the owner."""
    client = client or AutumnClient()
    read = client.customers.update_read(customer_id, **fields)
    rename_from = customer_id if fields.get("new_customer_id") else None
    return store_customer(read.customer, env=client.env, rename_from=rename_from, using=using,
                          read_at=read.read_at)


def store_customer(data: Any, *, env: str, owner: Any = None,
                   rename_from: str | None = None, using: str = DEFAULT_DB_ALIAS,
                   read_at: datetime | None = None, user: Any = None) -> Customer:
    """Write one customer object as Autumn answered it to a single-customer call (get,
    get_or_create, update) into the mirror, and return its row.

    ``read_at`` is when that call's request was sent (default: now). A row holding data
    read later is left as it is, and returned. The plan fields the list is trusted for
    are stored as the mirror's row has them (``trust``).
    """
    owner = _owner_or_user(owner, user)
    if isinstance(data, dict):
        data = with_list_catalogue(data, _stored_catalogue(data, env, rename_from, using))
    try:
        record = parse_customer(data, read_at=read_at or timezone.now(), read_via="get")
    except RecordError as exc:
        raise AutumnResponseError(
            f"Autumn sent a customer the mirror cannot store: {exc.describe()}"
        ) from None
    customers = Customer.objects.using(using)
    balances = events.balance_recorder(using)
    with transaction.atomic(using=using):
        renamed = rename_from and record.autumn_id and rename_from != record.autumn_id
        if renamed and not customers.filter(env=env, autumn_id=record.autumn_id).exists():
            customers.filter(env=env, autumn_id=rename_from).update(autumn_id=record.autumn_id)
        result = MirrorWriter(env, using).write([record], now=timezone.now(),
                                                before_replace=balances and balances.before_replace)
        pk = result.pk_by_key[record.key]
        if owner is not None:
            # An owner has one customer per env: a new link replaces an old one.
            customers.filter(env=env, owner=owner).exclude(pk=pk).update(owner=None)
            customers.filter(pk=pk).update(owner=owner)
        events.send_write_events_on_commit(result, balances, using)
    return customers.get(pk=pk)


def _owner_or_user(owner: Any, user: Any) -> Any:
    """``user=``, the keyword before owners, still links (with a DeprecationWarning)."""
    if user is None:
        return owner
    warnings.warn("user= is now owner= (AUTUMN_CUSTOMER_OWNER_MODEL)", DeprecationWarning, stacklevel=3)
    return owner if owner is not None else user


def _stored_catalogue(data: dict, env: str, rename_from: str | None, using: str) -> Catalogue:
    """The catalogue fields of the mirror's row of this customer (``trust.list_catalogue``)."""
    key = record_key(data)
    if key is None:
        return {}
    rows = Customer.objects.using(using).filter(env=env)
    if key[0] == "email":
        rows = rows.filter(autumn_id__isnull=True, email=key[1])
    else:
        rows = rows.filter(autumn_id__in=[key[1], rename_from] if rename_from else [key[1]])
    raws = list(rows.values_list("autumn_id", "raw"))
    raws.sort(key=lambda row: row[0] != key[1])  # its own row before the one it was renamed from
    return list_catalogue(raws[0][1]) if raws else {}
