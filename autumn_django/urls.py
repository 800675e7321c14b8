"""Everything the app serves, mounted by one line in the project's URLconf:

    path("autumn/", include("autumn_django.urls"))

``webhooks/`` takes Autumn's signed deliveries; ``me/`` and ``customers/`` are the REST API.
Names are in the ``autumn`` namespace: ``reverse("autumn:webhook")``, ``"autumn:me"``,
``"autumn:customer-list"``, ``"autumn:customer-detail"``. The older includes of
``autumn_django.api.urls`` and ``autumn_django.webhooks.urls`` keep working.
"""

from django.urls import path

from .api.urls import urlpatterns as api_urlpatterns
from .webhooks.views import receive_webhook

app_name = "autumn"

urlpatterns = [
    path("webhooks/", receive_webhook, name="webhook"),
    *api_urlpatterns,
]
