"""Autumn's Svix-signed webhooks: verification, storage, deduplication, and the refresh
they trigger, end to end against the stand-in (inline task mode)."""

from __future__ import annotations

import base64
import json
import logging
import time

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.db import connections
from django.test import Client
from django.urls import reverse

import autumn_django.webhooks.admin  # noqa: F401  (registers the admin, as the app's admin does)
from autumn_django.models import Customer, WebhookEvent
from autumn_django.sync import sync_all_customers
from autumn_django.webhooks.signature import SignatureError, sign, verify

from .conftest import expected_children, mirrored_children, published_tasks

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
    assert b"Failed" in page.content and b"Injected 400 error" in page.content
    assert b"Process again" in page.content
    assert client.get(reverse("admin:autumn_django_webhookevent_add")).status_code == 403


def test_a_third_partys_credential_in_an_event_is_never_shown_in_the_admin(client, server):
    payload = {"type": "vercel.resources.provisioned",
               "data": {"resource": {"id": "res_1"}, "installation_id": "icfg_1",
                        "access_token": "vercel-secret-token-123"}}
    deliver(client, payload, svix_id="msg_vercel")
    event = WebhookEvent.objects.get(svix_id="msg_vercel")
    assert event.payload["data"]["access_token"] == "vercel-secret-token-123", "kept as received"
    client.force_login(get_user_model().objects.create_superuser("admin", "admin@example.com", "pw"))

    page = client.get(reverse("admin:autumn_django_webhookevent_change", args=[event.pk]))

    assert page.status_code == 200
    assert b"vercel-secret-token-123" not in page.content
    assert b"icfg_1" in page.content and b"*** (hidden)" in page.content


@pytest.mark.django_db
def test_webhook_events_are_listed_in_the_admin(client, django_user_model):
    admin_user = django_user_model.objects.create_superuser("root", "root@example.com", "x")
    client.force_login(admin_user)
    response = client.get("/admin/autumn_django/webhookevent/")
    assert response.status_code == 200 and b"webhook event" in response.content.lower()


# -- every type Autumn sends: refresh or not, and its signal (issue 14) -------------------
# Bodies as Autumn's server builds them (useautumn/autumn: shared/api/webhooks/*, the
# senders under server/src/internal/balances/ and server/src/internal/billing/).

WEBHOOK_SIGNALS = (
    "billing_updated", "balances_limit_reached", "balances_usage_alert_triggered",
    "billing_auto_topup_succeeded", "billing_auto_topup_failed", "invoice_finalized",
    "customer_products_updated", "customer_threshold_reached", "vercel_resources_provisioned",
    "vercel_resources_deleted", "vercel_resources_rotate_secrets", "vercel_webhooks_event",
    "webhook_received",
)
PLAN_CHANGE = {
    "action": "updated",
    "subscription": {"plan_id": "pro", "status": "active", "past_due": False,
                     "started_at": 1_700_000_000_000, "canceled_at": None, "expires_at": None,
                     "trial_ends_at": None, "current_period_start": 1_702_000_000_000,
                     "current_period_end": 1_704_600_000_000},
    "previous_attributes": {"trial_ends_at": 1_702_000_000_000},
    "item_changes": [],
}
TOPUP_INVOICE = {"stripe_id": "in_1A2B3C4D5E6F7G8H", "status": "paid", "total": 1000, "currency": "usd",
                 "hosted_invoice_url": "https://invoice.stripe.com/i/acct_123/test_456"}
OLD_SHAPE = {"name": "Old Shape", "env": "sandbox", "products": [{"id": "pro", "status": "active"}],
             "features": {"messages": {"feature_id": "messages", "balance": 0}}}
FEATURE = {"id": "messages", "name": "Messages", "type": "single_use"}
RESOURCE = {"id": "res_1", "name": "autumn-prod"}


def typed_case(event_type: str, cid: str) -> tuple[dict, dict, bool]:
    """(data, the typed signal's own keyword arguments, whether the customer is refreshed)."""
    if event_type == "billing.updated":
        data = {"object": "billing.updated", "customer_id": cid, "entity_id": None,
                "plan_changes": [PLAN_CHANGE], "tags": ["trial_ended"]}
        return data, {"plan_changes": [PLAN_CHANGE], "tags": ["trial_ended"]}, True
    if event_type == "balances.limit_reached":
        data = {"customer_id": cid, "entity_id": "workspace_abc", "feature_id": "messages",
                "limit_type": "included"}
        return data, {"feature_id": "messages", "limit_type": "included", "filter": None}, True
    if event_type == "balances.usage_alert_triggered":
        alert = {"name": "80% usage warning", "threshold": 80, "threshold_type": "usage_percentage"}
        data = {"customer_id": cid, "feature_id": "messages", "usage_alert": alert}
        return data, {"feature_id": "messages", "usage_alert": alert}, True
    if event_type == "billing.auto_topup_succeeded":
        data = {"customer_id": cid, "feature_id": "messages", "quantity_granted": 100, "threshold": 20,
                "balance_after": 115, "invoice_mode": False, "invoice": TOPUP_INVOICE}
        return data, {"feature_id": "messages", "quantity_granted": 100, "threshold": 20,
                      "balance_after": 115, "invoice_mode": False, "invoice": TOPUP_INVOICE}, True
    if event_type == "billing.auto_topup_failed":
        error = {"code": "card_declined", "message": "Your card was declined.", "type": "card_error",
                 "decline_code": "generic_decline"}
        data = {"customer_id": cid, "feature_id": "messages", "reason": "charge_failed", "quantity": 100,
                "threshold": 20, "balance": 15, "invoice_mode": False, "error": error}
        return data, {"feature_id": "messages", "reason": "charge_failed", "quantity": 100,
                      "threshold": 20, "balance": 15, "invoice_mode": False, "error": error}, True
    if event_type == "invoice.finalized":
        invoice = {"stripe_id": "in_9", "status": "open", "total": 4900, "currency": "usd"}
        return {"customer_id": cid, "invoice": invoice}, {"invoice": invoice}, True
    if event_type == "customer.products.updated":
        data = {"scenario": "upgrade", "customer": {**OLD_SHAPE, "id": cid}, "updated_product": {"id": "pro"}}
        return data, {"scenario": "upgrade", "updated_product": {"id": "pro"}, "entity": None}, True
    if event_type == "customer.threshold_reached":
        data = {"threshold_type": "limit_reached", "customer": {**OLD_SHAPE, "id": cid}, "feature": FEATURE}
        return data, {"threshold_type": "limit_reached", "feature": FEATURE}, True
    if event_type == "vercel.resources.provisioned":
        data = {"resource": RESOURCE, "installation_id": "icfg_1", "access_token": "vercel-token"}
        return data, dict(data), False
    if event_type == "vercel.resources.deleted":
        data = {"resource": RESOURCE, "installation_id": "icfg_1"}
        return data, dict(data), False
    if event_type == "vercel.resources.rotate_secrets":
        data = {"resource": RESOURCE, "installation_id": "icfg_1", "vercel_request_body": {"reason": "leak"}}
        return data, dict(data), False
    if event_type == "vercel.webhooks.event":
        data = {"installation_id": "icfg_1", "event": {"type": "deployment.created", "id": "evt_v"}}
        return data, {"installation_id": "icfg_1", "vercel_event": data["event"]}, False
    raise AssertionError(event_type)


TYPED = ["billing.updated", "balances.limit_reached", "balances.usage_alert_triggered",
         "billing.auto_topup_succeeded", "billing.auto_topup_failed", "invoice.finalized",
         "customer.products.updated", "customer.threshold_reached", "vercel.resources.provisioned",
         "vercel.resources.deleted", "vercel.resources.rotate_secrets", "vercel.webhooks.event"]


@pytest.fixture
def heard():
    """Record every webhook signal: (signal name, sender, keyword arguments, whether a
    transaction was open on the default connection, the event's committed status)."""
    from autumn_django import signals

    got: list[tuple] = []

    def recorder(name):
        def receive(sender, signal, **kwargs):
            stored = WebhookEvent.objects.get(pk=kwargs["event"].pk).status
            got.append((name, sender, kwargs, connections["default"].in_atomic_block, stored))
        return receive

    connected = [(getattr(signals, name), recorder(name)) for name in WEBHOOK_SIGNALS]
    for signal, receiver in connected:
        signal.connect(receiver, weak=False)
    yield got
    for signal, receiver in connected:
        signal.disconnect(receiver)


def mirror_row(customer_id: str, env: str = "sandbox") -> Customer:
    return Customer.objects.get(env=env, autumn_id=customer_id)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("event_type", TYPED)
def test_each_type_refreshes_or_not_and_sends_its_signal_after_the_commit(client, server, heard, event_type):
    cid = customer_ids(server)[2]
    server.modify_customer(cid, name="Changed in Autumn")
    data, own, refreshes = typed_case(event_type, cid)
    payload = {"type": event_type, "data": data}
    if event_type.startswith("billing.auto_topup"):  # these carry an id and a time of their own
        payload = {"type": event_type, "id": "evt_auto_topup_1", "occurred_at": 1_760_000_000_000,
                   "data": data}

    response = deliver(client, payload)

    assert response.status_code == 200
    assert response.json() == {"id": "msg_2Lh4fJm0", "status": "processed"}
    event = WebhookEvent.objects.get()
    assert (event.event_type, event.status, event.error, event.attempts) == (event_type, "processed", "", 1)
    names_customer = not event_type.startswith("vercel.")
    if refreshes:
        assert gets(server) == [cid]
        assert_row_is(server, cid)
    else:
        assert server.requests == []
    customer = mirror_row(cid) if refreshes else None
    entity_id = "workspace_abc" if event_type == "balances.limit_reached" else None
    common = {"event": event, "customer_id": cid if names_customer else None, "entity_id": entity_id,
              "customer": customer, "data": data}
    signal = event_type.replace(".", "_")
    assert [(name, sender, kwargs) for name, sender, kwargs, _, _ in heard] == [
        (signal, WebhookEvent, {**common, **own}),
        ("webhook_received", WebhookEvent, {**common, "event_type": event_type}),
    ]
    for _name, _, kwargs, in_transaction, stored in heard:
        assert not in_transaction and stored == "processed", "sent after the commit"
        assert kwargs["event"].status == "processed"
        if refreshes:
            assert kwargs["customer"].raw == server.get_customer(cid), "the refreshed row"

    # A redelivery is acknowledged and sends nothing again.
    assert deliver(client, payload, timestamp=time.time() + 5).json()["duplicate"] is True
    assert len(heard) == 2


@pytest.mark.django_db(transaction=True)
def test_an_unknown_type_is_stored_acknowledged_and_signalled_generically(client, server, heard):
    cid = customer_ids(server)[0]
    server.modify_customer(cid, name="Changed in Autumn")
    data = {"customer_id": cid, "something": {"new": True}}

    response = deliver(client, {"type": "customer.teleported", "data": data})

    assert response.status_code == 200 and response.json()["status"] == "ignored"
    event = WebhookEvent.objects.get()
    assert server.requests == [] and mirror_row(cid).name != "Changed in Autumn"
    assert [(name, kwargs) for name, _, kwargs, _, _ in heard] == [
        ("webhook_received", {"event": event, "event_type": "customer.teleported", "customer_id": cid,
                              "entity_id": None, "customer": None, "data": data}),
    ]


@pytest.mark.django_db(transaction=True)
def test_an_auto_topup_makes_the_granted_balance_visible_at_once(client, server, heard):
    customer = next(c for c in server.list_customers() if c["id"] and c["balances"])
    feature, balance = next((f, b) for f, b in customer["balances"].items() if not b["unlimited"])
    before = mirror_row(customer["id"]).balances.get(feature_id=feature)
    topped = {**balance, "granted": (balance["granted"] or 0) + 100,
              "remaining": (balance["remaining"] or 0) + 100}
    server.modify_customer(customer["id"], balances={**customer["balances"], feature: topped})
    data, _, _ = typed_case("billing.auto_topup_succeeded", customer["id"])
    data["feature_id"] = feature

    assert deliver(client, {"type": "billing.auto_topup_succeeded", "data": data}).status_code == 200

    after = mirror_row(customer["id"]).balances.get(feature_id=feature)
    assert after.remaining == (before.remaining or 0) + 100 and after.granted == (before.granted or 0) + 100
    [(_, _, kwargs, _, _)] = [h for h in heard if h[0] == "billing_auto_topup_succeeded"]
    assert kwargs["customer"].balances.get(feature_id=feature).remaining == after.remaining


@pytest.mark.django_db(transaction=True)
def test_a_receiver_that_raises_does_not_fail_the_delivery(client, server, heard, caplog):
    from autumn_django import signals

    def broken_mailer(sender, **kwargs):
        raise RuntimeError("the mail server is down")

    signals.billing_updated.connect(broken_mailer, weak=False)
    try:
        cid = customer_ids(server)[0]
        response = deliver(client, billing_updated(cid))
    finally:
        signals.billing_updated.disconnect(broken_mailer)

    assert response.status_code == 200 and response.json()["status"] == "processed"
    assert WebhookEvent.objects.get().status == "processed"
    assert [name for name, *_ in heard] == ["billing_updated", "webhook_received"], "the others still run"
    [logged] = [r for r in caplog.records if r.name == "autumn_django.webhooks.processing"
                and r.levelno == logging.ERROR]
    message = logged.getMessage()
    assert "broken_mailer" in message and "RuntimeError: the mail server is down" in message
    assert "msg_2Lh4fJm0" in message and logged.exc_info


def staff_member(django_user_model, *perms: str):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label,
                                                         codename=codename))
    return user


EVENTS = "/admin/autumn_django/webhookevent/"


def process_again(client, *pks):
    return client.post(EVENTS, {"action": "process_again", "index": "0",
                                "_selected_action": [str(pk) for pk in pks]}, follow=True)


@pytest.mark.django_db(transaction=True)
def test_an_inline_refresh_past_its_budget_fails_in_time_and_process_again_processes_it(
        client, server, heard, django_user_model):
    cid = customer_ids(server)[0]
    server.modify_customer(cid, name="Changed in Autumn")
    server.faults.delay(8, endpoint="customers.get")  # Autumn hangs longer than the budget

    started = time.monotonic()
    response = deliver(client, billing_updated(cid))
    elapsed = time.monotonic() - started

    assert response.status_code == 500, "Svix delivers it again"
    assert elapsed < 8, f"{elapsed:.1f} s: the delivery must end well inside Svix's 15 s"
    event = WebhookEvent.objects.get()
    assert event.status == "failed" and "timed out" in event.error and "Process again" in event.error
    assert heard == [] and mirror_row(cid).name != "Changed in Autumn"
    server.faults.delay(0, endpoint="customers.get")

    # Staff who may only look cannot process it; "Process again" needs the sync permission.
    client.force_login(staff_member(django_user_model, "autumn_django.view_webhookevent"))
    assert b"process_again" not in client.get(EVENTS).content
    process_again(client, event.pk)
    event.refresh_from_db()
    assert event.status == "failed" and heard == []

    client.force_login(staff_member_with_sync(django_user_model))
    assert b"process_again" in client.get(EVENTS).content
    done = process_again(client, event.pk)

    assert [m.message for m in get_messages(done.wsgi_request)] == ["Processed 1 event."]
    event.refresh_from_db()
    assert (event.status, event.error, event.attempts) == ("processed", "", 2)
    assert_row_is(server, cid)
    assert [name for name, *_ in heard] == ["billing_updated", "webhook_received"]
    assert heard[0][2]["customer"] == mirror_row(cid)

    again = process_again(client, event.pk)  # never twice
    assert [m.message for m in get_messages(again.wsgi_request)] == [
        "Skipped 1 event already processed or ignored: it is not processed twice."]
    assert len(heard) == 2


def staff_member_with_sync(django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("syncer", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="autumn_django", codename__in=["view_webhookevent", "sync_customers"]))
    return user


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("key", "named"), [("am_sk_test_suite0000000000000000", "live"),
                                            ("am_sk_live_suite0000000000000000", "sandbox")])
@pytest.mark.parametrize("event_type", ["customer.products.updated", "customer.threshold_reached"])
def test_an_event_of_the_other_env_is_refused_and_never_reaches_autumn(
        client, server, heard, caplog, settings, key, named, event_type):
    settings.AUTUMN_SECRET_KEY = key
    key_env = "sandbox" if named == "live" else "live"
    cid = customer_ids(server)[0]
    server.add_customer({**server.get_customer(cid), "env": "live"}, env="live")
    rows_before = {(c.env, c.autumn_id, c.raw_hash, c.deleted_at) for c in Customer.objects.all()}
    data, _, _ = typed_case(event_type, cid)
    data["customer"]["env"] = named

    response = deliver(client, {"type": event_type, "data": data})

    assert response.status_code == 200 and response.json()["status"] == "ignored"
    event = WebhookEvent.objects.get()
    assert event.error.startswith("Refused") and named in event.error and key_env in event.error
    assert server.requests == [], "no call to Autumn: no refresh in the wrong env, no 404 read as a deletion"
    assert {(c.env, c.autumn_id, c.raw_hash, c.deleted_at) for c in Customer.objects.all()} == rows_before
    assert heard == []
    [logged] = [r.getMessage() for r in caplog.records if r.name == "autumn_django.webhooks.processing"
                and r.levelno == logging.ERROR]
    assert f"about the {named} environment" in logged
    assert f"the endpoint that received it is for {key_env}" in logged

    # A body that names no env is taken to be of the key's env: the endpoint decides.
    assert deliver(client, billing_updated(cid), svix_id="msg_no_env").json()["status"] == "processed"
    assert gets(server) == [cid]
    assert mirror_row(cid, env=key_env).raw == server.get_customer(cid, env=key_env)




@pytest.mark.django_db(transaction=True)
def test_with_celery_the_worker_processes_the_event_and_signals_with_the_refreshed_row(
        client, server, heard, settings, celery_app):
    from autumn_django.exceptions import ServerError
    from autumn_django.tasks import process_webhook_event_task

    settings.AUTUMN_TASK_MODE = "celery"
    cid = customer_ids(server)[1]
    server.modify_customer(cid, name="Changed in Autumn")

    response = deliver(client, billing_updated(cid))

    event = WebhookEvent.objects.get()
    assert response.status_code == 200 and response.json() == {"id": event.svix_id, "status": "received"}
    queued = ("autumn_django.process_webhook_event", f"({event.pk}, 'sandbox')")
    assert published_tasks(celery_app) == [queued]
    assert server.requests == [] and heard == []

    server.faults.fail_next(1, status=500, endpoint="customers.get")
    with pytest.raises(ServerError):  # transient: the task's autoretry tries again later
        process_webhook_event_task.run(event.pk)
    event.refresh_from_db()
    assert event.status == "failed" and heard == []

    assert process_webhook_event_task.run(event.pk) == "processed"  # the retry, in the worker

    event.refresh_from_db()
    assert (event.status, event.attempts) == ("processed", 2)
    assert_row_is(server, cid)
    assert [name for name, *_ in heard] == ["billing_updated", "webhook_received"]
    assert heard[0][2]["customer"].raw == server.get_customer(cid)
