"""Autumn's Svix-signed webhooks: verification, storage, deduplication, and the refresh
they trigger, end to end against the stand-in (inline task mode)."""

from __future__ import annotations

import base64
import json
import logging
import time

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

import autumn_django.webhooks.admin  # noqa: F401  (registers the admin, as the app's admin does)
from autumn_django.models import Customer, WebhookEvent
from autumn_django.sync import sync_all_customers
from autumn_django.webhooks.signature import SignatureError, sign, verify

from .conftest import expected_children, mirrored_children

pytestmark = pytest.mark.django_db

URL = "/autumn/webhooks/"
KEY = b"autumn-django-tests-webhook-key!"
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def deliver(client, payload=None, *, svix_id: str = "msg_2Lh4fJm0", timestamp: float | None = None,
            secret: str = SECRET, body: bytes | None = None, headers: dict | None = None):
    body = json.dumps(payload).encode() if body is None else body
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    sent = {"svix-id": svix_id, "svix-timestamp": str(timestamp),
            "svix-signature": sign(secret, svix_id, timestamp, body)}
    sent.update(headers or {})
    sent = {name: value for name, value in sent.items() if value is not None}
    return client.post(URL, data=body, content_type="application/json", headers=sent)


def billing_updated(customer_id: str) -> dict:
    return {"type": "billing.updated", "data": {"customer_id": customer_id, "entity_id": None}}


@pytest.fixture
def server(make_standin, settings):
    server = make_standin(8, seed=4)
    sync_all_customers()
    server.clear_requests()
    settings.AUTUMN_WEBHOOK_SECRET = SECRET
    settings.AUTUMN_TASK_MODE = "inline"
    return server


def customer_ids(server) -> list[str]:
    return [c["id"] for c in server.list_customers() if c["id"]]


def gets(server) -> list[str]:
    return [body["customer_id"] for endpoint, body in server.requests if endpoint == "customers.get"]


def assert_row_is(server, customer_id: str) -> None:
    expected = server.get_customer(customer_id)
    row = Customer.objects.get(env="sandbox", autumn_id=customer_id)
    assert row.deleted_at is None
    assert row.raw == expected
    assert mirrored_children(row) == expected_children(expected)


# -- the signature scheme --------------------------------------------------------------


def test_signature_matches_svixs_published_example():
    # The example from Svix's "verifying webhooks manually" documentation.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = {"svix-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "svix-timestamp": "1614265330",
               "svix-signature": signature}

    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == signature
    assert verify(secret, headers, body, tolerance=300, now=1614265330 + 299).svix_id == headers["svix-id"]
    # Several entries (a secret being rotated, another scheme): any valid v1 one will do.
    rotated = {**headers, "svix-signature": f"v1a,abc v1,{'A' * 44} {signature}"}
    assert verify(secret, rotated, body, tolerance=300, now=1614265330)


@pytest.mark.parametrize(("change", "problem"), [
    ({"svix-signature": None}, "missing"),
    ({"svix-id": None}, "missing"),
    ({"svix-timestamp": None}, "missing"),
    ({"svix-timestamp": "yesterday"}, "not a number"),
    ({"svix-id": "msg_other"}, "no valid v1 signature"),  # signed for another message
    ({"svix-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}, "no valid v1 signature"),
    ({"svix-signature": "v2,whatever"}, "no valid v1 signature"),
])
def test_verify_refuses(change, problem):
    body, now = b'{"type": "billing.updated"}', 1_700_000_000
    headers = {"svix-id": "msg_1", "svix-timestamp": str(now),
               "svix-signature": sign(SECRET, "msg_1", now, body)}
    headers = {k: v for k, v in {**headers, **change}.items() if v is not None}
    with pytest.raises(SignatureError, match=problem):
        verify(SECRET, headers, body, tolerance=300, now=now)


@pytest.mark.parametrize(("skew", "accepted"), [(-301, False), (-299, True), (299, True), (301, False)])
def test_verify_timestamp_window_both_ways(skew, accepted):
    body, now = b"{}", 1_700_000_000
    signed_at = now + skew
    headers = {"svix-id": "msg_1", "svix-timestamp": str(signed_at),
               "svix-signature": sign(SECRET, "msg_1", signed_at, body)}
    if accepted:
        assert verify(SECRET, headers, body, tolerance=300, now=now)
    else:
        with pytest.raises(SignatureError, match="outside the accepted window"):
            verify(SECRET, headers, body, tolerance=300, now=now)


# -- the view: refusals ------------------------------------------------------------------


@pytest.mark.parametrize("tamper", ["missing", "wrong_secret", "body", "too_old", "from_the_future"])
def test_a_bad_delivery_is_refused_and_not_stored(client, server, tamper):
    customer_id = customer_ids(server)[0]
    payload = billing_updated(customer_id)
    if tamper == "missing":
        response = deliver(client, payload, headers={"svix-signature": None})
    elif tamper == "wrong_secret":
        response = deliver(client, payload, secret="whsec_" + base64.b64encode(b"someone else").decode())
    elif tamper == "body":
        signed = json.dumps(payload).encode()
        timestamp = int(time.time())
        headers = {"svix-id": "msg_1", "svix-timestamp": str(timestamp),
                   "svix-signature": sign(SECRET, "msg_1", timestamp, signed)}
        response = client.post(URL, data=signed.replace(b"billing", b"balances"),
                               content_type="application/json", headers=headers)
    elif tamper == "too_old":
        response = deliver(client, payload, timestamp=time.time() - 301)
    else:
        response = deliver(client, payload, timestamp=time.time() + 301)

    assert response.status_code == 400
    assert response.json()["error"].startswith("Invalid webhook")
    assert not WebhookEvent.objects.exists()
    assert gets(server) == []


def test_without_a_secret_nothing_is_accepted(client, server, settings):
    settings.AUTUMN_WEBHOOK_SECRET = None
    assert deliver(client, billing_updated("cus_1")).status_code == 500
    settings.AUTUMN_WEBHOOK_SECRET = "whsec_not base64!"
    assert deliver(client, billing_updated("cus_1"), secret=SECRET).status_code == 500
    assert not WebhookEvent.objects.exists()


def test_post_only_and_no_csrf_token_needed(server):
    client = Client(enforce_csrf_checks=True)
    assert client.get(URL).status_code == 405
    customer_id = customer_ids(server)[0]
    assert deliver(client, billing_updated(customer_id)).status_code == 200


def test_a_signed_body_that_is_not_json_is_refused(client, server):
    assert deliver(client, body=b"not json").status_code == 400
    assert deliver(client, body=b"[1, 2]").status_code == 400
    assert not WebhookEvent.objects.exists()


# -- the view: processing ----------------------------------------------------------------


@pytest.mark.parametrize("event_type", ["billing.updated", "balances.limit_reached"])
def test_an_event_refreshes_its_customer_end_to_end(client, server, event_type):
    customer_id = customer_ids(server)[2]
    server.modify_customer(customer_id, name="Changed in Autumn", balances={}, flags={})
    assert Customer.objects.get(autumn_id=customer_id).raw != server.get_customer(customer_id)
    data = {"customer_id": customer_id, "entity_id": None}
    if event_type == "balances.limit_reached":
        data.update(feature_id="messages", limit_type="included")

    response = deliver(client, {"type": event_type, "data": data})

    assert response.status_code == 200
    assert response.json() == {"id": "msg_2Lh4fJm0", "status": "processed"}
    assert gets(server) == [customer_id]
    assert_row_is(server, customer_id)
    event = WebhookEvent.objects.get()
    assert (event.event_type, event.customer_id, event.status, event.attempts, event.error) == (
        event_type, customer_id, "processed", 1, "")
    assert event.payload == {"type": event_type, "data": data} and event.processed_at


def test_products_updated_refreshes_instead_of_storing_its_old_shape(client, server):
    customer_id = customer_ids(server)[3]
    old_shape = {  # Autumn's older customer response: products and features, no balances
        "id": customer_id, "name": "Old Shape", "env": "sandbox",
        "products": [{"id": "pro", "status": "active", "is_add_on": False}],
        "features": {"messages": {"feature_id": "messages", "balance": 0}},
    }
    payload = {"type": "customer.products.updated",
               "data": {"scenario": "upgrade", "customer": old_shape, "updated_product": {"id": "pro"}}}

    assert deliver(client, payload).status_code == 200

    assert gets(server) == [customer_id]
    assert_row_is(server, customer_id)
    assert Customer.objects.get(autumn_id=customer_id).name != "Old Shape"


def test_an_event_for_a_customer_the_mirror_never_had_creates_it(client, server):
    template = server.get_customer(customer_ids(server)[0])
    server.add_customer({**template, "id": "cus_new_from_webhook", "email": "new@example.com"})
    assert not Customer.objects.filter(autumn_id="cus_new_from_webhook").exists()

    assert deliver(client, billing_updated("cus_new_from_webhook")).status_code == 200

    assert_row_is(server, "cus_new_from_webhook")


def test_an_event_for_a_customer_autumn_deleted_marks_it_deleted(client, server):
    customer_id = customer_ids(server)[1]
    server.delete_customer(customer_id)

    assert deliver(client, billing_updated(customer_id)).json()["status"] == "processed"

    assert Customer.objects.get(autumn_id=customer_id).deleted_at is not None


def test_a_repeated_delivery_is_acknowledged_and_not_processed_again(client, server):
    customer_id = customer_ids(server)[0]
    first = deliver(client, billing_updated(customer_id), svix_id="msg_same")
    # Svix signs each attempt afresh: a new timestamp, the same id.
    again = deliver(client, billing_updated(customer_id), svix_id="msg_same", timestamp=time.time() + 5)

    assert first.status_code == again.status_code == 200
    assert again.json() == {"id": "msg_same", "status": "processed", "duplicate": True}
    assert gets(server) == [customer_id]
    assert WebhookEvent.objects.get().attempts == 1


def test_an_unknown_event_type_is_stored_and_ignored(client, server):
    response = deliver(client, {"type": "invoice.paid", "data": {"customer_id": customer_ids(server)[0]}})

    assert response.status_code == 200 and response.json()["status"] == "ignored"
    event = WebhookEvent.objects.get()
    assert (event.event_type, event.status, event.attempts) == ("invoice.paid", "ignored", 1)
    assert gets(server) == []
    # Svix retries only non-2xx answers; a repeat is acknowledged all the same.
    assert deliver(client, {"type": "invoice.paid", "data": {}}).json()["duplicate"] is True


def test_a_known_event_without_a_customer_is_ignored_with_a_note(client, server):
    response = deliver(client, {"type": "billing.updated", "data": {}})

    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert event.status == "ignored" and "names no customer" in event.error


def test_a_failed_refresh_is_recorded_and_a_redelivery_processes_it(client, server):
    customer_id = customer_ids(server)[0]
    server.faults.fail_next(1, status=400, endpoint="customers.get")  # not retried by the client

    failed = deliver(client, billing_updated(customer_id))

    assert failed.status_code == 500  # so that Svix delivers it again
    event = WebhookEvent.objects.get()
    assert event.status == "failed" and customer_id in event.error and event.attempts == 1

    retried = deliver(client, billing_updated(customer_id), timestamp=time.time() + 60)

    assert retried.status_code == 200 and retried.json()["status"] == "processed"
    event.refresh_from_db()
    assert (event.status, event.error, event.attempts) == ("processed", "", 2)
    assert_row_is(server, customer_id)


def test_the_secret_is_never_shown(client, server, settings, caplog):
    caplog.set_level(logging.DEBUG)
    customer_id = customer_ids(server)[0]
    responses = [
        deliver(client, billing_updated(customer_id)),
        deliver(client, billing_updated(customer_id), secret="whsec_" + base64.b64encode(b"other").decode()),
        deliver(client, billing_updated(customer_id), timestamp=0),
    ]
    settings.AUTUMN_WEBHOOK_SECRET = SECRET + "%%"
    responses.append(deliver(client, billing_updated(customer_id)))

    shown = caplog.text + "".join(r.content.decode() for r in responses)
    assert caplog.text
    for secret_part in (SECRET[len("whsec_"):], KEY.decode()):
        assert secret_part not in shown


def test_events_in_the_admin(client, server):
    deliver(client, billing_updated(customer_ids(server)[0]), svix_id="msg_ok")
    server.faults.fail_next(1, status=400, endpoint="customers.get")
    deliver(client, billing_updated(customer_ids(server)[1]), svix_id="msg_failed")
    staff = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(staff)

    listing = client.get(reverse("admin:autumn_django_webhookevent_changelist"), {"status": "failed"})
    assert listing.status_code == 200
    assert b"msg_failed" in listing.content and b"msg_ok" not in listing.content

    event = WebhookEvent.objects.get(svix_id="msg_failed")
    page = client.get(reverse("admin:autumn_django_webhookevent_change", args=[event.pk]))
    assert page.status_code == 200
    assert b"Failed" in page.content and b"see the autumn_django.dispatch log" in page.content
    assert client.get(reverse("admin:autumn_django_webhookevent_add")).status_code == 403


@pytest.mark.django_db
def test_webhook_events_are_listed_in_the_admin(client, django_user_model):
    admin_user = django_user_model.objects.create_superuser("root", "root@example.com", "x")
    client.force_login(admin_user)
    response = client.get("/admin/autumn_django/webhookevent/")
    assert response.status_code == 200 and b"webhook event" in response.content.lower()
