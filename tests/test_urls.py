"""How a project mounts the app: one include, its names, and projects that require a login
everywhere (Django's LoginRequiredMiddleware)."""

from __future__ import annotations

import json
import time

import pytest
from django.urls import resolve, reverse

from autumn_django.models import WebhookEvent
from autumn_django.webhooks.signature import sign

from .test_webhooks import SECRET, billing_updated

pytestmark = pytest.mark.django_db

LOGIN_REQUIRED = "django.contrib.auth.middleware.LoginRequiredMiddleware"


def test_one_include_mounts_the_api_and_the_webhook_endpoint_in_the_autumn_namespace():
    assert reverse("autumn:webhook") == "/autumn/webhooks/"
    assert reverse("autumn:me") == "/autumn/me/"
    assert reverse("autumn:customer-list") == "/autumn/customers/"
    assert reverse("autumn:customer-detail", args=["cus_1"]) == "/autumn/customers/cus_1/"
    assert resolve("/autumn/webhooks/").namespace == "autumn"


@pytest.mark.urls("tests.urls_separate")
def test_the_separate_includes_keep_working():
    assert reverse("autumn_webhooks:receive") == "/autumn/webhooks/"
    assert reverse("autumn_api:me") == "/autumn/me/"
    assert reverse("autumn_api:customer-list") == "/autumn/customers/"


def _signed_delivery(client, payload: dict, svix_id: str = "msg_login_required"):
    body = json.dumps(payload).encode()
    timestamp = int(time.time())
    headers = {"svix-id": svix_id, "svix-timestamp": str(timestamp),
               "svix-signature": sign(SECRET, svix_id, timestamp, body)}
    return client.post(reverse("autumn:webhook"), data=body, content_type="application/json",
                       headers=headers)


@pytest.fixture
def login_required_everywhere(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, LOGIN_REQUIRED]
    settings.LOGIN_URL = "/admin/login/"


def test_a_signed_delivery_is_taken_when_the_project_requires_a_login_everywhere(
        client, make_standin, settings, login_required_everywhere):
    server = make_standin(3, seed=5)
    settings.AUTUMN_WEBHOOK_SECRET = SECRET
    settings.AUTUMN_TASK_MODE = "inline"
    customer_id = next(c["id"] for c in server.list_customers() if c["id"])

    response = _signed_delivery(client, billing_updated(customer_id))

    # Before the exemption this was a 302 to the login page, which Svix retries forever.
    assert response.status_code == 200, response.get("Location")
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.PROCESSED
    # The middleware is on: an ordinary page still sends anonymous visitors to log in.
    assert client.get("/admin/autumn_django/customer/").status_code == 302


def test_the_api_answers_anonymous_callers_itself_when_a_login_is_required_everywhere(
        client, login_required_everywhere):
    # DRF authenticates in the view (tokens, basic auth), so the middleware must not
    # redirect API calls: the API's own permission answers.
    response = client.get(reverse("autumn:me"))
    assert response.status_code in (401, 403)
    assert "detail" in response.json()
