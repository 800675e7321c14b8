"""Template helpers for gating UI on the mirror (``autumn_django.features``).

    {% load autumn %}
    {% has_feature "sso" as sso %}{% if sso %}...{% endif %}
    {% has_feature "ai_tokens" required=500 as tokens %}{% if not tokens %}{{ tokens.message }}{% endif %}
    {% if request.user|has_feature:"analytics" %}...{% endif %}

Each use is one query; for many checks on one page, compute them in the view instead.
"""

from __future__ import annotations

from typing import Any

from django import template

from ..features import FeatureCheck, check_feature

register = template.Library()


@register.simple_tag(name="has_feature", takes_context=True)
def has_feature_tag(context: template.Context, feature_id: str, user: Any = None,
                    required: float = 1) -> FeatureCheck:
    """The check of ``required`` (default 1) for ``user``, by default the signed-in user
    (``request.user``, else the ``user`` that the auth context processor puts in the
    context). The result is true when allowed and has ``reason`` and ``message`` for the
    template to show."""
    if user is None:
        request = context.get("request")
        user = getattr(request, "user", None) or context.get("user")
    return check_feature(user, feature_id, required)


@register.filter(name="has_feature")
def has_feature_filter(user: Any, feature_id: str) -> bool:
    return check_feature(user, feature_id).allowed
