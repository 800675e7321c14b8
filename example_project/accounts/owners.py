"""``AUTUMN_OWNER_FROM_REQUEST``: the organisation a request acts for."""

from __future__ import annotations

from typing import Any


def organization_of(request: Any) -> Any:
    """The signed-in user's first organisation (a real project might read the one chosen in
    the session or the URL)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return user.organizations.order_by("pk").first()
