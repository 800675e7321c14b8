from django.urls import path

from . import views

app_name = "autumn_webhooks"

urlpatterns = [path("", views.receive_webhook, name="receive")]
