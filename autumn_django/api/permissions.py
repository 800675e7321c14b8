"""Permission classes for DRF views, gating on the mirror's feature data.

    class ExportView(APIView):
        permission_classes = [IsAuthenticated, HasFeature("exports")]

    class WorkspaceExportView(APIView):  # path("workspaces/<str:workspace>/export/", ...)
        permission_classes = [IsAuthenticated, HasFeature("exports", entity_kwarg="workspace")]
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from rest_framework.permissions import BasePermission

from ..features import check_feature


def HasFeature(feature_id: str, required: float = 1, *, entity_kwarg: str | None = None
               ) -> type[BasePermission]:
    """A permission class that lets a request through when the customer of its owner
    (``AUTUMN_OWNER_FROM_REQUEST``: by default the signed-in user) may use ``required`` of
    ``feature_id`` (``autumn_django.features.check_feature``). Denials say why.

    ``entity_kwarg`` names the URL keyword argument that holds an entity's Autumn id (a
    workspace, a project): the check is then that entity's, of the owner's customer.

    A factory because ``permission_classes`` takes classes, which DRF instantiates without
    arguments. The classes compose with DRF's ``&``, ``|`` and ``~``.
    """

    class HasFeaturePermission(BasePermission):
        code = "feature_not_available"
        message = f"Your plan does not include {feature_id}."

        def has_permission(self, request: Any, view: Any) -> bool:
            entity_id = view.kwargs.get(entity_kwarg) if entity_kwarg else None
            if entity_kwarg and not entity_id:
                raise ImproperlyConfigured(
                    f"HasFeature({feature_id!r}, entity_kwarg={entity_kwarg!r}): the view's URL gives no "
                    f"{entity_kwarg!r} argument.")
            result = check_feature(request, feature_id, required, entity_id=entity_id)
            if not result:
                self.message = result.message  # per instance: DRF builds one per request
            return result.allowed

    arguments = [repr(feature_id)] + ([repr(required)] if required != 1 else [])
    if entity_kwarg:
        arguments.append(f"entity_kwarg={entity_kwarg!r}")
    name = f"HasFeature({', '.join(arguments)})"
    HasFeaturePermission.__name__ = HasFeaturePermission.__qualname__ = name
    return HasFeaturePermission
