"""Template helpers for gating UI on the mirror (``autumn_django.features``).

    {% load autumn %}
    {% has_feature "sso" as sso %}{% if sso %}...{% endif %}
    {% has_feature "ai_tokens" required=500 as tokens %}{% if not tokens %}{{ tokens.message }}{% endif %}
    {% has_feature "sso" owner=organization as sso %}
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
                    required: float = 1, user: Any = None) -> FeatureCheck:
    """The check of ``required`` (default 1) for ``owner`` (an owner or a ``Customer``;
    ``user=`` as well, as before owners), by default the request's owner
    (``AUTUMN_OWNER_FROM_REQUEST``), else the ``user`` that the auth context processor puts
    in the context. The result is true when allowed and has ``reason`` and ``message`` for
    the template to show."""
    subject = owner if owner is not None else user
    if subject is None:
        subject = context.get("request") or context.get("user")
    return check_feature(subject, feature_id, required)


@register.filter(name="has_feature")
def has_feature_filter(subject: Any, feature_id: str) -> bool:
    """``request|has_feature:"sso"``, or an owner's or a customer's."""
    return check_feature(subject, feature_id).allowed
