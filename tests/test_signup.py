"""Signup and profile changes without a worker: inline and off modes, the id mapping, and
what happens when the broker is down."""

from __future__ import annotations

import logging
import time

import pytest
from django.contrib.auth import get_user_model

from autumn_django.exceptions import AutumnConfigurationError
from autumn_django.models import Customer
from autumn_django.owners import CUSTOMER_ID_PATTERN, customer_fields_for, default_customer_fields
from autumn_django.sync import store_customer, sync_all_customers
from autumn_django.tasks import update_customer_for_owner_task

from .celery_app import app as celery_app

pytestmark = pytest.mark.django_db(transaction=True)
User = get_user_model()


def autumn_calls(server, endpoint: str) -> list[dict]:
    return [body for name, body in server.requests if name == endpoint]


def test_inline_signup_creates_and_links_the_customer(make_standin, settings):
    server = make_standin(5)
    settings.AUTUMN_TASK_MODE = "inline"
    settings.AUTUMN_AUTO_ENABLE_PLAN_ID = "free"

    user = User.objects.create_user("zoë", "zoe@example.com", "x", first_name="Zoë", last_name="Ångström")

    row = Customer.objects.get(owner=user)
    assert row.autumn_id == f"user_{user.pk}" and row.name == "Zoë Ångström"
    assert row.raw == server.get_customer(row.autumn_id)
    call = autumn_calls(server, "customers.get_or_create")[0]
    assert call["auto_enable_plan_id"] == "free"
    assert [s["plan_id"] for s in row.raw["subscriptions"]] == ["free"]


def test_off_mode_never_calls_autumn(make_standin, settings):
    server = make_standin(5)
    settings.AUTUMN_TASK_MODE = "off"
    User.objects.create_user("quiet", "quiet@example.com", "x")
    assert server.requests == []
    assert not Customer.objects.exists()


def test_signup_survives_autumn_being_down_inline(make_standin, settings, caplog):
    server = make_standin(5)
    settings.AUTUMN_TASK_MODE = "inline"
    settings.AUTUMN_MAX_RETRIES = 0
    server.faults.fail_next(5, status=503, retry_after=0)

    user = User.objects.create_user("unlucky", "unlucky@example.com", "x")

    assert User.objects.filter(pk=user.pk).exists()
    assert not Customer.objects.filter(owner=user).exists()
    assert "autumn_django.create_customer_for_owner failed" in caplog.text


def test_signup_survives_the_broker_being_down_and_does_not_wait(make_standin, settings, caplog):
    make_standin(5)
    settings.AUTUMN_TASK_MODE = "celery"
    old = celery_app.conf.broker_url
    celery_app.conf.broker_url = "redis://127.0.0.1:9/0"  # nothing listens on port 9
    caplog.set_level(logging.WARNING)
    try:
        started = time.monotonic()
        user = User.objects.create_user("brokerless", "b@example.com", "x")
        elapsed = time.monotonic() - started
    finally:
        celery_app.conf.broker_url = old
    assert User.objects.filter(pk=user.pk).exists()
    assert elapsed < 2.0, f"signup waited {elapsed:.1f} s on a dead broker"
    assert "Could not queue autumn_django.create_customer_for_owner" in caplog.text


def test_a_later_full_sync_links_users_whose_signup_never_reached_autumn(make_standin, settings):
    server = make_standin(5)
    settings.AUTUMN_TASK_MODE = "off"
    user = User.objects.create_user("late", "late@example.com", "x")
    server.add_customer({"id": f"user_{user.pk}", "email": "late@example.com", "name": "late"})

    sync_all_customers()

    assert Customer.objects.get(autumn_id=f"user_{user.pk}").owner == user


@pytest.mark.parametrize(("username", "email", "expected_email"), [
    ("ada@example.com", "ada@example.com", "ada@example.com"),  # username is an email
    ("name with spaces.and.dots", "", None),
    ("汉字ユーザー", "not-an-email", None),  # Autumn would answer 400 to that address
    ("x" * 150, "long@example.com", "long@example.com"),
])
def test_default_mapping_gives_ids_autumn_accepts(username, email, expected_email):
    user = User.objects.create_user(username, email, "x")
    fields = default_customer_fields(user)
    assert CUSTOMER_ID_PATTERN.match(fields["customer_id"])
    assert fields["customer_id"] == f"user_{user.pk}"
    assert fields["email"] == expected_email
    assert fields["name"] == username


def test_default_mapping_is_accepted_by_autumn_for_an_awkward_user(make_standin, settings):
    server = make_standin(0)
    settings.AUTUMN_TASK_MODE = "inline"
    user = User.objects.create_user("ünïcode@example.com", "not an email", "x")
    row = Customer.objects.get(owner=user)
    assert row.email is None and server.get_customer(f"user_{user.pk}") is not None


def email_as_id(user):
    return {"customer_id": user.email, "name": None, "email": user.email}


def test_a_project_mapping_that_gives_invalid_ids_is_refused_clearly(settings):
    settings.AUTUMN_CUSTOMER_FIELDS = "tests.test_signup.email_as_id"
    user = User.objects.create_user("e", "e@example.com", "x")
    with pytest.raises(AutumnConfigurationError, match=r"gave customer_id 'e@example\.com'"):
        customer_fields_for(user)


def test_profile_change_updates_autumn_and_the_mirror(make_standin, settings):
    server = make_standin(3)
    settings.AUTUMN_TASK_MODE = "inline"
    settings.AUTUMN_UPDATE_ON_PROFILE_CHANGE = True
    user = User.objects.create_user("lin", "lin@example.com", "x", first_name="Lin")
    server.clear_requests()

    user.first_name, user.email = "Lin-Manuel", "lm@example.com"
    user.save()

    updates = autumn_calls(server, "customers.update")
    assert updates == [{"customer_id": f"user_{user.pk}", "name": "Lin-Manuel", "email": "lm@example.com"}]
    row = Customer.objects.get(owner=user)
    assert (row.name, row.email) == ("Lin-Manuel", "lm@example.com")
    assert server.get_customer(row.autumn_id)["email"] == "lm@example.com"

    user.last_login = user.date_joined  # not a profile field
    user.save()
    assert len(autumn_calls(server, "customers.update")) == 1


def test_profile_changes_are_not_sent_unless_asked(make_standin, settings):
    server = make_standin(3)
    settings.AUTUMN_TASK_MODE = "inline"
    user = User.objects.create_user("kim", "kim@example.com", "x")
    user.first_name = "Kim"
    user.save()
    assert autumn_calls(server, "customers.update") == []


def test_profile_change_goes_to_the_customer_of_the_keys_env(make_standin):
    server = make_standin(0)  # the suite's key is a sandbox key (am_sk_test_...)
    user = User.objects.create_user("sam", "sam@example.com", "x", first_name="Sam")
    # Linked in both envs, the live row first: "the user's first customer" is the wrong one.
    for env, customer_id in (("live", "sam_live"), ("sandbox", "sam_sandbox")):
        data = server.add_customer({"id": customer_id, "email": "sam@example.com", "name": "Sam"}, env=env)
        store_customer(data, env=env, owner=user)
    assert list(user.autumn_customers.order_by("pk").values_list("env", flat=True)) == ["live", "sandbox"]
    User.objects.filter(pk=user.pk).update(first_name="Samira")
    server.clear_requests()

    assert update_customer_for_owner_task(user.pk) == "sam_sandbox"

    updates = autumn_calls(server, "customers.update")
    assert updates == [{"customer_id": "sam_sandbox", "name": "Samira", "email": "sam@example.com"}]
    assert autumn_calls(server, "customers.get_or_create") == []
    assert Customer.objects.get(env="sandbox", owner=user).name == "Samira"
    assert Customer.objects.get(env="live", owner=user).name == "Sam"  # another env, untouched
