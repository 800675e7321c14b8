"""Catalogue names beside Autumn's plan and feature ids.

Ids are what support staff and code share ("pro", "ai_tokens"); names are what the
customer saw ("Pro", "AI tokens"). The catalogue (``Plan``, ``Feature``) is small, but a
page lists many rows, so names come in the rows' own query, as a correlated subquery on
the catalogue's ``(env, id)`` unique index: no query per row, none per page either. Rows
of another env than the catalogue's, or ids the catalogue does not have (yet), show the
id alone.
"""

from __future__ import annotations

from django.db.models import CharField, Expression, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .. import freshness
from ..models import Feature, Plan

# A child row (subscription, balance...) belongs to a customer or to an entity: its env is
# whichever of the two it has.
CHILD_ENV = "__child_env__"


def _env(env_ref: str) -> Expression:
    if env_ref == CHILD_ENV:
        return Coalesce(OuterRef("customer__env"), OuterRef("entity__env"), output_field=CharField())
    return OuterRef(env_ref)


def plan_name(env_ref: str, plan_ref: str = "plan_id") -> Subquery:
    """The catalogue name of the plan ``plan_ref`` names, in the env ``env_ref`` names
    (a field path of the outer row, or ``CHILD_ENV``)."""
    names = Plan.objects.filter(env=_env(env_ref), plan_id=OuterRef(plan_ref)).order_by()
    return Subquery(names.values("name")[:1], output_field=CharField())


def feature_name(env_ref: str, feature_ref: str = "feature_id") -> Subquery:
    """The catalogue name of the feature ``feature_ref`` names (see ``plan_name``)."""
    names = Feature.objects.filter(env=_env(env_ref), feature_id=OuterRef(feature_ref)).order_by()
    return Subquery(names.values("name")[:1], output_field=CharField())


def labelled(identifier: str | None, name: str | None) -> SafeString | str:
    """An id with its catalogue name beside it, or the id alone when there is no name (or
    the name is the id). The id comes first and stays its own text: it is what people
    search and filter by."""
    if identifier is None:
        return ""
    if not name or name == identifier:
        return identifier
    return format_html('<span class="autumn-id">{}</span> <span class="autumn-name">{}</span>',
                       identifier, name)


def _names(rows) -> dict[str, str]:
    """``{id: name}`` from ``(env, id, name)`` rows, the env of the secret key winning
    where the envs name an id differently."""
    preferred = freshness.key_env()
    names: dict[str, str] = {}
    for env, identifier, name in rows:
        if name and (identifier not in names or env == preferred):
            names[identifier] = name
    return names


def plan_names() -> dict[str, str]:
    """Every catalogue plan's name by id (one query), for a filter's choices."""
    return _names(Plan.objects.order_by().values_list("env", "plan_id", "name"))


def feature_names() -> dict[str, str]:
    """Every catalogue feature's name by id (one query), for a filter's choices."""
    return _names(Feature.objects.order_by().values_list("env", "feature_id", "name"))


def choice_label(identifier: str, names: dict[str, str]) -> str:
    """A filter choice: "Name (id)" when the catalogue names it, else the id."""
    name = names.get(identifier)
    return f"{name} ({identifier})" if name and name != identifier else identifier
