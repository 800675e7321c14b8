from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # The one line the README gives: webhooks and the REST API, namespace "autumn".
    path("autumn/", include("autumn_django.urls")),
]
