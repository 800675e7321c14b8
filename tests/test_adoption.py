"""``manage.py autumn_sync --create-missing`` (``autumn_django.adoption``): owners that existed
before the app get their customer, under Autumn's rate limits, resumably, none twice."""

from __future__ import annotations

import io
import os
import signal
import time

import pytest
from django.core.management import CommandError, call_command

from autumn_django.adoption import create_missing_customers
from autumn_django.conf import get_owner_model
from autumn_django.models import Customer
from autumn_django.owners import owner_is_user_model
from autumn_django.sync.single import store_customer

from .conftest import TEST_KEY, run_manage

pytestmark = pytest.mark.django_db(transaction=True)

OWNERS = 2000
KILLED_OWNERS = OWNERS
KILLED_AFTER = 500  # linked owners when the run is killed


@pytest.fixture
def owners(settings):
    """``make(n)``: ``n`` owners (users, or organisations under tests.settings_org) created
    before the app (no signup ran), by primary key."""
    settings.AUTUMN_TASK_MODE = "off"
    Owner = get_owner_model()

    def make(n: int) -> list:
        if owner_is_user_model():
            new = [Owner(username=f"old{i}", email=f"old{i}@example.com", first_name=f"Old {i}",
                         password="!") for i in range(n)]
        else:
            new = [Owner(name=f"Old {i}", email=f"old{i}@example.com") for i in range(n)]
        Owner.objects.bulk_create(new, batch_size=1000)
        return list(Owner.objects.order_by("pk"))

    return make


def mapped_id(owner) -> str:
    return f"{'user' if owner_is_user_model() else owner._meta.model_name}_{owner.pk}"


def adopt_env(server) -> dict[str, str]:
    """The child's environment: this stand-in, and these settings (users or organisations)."""
    return {"AUTUMN_SECRET_KEY": TEST_KEY, "AUTUMN_RETRY_MAX_SECONDS": "10",
            "AUTUMN_API_URL": server.url, "AUTUMN_TASK_MODE": "off",
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE") or "tests.settings"}


def calls(server, endpoint: str = "customers.get_or_create") -> int:
    return sum(1 for name, _ in server.requests if name == endpoint)


def assert_each_owner_has_one_customer(server, users) -> None:
    """Each owner: one linked row in the mirror, one customer in Autumn, under its id."""
    in_autumn = [c["id"] for c in server.list_customers()]
    assert len(in_autumn) == len(set(in_autumn))
    expected = {mapped_id(user) for user in users}
    assert expected <= set(in_autumn)
    linked = dict(Customer.objects.filter(env="sandbox").exclude(owner=None)
                  .values_list("owner_id", "autumn_id"))
    assert linked == {user.pk: mapped_id(user) for user in users}
    assert Customer.objects.filter(env="sandbox", autumn_id__in=expected).count() == len(users)


def test_every_owner_gets_one_customer_under_rate_limits(make_standin, owners):
    server = make_standin(0)
    users = owners(OWNERS)
    # Autumn's two limiters, several times along the way: the client waits each out.
    server.faults.rate_limit_next(3, retry_after=1, endpoint="customers.get_or_create", after=50)
    server.faults.rate_limit_next(4, kind="json", endpoint="customers.get_or_create", after=700)
    server.faults.rate_limit_next(3, retry_after=1, endpoint="customers.get_or_create", after=1500)
    seen = []

    result = create_missing_customers(progress=seen.append)

    assert (result.created, result.linked, result.skipped, result.errors) == (OWNERS, 0, 0, [])
    assert calls(server) == OWNERS + 10  # each 429 asked again, nothing else
    assert_each_owner_has_one_customer(server, users)
    assert seen[-1].done == seen[-1].total == OWNERS
    assert create_missing_customers().created == 0  # nothing left to do


def test_a_killed_run_is_finished_by_the_next_creating_none_twice(make_standin, owners):
    server = make_standin(0)
    users = owners(KILLED_OWNERS)
    server.faults.rate_limit_next(3, kind="json", endpoint="customers.get_or_create", after=100)
    child = run_manage("autumn_sync", "--create-missing", background=True,
                       env_extra=adopt_env(server))
    deadline = time.monotonic() + 120
    while Customer.objects.exclude(owner=None).count() < KILLED_AFTER:
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    done_before = Customer.objects.exclude(owner=None).count()
    assert KILLED_AFTER <= done_before < KILLED_OWNERS
    created_before = calls(server)

    result = run_manage("autumn_sync", "--create-missing", env_extra=adopt_env(server))

    assert result.returncode == 0, result.stderr
    assert_each_owner_has_one_customer(server, users)
    # Only the rest was asked for: what the killed run stored was not asked again (one
    # call may have been in flight, its answer lost: get_or_create finds it, not a twin).
    assert calls(server) - created_before <= KILLED_OWNERS - done_before + 4
    assert len(server.list_customers()) == KILLED_OWNERS


def test_dry_run_counts_and_writes_nothing(make_standin, owners):
    server = make_standin(0)
    users = owners(5)
    store_customer(server.add_customer({"id": mapped_id(users[0]), "name": "Old 0"}), env="sandbox")
    out = io.StringIO()

    call_command("autumn_sync", "--create-missing", "--dry-run", stdout=out, stderr=io.StringIO())

    assert "Dry run (sandbox): would create 4 customers for owners and link 1 existing" in out.getvalue()
    assert server.requests == []
    assert not Customer.objects.exclude(owner=None).exists()
    assert Customer.objects.count() == 1


def test_an_owner_whose_customer_exists_is_linked_not_created(make_standin, owners):
    server = make_standin(0)
    users = owners(3)
    existing_id = mapped_id(users[1])
    # In Autumn and the mirror, not linked (its signup task failed, say).
    store_customer(server.add_customer({"id": existing_id, "name": "Already"}), env="sandbox")

    result = create_missing_customers()

    assert (result.created, result.linked) == (2, 1)
    asked = [body["customer_id"] for name, body in server.requests if name == "customers.get_or_create"]
    assert existing_id not in asked and len(asked) == 2
    assert Customer.objects.get(autumn_id=existing_id).owner == users[1]
    assert_each_owner_has_one_customer(server, users)


def test_an_owner_whose_mapping_fails_is_reported_and_skipped(make_standin, owners, settings):
    server = make_standin(0)
    users = owners(3)
    settings.AUTUMN_CUSTOMER_FIELDS = lambda user: {
        "customer_id": "not valid!" if user.pk == users[2].pk else mapped_id(user)}

    result = create_missing_customers(concurrency=2)

    assert (result.created, result.skipped) == (2, 1)
    assert result.errors[0]["owner"] == users[2].pk and "not valid!" in result.errors[0]["error"]
    assert not Customer.objects.filter(owner=users[2]).exists()
    assert len(server.list_customers()) == 2


def test_the_command_prints_progress_and_a_summary(make_standin, owners):
    server = make_standin(0)
    users = owners(12)
    store_customer(server.add_customer({"id": mapped_id(users[0]), "name": "Old 0"}), env="sandbox")

    result = run_manage("autumn_sync", "--create-missing", env_extra=adopt_env(server))

    assert result.returncode == 0, result.stderr
    assert "11 of 11 owners" in result.stderr and "(created 11)" in result.stderr
    assert "Created 11 sandbox customers for owners, linked 1 existing, skipped 0, in " in result.stdout
    assert result.stdout.rstrip().endswith(" s.")
    assert_each_owner_has_one_customer(server, users)


@pytest.mark.parametrize("args", [["--dry-run"], ["--create-missing", "--customer", "x"],
                                  ["--create-missing", "--concurrency", "0"]])
def test_create_missing_options_are_checked(args):
    with pytest.raises(CommandError) as raised:
        call_command("autumn_sync", *args, stdout=io.StringIO(), stderr=io.StringIO())
    assert raised.value.returncode == 2
