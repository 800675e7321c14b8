"""Owners and their Autumn customers: who a customer is (``AUTUMN_CUSTOMER_OWNER_MODEL``,
by default the user model), the id mapping, which owner a request acts for, and linking
mirror rows to owners."""

from __future__ import annotations

import logging
import re
from typing import Any, TypedDict

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Exists, Model, OuterRef
from django.http import HttpRequest
from django.utils.module_loading import import_string

from .conf import autumn_settings, get_owner_model
from .exceptions import AutumnConfigurationError
from .models import Customer

logger = logging.getLogger(__name__)

# What Autumn accepts as a customer id.
CUSTOMER_ID_PATTERN = re.compile(r"^[a-zA-Z0-9_:-]+$")


class CustomerFields(TypedDict):
    customer_id: str
    name: str | None
    email: str | None


def owner_is_user_model() -> bool:
    """Whether customers belong to users (the default), not to another model."""
    return get_owner_model()._meta.label_lower == settings.AUTH_USER_MODEL.lower()


def default_customer_fields(owner: Any) -> CustomerFields:
    """A user: ``user_<pk>`` as the id (valid for any user: usernames may be emails, hold
    spaces or change; the primary key does none of that), the full name, and the email if
    valid. Any other owner: ``<model_name>_<pk>`` (``organization_7``), its ``name`` (else
    its ``str()``), and its ``email`` attribute if it has a valid one."""
    if isinstance(owner, AbstractBaseUser):
        full_name = owner.get_full_name() if hasattr(owner, "get_full_name") else ""
        return {
            "customer_id": f"user_{owner.pk}",
            "name": (full_name or owner.get_username() or None),
            "email": _valid_email(getattr(owner, owner.get_email_field_name(), None)),
        }
    name = getattr(owner, "name", None)
    return {
        "customer_id": f"{owner._meta.model_name}_{owner.pk}",
        "name": (name if isinstance(name, str) and name else str(owner)) or None,
        "email": _valid_email(getattr(owner, "email", None)),
    }


def _valid_email(email: Any) -> str | None:
    if not isinstance(email, str) or not email:
        return None
    try:
        validate_email(email)
    except ValidationError:
        return None  # Autumn answers 400 to an invalid address: better none than none at all
    return email


def customer_fields_for(owner: Any) -> CustomerFields:
    """The project's mapping (``AUTUMN_CUSTOMER_FIELDS``) applied to ``owner``, checked."""
    fields: Any = _setting_callable("CUSTOMER_FIELDS")(owner)
    customer_id = fields.get("customer_id") if isinstance(fields, dict) else None
    if not isinstance(customer_id, str) or not CUSTOMER_ID_PATTERN.match(customer_id):
        raise AutumnConfigurationError(
            f"AUTUMN_CUSTOMER_FIELDS gave customer_id {customer_id!r} for "
            f"{owner._meta.model_name} {owner.pk}; Autumn accepts only letters, digits, '_', ':' and '-'."
        )
    return {"customer_id": customer_id, "name": fields.get("name"), "email": fields.get("email")}


# -- requests --------------------------------------------------------------------------------


def default_owner_from_request(request: Any) -> Any:
    """The signed-in user when customers belong to users; None otherwise (a project whose
    owner is another model sets ``AUTUMN_OWNER_FROM_REQUEST``: check W005 says so)."""
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False) or not owner_is_user_model():
        return None
    return user


def owner_from_request(request: Any) -> Any:
    """The owner ``request`` acts for, as ``AUTUMN_OWNER_FROM_REQUEST`` says (None: none)."""
    return _setting_callable("OWNER_FROM_REQUEST")(request)


def _setting_callable(name: str) -> Any:
    """The callable the dotted-path setting ``AUTUMN_<name>`` names (or holds)."""
    path = getattr(autumn_settings, name)
    try:
        return import_string(path) if isinstance(path, str) else path
    except ImportError as exc:
        raise AutumnConfigurationError(f"AUTUMN_{name} {path!r} cannot be imported: {exc}") from None


def is_request(value: Any) -> bool:
    """Django's request, or DRF's (which wraps one and is not a subclass)."""
    return isinstance(value, HttpRequest) or isinstance(getattr(value, "_request", None), HttpRequest)


def customer_lookup(subject: Any) -> dict[str, Any] | None:
    """What to filter ``Customer`` rows by to find ``subject``'s: a request (its owner), an
    owner, or a ``Customer`` itself. None when there is no owner to look for (an anonymous
    user, a request without one). A model instance of another kind is a mistake: TypeError."""
    if subject is None:
        return None
    if isinstance(subject, Customer):
        return {"pk": subject.pk}
    if is_request(subject):
        return customer_lookup(owner_from_request(subject))
    owner_model = get_owner_model()
    if isinstance(subject, owner_model):
        if not getattr(subject, "is_authenticated", True):
            return None
        return {"owner": subject} if subject.pk is not None else None
    if not getattr(subject, "is_authenticated", True):  # AnonymousUser: nobody's customer
        return None
    kind = subject._meta.label if isinstance(subject, Model) else type(subject).__name__
    raise TypeError(
        f"Expected a request, a {owner_model._meta.label} (AUTUMN_CUSTOMER_OWNER_MODEL) or a Customer, "
        f"not a {kind}.")


# -- linking -------------------------------------------------------------------------------


def link_owners_to_customers(env: str, *, using: str = DEFAULT_DB_ALIAS) -> int:
    """Link owners that have no customer in ``env`` yet to the customer their mapping names
    (signups whose task never ran, owners that existed before the app), in database
    ``using`` (owners and mirror alike: a foreign key does not cross databases). Returns
    how many."""
    Owner = get_owner_model()
    customers = Customer.objects.using(using)
    unlinked = Owner._default_manager.using(using).filter(
        ~Exists(Customer.objects.filter(env=env, owner=OuterRef("pk")))
    ).order_by("pk")
    ids_by_owner: dict[str, Any] = {}
    for owner in unlinked.iterator(chunk_size=2000):
        try:
            ids_by_owner[customer_fields_for(owner)["customer_id"]] = owner.pk
        except AutumnConfigurationError as exc:
            logger.warning("Not linking %s %s: %s", Owner._meta.model_name, owner.pk, exc)
    linked = 0
    ids = list(ids_by_owner)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for pk, autumn_id in customers.filter(
            env=env, autumn_id__in=chunk, owner__isnull=True
        ).values_list("pk", "autumn_id"):
            linked += customers.filter(pk=pk, owner__isnull=True).update(owner_id=ids_by_owner[autumn_id])
    return linked
