from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("autumn/webhooks/", include("autumn_django.webhooks.urls")),
    path("autumn/", include("autumn_django.api.urls")),
]
