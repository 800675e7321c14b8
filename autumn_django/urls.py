"""Everything the app serves, mounted by one line in the project's URLconf:

    path("autumn/", include("autumn_django.urls"))

``webhooks/`` takes Autumn's signed deliveries of ``AUTUMN_ENV``, ``webhooks/sandbox/`` and
``webhooks/live/`` those of that environment; ``me/`` and ``customers/`` are the REST API.
Names are in the ``autumn`` namespace: ``reverse("autumn:webhook")``,
``reverse("autumn:webhook-env", kwargs={"env": "live"})``, ``"autumn:me"``,
``"autumn:customer-list"``, ``"autumn:customer-detail"``, ``"autumn:entity-list"``. The older includes of
``autumn_django.api.urls`` and ``autumn_django.webhooks.urls`` keep working.
"""

from django.urls import path, re_path

from .api.urls import urlpatterns as api_urlpatterns
from .webhooks.views import receive_webhook

app_name = "autumn"

urlpatterns = [
    path("webhooks/", receive_webhook, name="webhook"),  # AUTUMN_ENV's endpoint
    # One endpoint per environment: reverse("autumn:webhook-env", kwargs={"env": "live"}).
    re_path(r"^webhooks/(?P<env>sandbox|live)/$", receive_webhook, name="webhook-env"),
    *api_urlpatterns,
]
