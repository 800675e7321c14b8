"""URLs of the example project: the Django admin, where the mirrored Autumn data shows."""

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

urlpatterns = [
    path("admin/", admin.site.urls),
    # Nothing else lives here; send a visitor of the bare host to the admin.
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
]
