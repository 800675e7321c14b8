"""Users and their Autumn customers: the id mapping, and linking rows to users."""

from __future__ import annotations

import logging
import re
from typing import Any, TypedDict

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Exists, OuterRef
from django.utils.module_loading import import_string

from .conf import autumn_settings
from .exceptions import AutumnConfigurationError
from .models import Customer

logger = logging.getLogger(__name__)

# What Autumn accepts as a customer id.
CUSTOMER_ID_PATTERN = re.compile(r"^[a-zA-Z0-9_:-]+$")


class CustomerFields(TypedDict):
    customer_id: str
    name: str | None
    email: str | None


def default_customer_fields(user: AbstractBaseUser) -> CustomerFields:
    """``user_<pk>`` as the id: valid for any user (usernames may be emails, hold spaces or
    change; the primary key does none of that), the full name, and the email if valid."""
    full_name = user.get_full_name() if hasattr(user, "get_full_name") else ""
    email = getattr(user, user.get_email_field_name(), None) or None
    if email is not None:
        try:
            validate_email(email)
        except ValidationError:
            email = None  # Autumn answers 400 to an invalid address: better none than none at all
    return {
        "customer_id": f"user_{user.pk}",
        "name": (full_name or user.get_username() or None),
        "email": email,
    }


def customer_fields_for(user: AbstractBaseUser) -> CustomerFields:
    """The project's mapping (``AUTUMN_CUSTOMER_FIELDS``) applied to ``user``, checked."""
    path = autumn_settings.CUSTOMER_FIELDS
    try:
        mapper = import_string(path) if isinstance(path, str) else path
    except ImportError as exc:
        raise AutumnConfigurationError(f"AUTUMN_CUSTOMER_FIELDS {path!r} cannot be imported: {exc}") from None
    fields: Any = mapper(user)
    customer_id = fields.get("customer_id") if isinstance(fields, dict) else None
    if not isinstance(customer_id, str) or not CUSTOMER_ID_PATTERN.match(customer_id):
        raise AutumnConfigurationError(
            f"AUTUMN_CUSTOMER_FIELDS gave customer_id {customer_id!r} for user {user.pk}; "
            "Autumn accepts only letters, digits, '_', ':' and '-'."
        )
    return {"customer_id": customer_id, "name": fields.get("name"), "email": fields.get("email")}


def link_users_to_customers(env: str, *, using: str = DEFAULT_DB_ALIAS) -> int:
    """Link users that have no customer in ``env`` yet to the customer their mapping names
    (signups whose task never ran, users that existed before the app), in database
    ``using`` (users and mirror alike: a foreign key does not cross databases). Returns how
    many."""
    User = get_user_model()
    customers = Customer.objects.using(using)
    unlinked = User._default_manager.using(using).filter(
        ~Exists(Customer.objects.filter(env=env, user=OuterRef("pk")))
    ).order_by("pk")
    ids_by_user: dict[str, int] = {}
    for user in unlinked.iterator(chunk_size=2000):
        try:
            ids_by_user[customer_fields_for(user)["customer_id"]] = user.pk
        except AutumnConfigurationError as exc:
            logger.warning("Not linking user %s: %s", user.pk, exc)
    linked = 0
    ids = list(ids_by_user)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for pk, autumn_id in customers.filter(
            env=env, autumn_id__in=chunk, user__isnull=True
        ).values_list("pk", "autumn_id"):
            linked += customers.filter(pk=pk, user__isnull=True).update(user_id=ids_by_user[autumn_id])
    return linked
