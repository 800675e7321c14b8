"""Template helpers for gating UI on the mirror (``autumn_django.features``).

    {% load autumn %}
    {% has_feature "sso" as sso %}{% if sso %}...{% endif %}
    {% has_feature "ai_tokens" required=500 as tokens %}{% if not tokens %}{{ tokens.message }}{% endif %}
    {% has_feature "sso" owner=organization as sso %}
    {% has_feature "sso" owner=workspace as sso %}           (an autumn_django Entity)
    {% has_feature "sso" entity_id=workspace_id as sso %}    (that entity of the request's customer)
    {% if request|has_feature:"analytics" %}...{% endif %}

Each use is one query; for many checks on one page, compute them in the view instead.
"""

from __future__ import annotations

from typing import Any

from django import template

from ..features import FeatureCheck, check_feature

register = template.Library()


@register.simple_tag(name="has_feature", takes_context=True)
def has_feature_tag(context: template.Context, feature_id: str, owner: Any = None,
                    required: float = 1, user: Any = None, entity_id: str | None = None) -> FeatureCheck:
    """The check of ``required`` (default 1) for ``owner`` (an owner, a ``Customer`` or an
    ``Entity``; ``user=`` as well, as before owners), by default the request's owner
    (``AUTUMN_OWNER_FROM_REQUEST``), else the ``user`` that the auth context processor puts
    in the context; with ``entity_id``, for that entity of their customer (an empty value
    checks the customer). The result is true when allowed and has ``reason`` and
    ``message`` for the template to show."""
    subject = owner if owner is not None else user
    if subject is None:
        subject = context.get("request") or context.get("user")
    return check_feature(subject, feature_id, required, entity_id=entity_id or None)


@register.filter(name="has_feature")
def has_feature_filter(subject: Any, feature_id: str) -> bool:
    """``request|has_feature:"sso"``, or an owner's, a customer's or an entity's."""
    return check_feature(subject, feature_id).allowed
