"""One customer at a time: refresh from Autumn, or store what Autumn answered to a call
the app made (get_or_create, update, rename), so the mirror follows at once."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone

from ..client import AutumnClient
from ..exceptions import AutumnResponseError, NotFoundError
from ..models import Customer
from . import events
from .records import RecordError, parse_customer
from .writer import MirrorWriter


def sync_customer(customer_id: str, *, client: AutumnClient | None = None,
                  using: str = DEFAULT_DB_ALIAS) -> Customer | None:
    """Refresh one customer through ``customers.get`` (fresher than the list for balances).

    Returns the mirror row, or None when Autumn no longer has the customer: its row, if
    any, is then marked deleted.
    """
    client = client or AutumnClient()
    try:
        data = client.customers.get(customer_id)
    except NotFoundError:
        present = Customer.objects.using(using).filter(
            env=client.env, autumn_id=customer_id, deleted_at__isnull=True)
        pks = list(present.values_list("pk", flat=True))
        with transaction.atomic(using=using):
            present.filter(pk__in=pks).update(deleted_at=timezone.now())
            transaction.on_commit(lambda: events.send_deleted_events(pks, using), using=using)
        return None
    return store_customer(data, env=client.env, using=using)


def get_or_create_customer(customer_id: str | None, *, user: AbstractBaseUser | None = None,
                           client: AutumnClient | None = None, using: str = DEFAULT_DB_ALIAS,
                           **fields: Any) -> Customer:
    """``customers.get_or_create`` and store the answer, linked to ``user`` if given."""
    client = client or AutumnClient()
    data = client.customers.get_or_create(customer_id, **fields)
    return store_customer(data, env=client.env, user=user, using=using)


def update_customer(customer_id: str, *, client: AutumnClient | None = None,
                    using: str = DEFAULT_DB_ALIAS, **fields: Any) -> Customer:
    """``customers.update`` and store the answer. A rename (``new_customer_id``) keeps the
    mirror row, and with it the link to the user."""
    client = client or AutumnClient()
    data = client.customers.update(customer_id, **fields)
    rename_from = customer_id if fields.get("new_customer_id") else None
    return store_customer(data, env=client.env, rename_from=rename_from, using=using)


def store_customer(data: Any, *, env: str, user: AbstractBaseUser | None = None,
                   rename_from: str | None = None, using: str = DEFAULT_DB_ALIAS) -> Customer:
    """Write one customer object as Autumn sent it into the mirror and return its row."""
    try:
        record = parse_customer(data)
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
        if user is not None:
            # A user has one customer per env: a new link replaces an old one.
            customers.filter(env=env, user=user).exclude(pk=pk).update(user=None)
            customers.filter(pk=pk).update(user=user)
        events.send_write_events_on_commit(result, balances, using)
    return customers.get(pk=pk)
