"""``AUTUMN_OWNER_FROM_REQUEST`` of the org settings: the signed-in user's organisation."""

from __future__ import annotations

from typing import Any


def organization_of(request: Any) -> Any:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return user.organizations.order_by("pk").first()
