"""The includes the README gave before ``autumn_django.urls`` existed: they keep working."""

from django.urls import include, path

urlpatterns = [
    path("autumn/webhooks/", include("autumn_django.webhooks.urls")),
    path("autumn/", include("autumn_django.api.urls")),
]
