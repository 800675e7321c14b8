from django.urls import path, re_path

from . import views

app_name = "autumn_webhooks"

urlpatterns = [
    path("", views.receive_webhook, name="receive"),  # AUTUMN_ENV's endpoint
    re_path(r"^(?P<env>sandbox|live)/$", views.receive_webhook, name="receive-env"),
]
