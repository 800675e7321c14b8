"""Permission classes for DRF views, gating on the mirror's feature data.

    class ExportView(APIView):
        permission_classes = [IsAuthenticated, HasFeature("exports")]
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from ..features import check_feature


def HasFeature(feature_id: str, required: float = 1) -> type[BasePermission]:
    """A permission class that lets a request through when the customer of its owner
    (``AUTUMN_OWNER_FROM_REQUEST``: by default the signed-in user) may use ``required`` of
    ``feature_id`` (``autumn_django.features.check_feature``). Denials say why.

    A factory because ``permission_classes`` takes classes, which DRF instantiates without
    arguments. The classes compose with DRF's ``&``, ``|`` and ``~``.
    """

    class HasFeaturePermission(BasePermission):
        code = "feature_not_available"
        message = f"Your plan does not include {feature_id}."

        def has_permission(self, request: Any, view: Any) -> bool:
            result = check_feature(request, feature_id, required)
            if not result:
                self.message = result.message  # per instance: DRF builds one per request
            return result.allowed

    name = f"HasFeature({feature_id!r})" if required == 1 else f"HasFeature({feature_id!r}, {required!r})"
    HasFeaturePermission.__name__ = HasFeaturePermission.__qualname__ = name
    return HasFeaturePermission
