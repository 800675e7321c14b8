"""Sandbox and live in one project (issue 15): one key per environment, a sync per
environment, one webhook endpoint and secret per environment, AUTUMN_ENV for what the
project itself runs in, and ``autumn_webhook`` to register an endpoint. Against the
stand-in, which serves both environments by the key's prefix."""

from __future__ import annotations

import base64
import json
import time
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core import checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from autumn_django import tasks
from autumn_django.checks import TAG
from autumn_django.client import AutumnClient
from autumn_django.conf import configured_envs, project_env, secret_key_for, webhook_secret_for
from autumn_django.exceptions import AutumnConfigurationError
from autumn_django.features import check_feature, has_feature, mirror_env
from autumn_django.models import Customer, SyncRun, WebhookEvent
from autumn_django.schedules import sync_schedule, sync_schedules
from autumn_django.sync import sync_all_customers
from autumn_django.testing import make_customers
from autumn_django.testing.webhook_endpoints import server_endpoints
from autumn_django.webhooks.endpoints import handled_events
from autumn_django.webhooks.processing import EVENT_TYPES
from autumn_django.webhooks.signature import sign

from .conftest import TEST_KEY, assert_mirror_matches

LIVE_KEY = "am_sk_live_suite0000000000000000"
KEYS = {"sandbox": TEST_KEY, "live": LIVE_KEY}
SANDBOX_SECRET = "whsec_" + base64.b64encode(b"sandbox-endpoint-signing-key-01").decode()
LIVE_SECRET = "whsec_" + base64.b64encode(b"live-endpoint-signing-key-00001").decode()


@pytest.fixture
def two_envs(make_standin, settings, monkeypatch):
    """A stand-in with 12 sandbox and 9 live customers; the live ones reuse sandbox ids (the
    same seed), so a mirror that keyed rows by id alone would collide. Both keys set."""
    monkeypatch.delenv("AUTUMN_SECRET_KEY", raising=False)
    monkeypatch.delenv("AUTUMN_WEBHOOK_SECRET", raising=False)
    server = make_standin(12, seed=5)
    for customer in make_customers(9, seed=5, env="live"):
        server.add_customer(customer, env="live")
    settings.AUTUMN_SECRET_KEY = None
    settings.AUTUMN_SECRET_KEYS = dict(KEYS)
    settings.AUTUMN_SYNC_PREFETCH_PROCESS = False
    return server


def shared_ids(server) -> set[str]:
    ids = {env: {c["id"] for c in server.list_customers(env=env) if c["id"]} for env in KEYS}
    return ids["sandbox"] & ids["live"]


# -- settings --------------------------------------------------------------------------


def test_one_key_per_env_and_the_single_key_counts_for_its_env(settings, monkeypatch):
    monkeypatch.delenv("AUTUMN_SECRET_KEY", raising=False)
    settings.AUTUMN_SECRET_KEY = TEST_KEY
    assert (configured_envs(), project_env()) == (("sandbox",), "sandbox")
    settings.AUTUMN_SECRET_KEYS = {"live": LIVE_KEY}
    assert configured_envs() == ("sandbox", "live")
    assert (secret_key_for("sandbox"), secret_key_for("live")) == (TEST_KEY, LIVE_KEY)
    assert project_env() == "live"  # the default: live when a live key is set
    settings.AUTUMN_ENV = "sandbox"
    assert project_env() == mirror_env() == "sandbox"
    settings.AUTUMN_SECRET_KEY = None
    monkeypatch.setenv("AUTUMN_SECRET_KEY", TEST_KEY)  # the environment variable counts too
    assert configured_envs() == ("sandbox", "live")


def test_the_client_picks_its_envs_key(two_envs, settings):
    assert AutumnClient().env == "live"  # AUTUMN_ENV's default
    assert AutumnClient(env="sandbox").env == "sandbox"
    assert AutumnClient(secret_key=TEST_KEY).env == "sandbox"  # as before
    with pytest.raises(AutumnConfigurationError, match="is a sandbox key"):
        AutumnClient(secret_key=TEST_KEY, env="live")
    settings.AUTUMN_SECRET_KEYS = {"sandbox": TEST_KEY}
    with pytest.raises(AutumnConfigurationError, match="No Autumn secret key for the live environment"):
        AutumnClient(env="live")


# -- syncs -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_envs_sync_into_one_database_without_collisions(two_envs):
    shared = shared_ids(two_envs)
    assert shared, "the test needs ids present in both envs"

    for env in ("sandbox", "live"):
        with AutumnClient(env=env) as client:
            assert sync_all_customers(client=client).status == "succeeded"

    assert assert_mirror_matches(two_envs, "sandbox") == 12
    assert assert_mirror_matches(two_envs, "live") == 9
    for autumn_id in shared:
        rows = {row.env: row.raw for row in Customer.objects.filter(autumn_id=autumn_id)}
        assert rows == {env: two_envs.get_customer(autumn_id, env=env) for env in KEYS}
    # A second sync of one env leaves the other's rows alone (nothing deleted there).
    with AutumnClient(env="sandbox") as client:
        run = sync_all_customers(client=client)
    assert (run.env, run.deleted, run.unchanged) == ("sandbox", 0, 12)
    assert Customer.objects.filter(env="live").present().count() == 9


@pytest.mark.django_db(transaction=True)
def test_autumn_sync_env_and_env_all(two_envs, settings):
    out = StringIO()
    call_command("autumn_sync", "--env", "sandbox", stdout=out, verbosity=0)
    assert "Synced 12 sandbox customers" in out.getvalue()
    assert set(Customer.objects.values_list("env", flat=True)) == {"sandbox"}

    out = StringIO()
    call_command("autumn_sync", stdout=out, verbosity=0)  # AUTUMN_ENV: live by default
    assert "Synced 9 live customers" in out.getvalue()

    two_envs.delete_customer(next(iter(shared_ids(two_envs))), env="live")
    out = StringIO()
    call_command("autumn_sync", "--env", "all", stdout=out, verbosity=0)
    assert "Synced 12 sandbox customers" in out.getvalue() and "Synced 8 live customers" in out.getvalue()
    assert list(SyncRun.objects.order_by("pk").values_list("env", "status")) == [
        ("sandbox", "succeeded"), ("live", "succeeded"), ("sandbox", "succeeded"), ("live", "succeeded")]
    assert_mirror_matches(two_envs, "sandbox")
    assert_mirror_matches(two_envs, "live")

    customer_id = next(iter(shared_ids(two_envs)))
    two_envs.modify_customer(customer_id, env="live", name="Renamed in live")
    out = StringIO()
    call_command("autumn_sync", "--customer", customer_id, "--env", "live", stdout=out)
    assert f"Refreshed customer '{customer_id}' (live)" in out.getvalue()
    assert Customer.objects.get(env="live", autumn_id=customer_id).name == "Renamed in live"
    assert Customer.objects.get(env="sandbox", autumn_id=customer_id).name != "Renamed in live"


@pytest.mark.django_db(transaction=True)
def test_env_all_with_one_key_syncs_that_env(make_standin, settings, monkeypatch):
    monkeypatch.delenv("AUTUMN_SECRET_KEY", raising=False)
    make_standin(4)
    out = StringIO()
    call_command("autumn_sync", "--env", "all", stdout=out, verbosity=0)
    assert "Synced 4 sandbox customers" in out.getvalue()
    with pytest.raises(CommandError, match="No Autumn secret key for the live environment"):
        call_command("autumn_sync", "--env", "live", stdout=StringIO(), verbosity=0)


@pytest.mark.django_db(transaction=True)
def test_tasks_sync_the_env_they_are_given(two_envs):
    assert tasks.sync_all_customers_task.run(env="sandbox")["env"] == "sandbox"
    assert tasks.sync_all_customers_task.run()["env"] == "live"
    customer_id = next(iter(shared_ids(two_envs)))
    two_envs.delete_customer(customer_id, env="sandbox")
    assert tasks.sync_customer_task.run(customer_id, env="sandbox") == "deleted"
    assert Customer.objects.get(env="sandbox", autumn_id=customer_id).deleted_at is not None
    assert Customer.objects.get(env="live", autumn_id=customer_id).deleted_at is None


def test_beat_entries_per_env(settings, monkeypatch):
    monkeypatch.delenv("AUTUMN_SECRET_KEY", raising=False)
    single = sync_schedule(every=600)
    assert list(single) == ["autumn-sync-all-customers"]
    assert "kwargs" not in single["autumn-sync-all-customers"]
    assert sync_schedule(every=600, env="live")["autumn-sync-all-customers-live"]["kwargs"] == {"env": "live"}

    both = sync_schedules(every=600, envs=KEYS)
    assert list(both) == ["autumn-sync-all-customers-sandbox", "autumn-sync-all-customers-live"]
    assert [entry["kwargs"] for entry in both.values()] == [{"env": "sandbox"}, {"env": "live"}]
    assert all(entry["task"] == "autumn_django.sync_all_customers" and entry["schedule"] == 600
               and entry["options"]["expires"] == 600 for entry in both.values())
    # One env keeps the single-env entry's name.
    assert list(sync_schedules(every=600, envs=["sandbox"])) == ["autumn-sync-all-customers"]
    # Left out, the envs are the configured ones (read from Django's settings).
    settings.AUTUMN_SECRET_KEY = TEST_KEY
    assert list(sync_schedules(every=600)) == ["autumn-sync-all-customers"]
    settings.AUTUMN_SECRET_KEYS = {"live": LIVE_KEY}
    assert sync_schedules(every=600) == both
    with pytest.raises(ValueError, match="unknown environment"):
        sync_schedules(every=600, envs=["production"])


@pytest.mark.django_db(transaction=True)
def test_each_beat_entry_runs_the_sync_of_its_env(two_envs):
    for entry in sync_schedules(every=600).values():
        result = tasks.sync_all_customers_task.apply(kwargs=entry["kwargs"]).get()
        assert (result["status"], result["env"]) == ("succeeded", entry["kwargs"]["env"])
    assert dict(SyncRun.objects.values_list("env", "status")) == {"sandbox": "succeeded", "live": "succeeded"}


# -- webhooks --------------------------------------------------------------------------


def deliver(client, url: str, payload: dict, secret: str, svix_id: str):
    body = json.dumps(payload).encode()
    timestamp = int(time.time())
    headers = {"svix-id": svix_id, "svix-timestamp": str(timestamp),
               "svix-signature": sign(secret, svix_id, timestamp, body)}
    return client.post(url, data=body, content_type="application/json", headers=headers)


@pytest.fixture
def webhooks(two_envs, settings):
    settings.AUTUMN_WEBHOOK_SECRETS = {"sandbox": SANDBOX_SECRET, "live": LIVE_SECRET}
    settings.AUTUMN_TASK_MODE = "inline"
    for env in KEYS:
        with AutumnClient(env=env) as client:
            sync_all_customers(client=client)
    two_envs.clear_requests()
    return two_envs


def test_the_urls():
    assert reverse("autumn:webhook") == "/autumn/webhooks/"
    assert reverse("autumn:webhook-env", kwargs={"env": "live"}) == "/autumn/webhooks/live/"
    assert reverse("autumn:webhook-env", kwargs={"env": "sandbox"}) == "/autumn/webhooks/sandbox/"


@pytest.mark.django_db(transaction=True)
def test_each_env_endpoint_verifies_with_its_own_secret_and_refreshes_from_its_env(client, webhooks):
    customer_id = next(iter(shared_ids(webhooks)))
    event = {"type": "billing.updated", "data": {"customer_id": customer_id}}
    webhooks.modify_customer(customer_id, env="live", name="Live upgraded")
    webhooks.modify_customer(customer_id, env="sandbox", name="Sandbox upgraded")
    live_url = reverse("autumn:webhook-env", kwargs={"env": "live"})
    sandbox_url = reverse("autumn:webhook-env", kwargs={"env": "sandbox"})

    # Signed by the sandbox app, delivered to the live URL: refused, not stored.
    refused = deliver(client, live_url, event, SANDBOX_SECRET, "msg_sandbox_to_live")
    assert refused.status_code == 400
    assert not WebhookEvent.objects.exists() and webhooks.requests == []

    assert deliver(client, live_url, event, LIVE_SECRET, "msg_live").json()["status"] == "processed"
    assert Customer.objects.get(env="live", autumn_id=customer_id).name == "Live upgraded"
    assert Customer.objects.get(env="sandbox", autumn_id=customer_id).name != "Sandbox upgraded"

    assert deliver(client, sandbox_url, event, SANDBOX_SECRET, "msg_sandbox").json()["status"] == "processed"
    assert Customer.objects.get(env="sandbox", autumn_id=customer_id).name == "Sandbox upgraded"
    assert deliver(client, sandbox_url, event, LIVE_SECRET, "msg_live_to_sandbox").status_code == 400

    # webhooks/ is AUTUMN_ENV's (live by default): the live secret, a live refresh.
    assert deliver(client, "/autumn/webhooks/", event, SANDBOX_SECRET, "msg_plain_sandbox").status_code == 400
    webhooks.modify_customer(customer_id, env="live", name="Live again")
    plain = deliver(client, "/autumn/webhooks/", event, LIVE_SECRET, "msg_plain")
    assert plain.json()["status"] == "processed"
    assert Customer.objects.get(env="live", autumn_id=customer_id).name == "Live again"


@pytest.mark.django_db(transaction=True)
def test_process_again_refreshes_from_the_env_of_the_endpoint_that_received_it(
        client, webhooks, django_user_model):
    """The sandbox endpoint's event failed; staff process it again later: the refresh must
    read the sandbox, not AUTUMN_ENV (live here)."""
    customer_id = next(iter(shared_ids(webhooks)))
    sandbox_url = reverse("autumn:webhook-env", kwargs={"env": "sandbox"})
    webhooks.faults.fail_next(1, status=400, endpoint="customers.get")
    event = {"type": "billing.updated", "data": {"customer_id": customer_id}}
    assert deliver(client, sandbox_url, event, SANDBOX_SECRET, "msg_retry").status_code == 500
    stored = WebhookEvent.objects.get(svix_id="msg_retry")
    assert (stored.status, stored.env) == (WebhookEvent.Status.FAILED, "sandbox")
    webhooks.modify_customer(customer_id, env="sandbox", name="Sandbox fixed")
    webhooks.modify_customer(customer_id, env="live", name="Live, not asked")
    client.force_login(django_user_model.objects.create_superuser("ops", "ops@example.com", "pw"))

    client.post("/admin/autumn_django/webhookevent/", {
        "action": "process_again", "index": "0", "_selected_action": [str(stored.pk)]}, follow=True)

    assert WebhookEvent.objects.get(pk=stored.pk).status == WebhookEvent.Status.PROCESSED
    assert Customer.objects.get(env="sandbox", autumn_id=customer_id).name == "Sandbox fixed"
    assert Customer.objects.get(env="live", autumn_id=customer_id).name != "Live, not asked"


@pytest.mark.django_db(transaction=True)
def test_the_single_webhook_secret_is_autumn_envs(client, webhooks, settings):
    settings.AUTUMN_WEBHOOK_SECRETS = None
    settings.AUTUMN_WEBHOOK_SECRET = SANDBOX_SECRET
    settings.AUTUMN_ENV = "sandbox"
    assert (webhook_secret_for("sandbox"), webhook_secret_for("live")) == (SANDBOX_SECRET, None)
    customer_id = next(iter(shared_ids(webhooks)))
    event = {"type": "billing.updated", "data": {"customer_id": customer_id}}
    plain = deliver(client, "/autumn/webhooks/", event, SANDBOX_SECRET, "msg_a")
    assert plain.json()["status"] == "processed"
    assert deliver(client, "/autumn/webhooks/sandbox/", event, SANDBOX_SECRET, "msg_b").status_code == 200
    # No live secret: the live endpoint accepts nothing.
    assert deliver(client, "/autumn/webhooks/live/", event, SANDBOX_SECRET, "msg_c").status_code == 500


@pytest.mark.django_db(transaction=True)
def test_a_legacy_event_naming_the_other_env_is_refused_at_an_env_endpoint(client, webhooks):
    customer_id = next(iter(shared_ids(webhooks)))
    data = {"scenario": "upgrade", "customer": {"id": customer_id, "env": "sandbox"}, "updated_product": {}}
    response = deliver(client, "/autumn/webhooks/live/", {"type": "customer.products.updated", "data": data},
                       LIVE_SECRET, "msg_legacy")
    assert response.json()["status"] == "ignored"
    assert "endpoint that received it is for live" in WebhookEvent.objects.get().error
    assert webhooks.requests == []


# -- feature checks and me/ follow AUTUMN_ENV --------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_feature_checks_and_me_follow_autumn_env(two_envs, settings, client):
    customer_id = next(iter(shared_ids(two_envs)))
    two_envs.modify_customer(customer_id, env="sandbox", flags={"sso": {"id": "f1", "plan_id": "pro"}})
    two_envs.modify_customer(customer_id, env="live", flags={})
    for env in KEYS:
        with AutumnClient(env=env) as autumn:
            sync_all_customers(client=autumn)
    user = get_user_model().objects.create_user("grace", password="pw")
    owner_field = "owner" if any(f.name == "owner" for f in Customer._meta.get_fields()) else "user"
    Customer.objects.filter(autumn_id=customer_id).update(**{owner_field: user})

    assert mirror_env() == "live" and not has_feature(user, "sso")
    client.force_login(user)
    assert client.get(reverse("autumn:me")).json()["env"] == "live"

    settings.AUTUMN_ENV = "sandbox"
    assert mirror_env() == "sandbox" and has_feature(user, "sso")
    assert check_feature(user, "sso").allowed
    assert client.get(reverse("autumn:me")).json()["env"] == "sandbox"


# -- checks ----------------------------------------------------------------------------


def ids() -> list[str]:
    return [message.id for message in checks.run_checks(tags=[TAG])]


@pytest.mark.parametrize(("changes", "expected"), [
    ({"AUTUMN_SECRET_KEYS": dict(KEYS)}, []),
    ({"AUTUMN_SECRET_KEYS": dict(KEYS), "AUTUMN_SECRET_KEY": None}, []),
    ({"AUTUMN_SECRET_KEYS": {"live": LIVE_KEY}, "AUTUMN_SECRET_KEY": None}, []),
    ({"AUTUMN_SECRET_KEYS": "am_sk_live_notADict00000"}, ["autumn_django.E021"]),
    ({"AUTUMN_SECRET_KEYS": {"production": LIVE_KEY}}, ["autumn_django.E021"]),
    ({"AUTUMN_SECRET_KEYS": {"live": TEST_KEY}}, ["autumn_django.E022"]),
    ({"AUTUMN_SECRET_KEYS": {"sandbox": LIVE_KEY}}, ["autumn_django.E022"]),
    ({"AUTUMN_SECRET_KEYS": {"live": "pk_live_publishable"}}, ["autumn_django.E022"]),
    ({"AUTUMN_SECRET_KEYS": {"sandbox": "am_sk_test_another0000000000000"}}, ["autumn_django.E023"]),
    ({"AUTUMN_ENV": "production"}, ["autumn_django.E024"]),
    ({"AUTUMN_ENV": "live"}, ["autumn_django.E025"]),
    ({"AUTUMN_ENV": "live", "AUTUMN_SECRET_KEYS": {"live": LIVE_KEY}}, []),
    ({"AUTUMN_ENV": "sandbox", "AUTUMN_SECRET_KEYS": {"live": LIVE_KEY}, "AUTUMN_SECRET_KEY": None},
     ["autumn_django.E025"]),
    ({"AUTUMN_WEBHOOK_SECRETS": {"sandbox": SANDBOX_SECRET, "live": LIVE_SECRET}}, []),
    ({"AUTUMN_WEBHOOK_SECRETS": {"prod": LIVE_SECRET}}, ["autumn_django.E026"]),
    ({"AUTUMN_WEBHOOK_SECRETS": {"live": "whsec_not base64!"}}, ["autumn_django.E027"]),
])
def test_env_checks(settings, monkeypatch, changes, expected):
    monkeypatch.delenv("AUTUMN_SECRET_KEY", raising=False)
    for name, value in changes.items():
        setattr(settings, name, value)
    messages = checks.run_checks(tags=[TAG])
    assert [m.id for m in messages] == expected
    for message in messages:
        assert message.hint and "am_sk_live_suite" not in message.msg and "another0000" not in message.msg


def test_an_unknown_env_name_suggests_the_closest(settings):
    settings.AUTUMN_SECRET_KEYS = {"Live ": LIVE_KEY}
    [message] = checks.run_checks(tags=[TAG])
    assert "did you mean 'live'?" in message.msg


# -- autumn_webhook --------------------------------------------------------------------


def test_autumn_webhook_registers_once_and_shows_the_secret_once(two_envs, caplog):
    url = "https://example.com/autumn/webhooks/live/"
    first = StringIO()
    call_command("autumn_webhook", "--url", url, stdout=first)
    [endpoint] = server_endpoints(two_envs, "live")
    assert endpoint["url"] == url and endpoint["events"] == sorted(EVENT_TYPES) == handled_events()
    assert server_endpoints(two_envs, "sandbox") == []
    text = first.getvalue()
    secret = text.split("AUTUMN_WEBHOOK_SECRETS = {'live': '")[1].split("'")[0]
    assert secret.startswith("whsec_") and f"Created the live webhook endpoint {endpoint['id']}" in text
    assert secret not in caplog.text

    second = StringIO()
    call_command("autumn_webhook", "--url", url, "--env", "live", stdout=second)
    assert server_endpoints(two_envs, "live") == [endpoint]
    assert "Updated the live webhook endpoint" in second.getvalue()
    assert "secret was not changed" in second.getvalue() and "whsec_" not in second.getvalue()

    # The sandbox endpoint is the sandbox key's own.
    call_command("autumn_webhook", "--url", "https://example.com/autumn/webhooks/sandbox/", stdout=StringIO())
    assert [e["url"] for e in server_endpoints(two_envs, "sandbox")] == [
        "https://example.com/autumn/webhooks/sandbox/"]
    with pytest.raises(CommandError, match="is the live endpoint"):
        call_command("autumn_webhook", "--url", url, "--env", "sandbox", stdout=StringIO())
