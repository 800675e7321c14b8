"""Fixtures shared by the suite: a real stand-in server per test and helpers that compare
the mirror with it field by field."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from autumn_django.models import Customer
from autumn_django.testing import AutumnStandIn, make_customers, make_entities
from autumn_django.testing.skew import skew_created_at

pytest_plugins = ["autumn_django.testing.pytest_plugin"]

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_KEY = "am_sk_test_suite0000000000000000"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def make_standin(settings) -> Iterator[Callable[..., AutumnStandIn]]:
    """Start a stand-in seeded with ``n`` customers (``entities=True``: and their entities,
    ``make_entities``; ``skew=True``: bunched in time, ``skew_created_at``) and point the
    app's settings at it."""
    servers: list[AutumnStandIn] = []

    def start(n: int = 60, *, seed: int = 7, entities: bool = False, skew: bool = False,
              **options) -> AutumnStandIn:
        customers = make_customers(n, seed=seed)
        if skew:
            customers = skew_created_at(customers, seed)
        if entities:
            options["entities"] = make_entities(customers, seed=seed)
        server = AutumnStandIn(customers=customers, **options)
        server.start()
        servers.append(server)
        settings.AUTUMN_API_URL = server.url
        settings.AUTUMN_SECRET_KEY = TEST_KEY
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(autouse=True)
def _no_sync_lock_outlives_its_test(request) -> Iterator[None]:
    """A test that starts a run and never finishes it leaves PostgreSQL's advisory lock
    held by this process's connection; a later test's sync would then read that as a live
    run elsewhere. Release them all when a database test ends."""
    yield
    if not ({"db", "transactional_db"} & set(request.fixturenames)
            or request.node.get_closest_marker("django_db")):
        return
    from django.db import connections

    for alias in connections:
        conn = connections[alias]
        if conn.vendor == "postgresql" and conn.connection is not None and not conn.needs_rollback:
            # The driver's own cursor: this test may not be allowed this alias any more.
            with conn.connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock_all()")


@pytest.fixture
def celery_app(request) -> Iterator[Any]:
    """A Celery app of this test's own with an in-memory broker, current while the test
    runs; no worker consumes its queue, so what the code under test published can be read
    back with ``published_tasks``."""
    from celery import Celery, _state

    previous = _state.get_current_app()
    queue = f"autumn-tests-{request.node.module.__name__.rsplit('.', 1)[-1]}"
    app = Celery("autumn_django_tests", set_as_current=True)
    app.conf.update(broker_url="memory://", task_default_queue=queue)
    yield app
    previous.set_current()


def published_tasks(app: Any) -> list[tuple[str, str]]:
    """(task name, repr of its arguments) of every message waiting in ``app``'s queue."""
    found = []
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(app.conf.task_default_queue)
        while True:
            try:
                message = queue.get(timeout=0.2)
            except queue.Empty:
                break
            found.append((message.headers["task"], message.headers["argsrepr"]))
            message.ack()
        queue.close()
    return found


def add_null_cursor_defect(server: AutumnStandIn, base: int = 1_700_000_000_000) -> int:
    """Nine customers created at ``base`` + 0..8 ms, the third without an id: crawled three
    a page, Autumn answers the full first page with next_cursor null although six more
    follow. Returns ``base``."""
    for i in range(9):
        server.add_customer({"id": None if i == 2 else f"c{i}", "email": f"c{i}@example.com",
                             "created_at": base + i, "subscriptions": [], "purchases": [],
                             "balances": {}, "flags": {}})
    return base


def ms_to_datetime(value: int | None) -> datetime | None:
    return None if value is None else EPOCH + timedelta(milliseconds=value)


def expected_children(customer: dict) -> dict[str, set[tuple]]:
    """The child rows a customer object should give, built straight from Autumn's JSON."""
    t = ms_to_datetime
    return {
        "subscriptions": {
            (s.get("id"), s["plan_id"], s["status"], bool(s.get("auto_enable")), bool(s.get("add_on")),
             bool(s.get("past_due")), s.get("quantity"), t(s.get("started_at")),
             t(s.get("current_period_start")), t(s.get("current_period_end")), t(s.get("canceled_at")),
             t(s.get("expires_at")), t(s.get("trial_ends_at")))
            for s in customer.get("subscriptions") or []
        },
        "purchases": {
            (p["plan_id"], p.get("quantity"), t(p.get("started_at")), t(p.get("expires_at")))
            for p in customer.get("purchases") or []
        },
        "balances": {
            (feature, _float(b.get("granted")), _float(b.get("remaining")), _float(b.get("usage")),
             bool(b.get("unlimited")), bool(b.get("overage_allowed")), _float(b.get("max_purchase")),
             t(b.get("next_reset_at")), json.dumps(b.get("breakdown") or [], sort_keys=True))
            for feature, b in (customer.get("balances") or {}).items()
        },
        "flags": {
            (f.get("id"), feature, f.get("plan_id"), t(f.get("expires_at")))
            for feature, f in (customer.get("flags") or {}).items()
        },
    }


def mirrored_children(row: Customer) -> dict[str, set[tuple]]:
    return {
        "subscriptions": set(row.subscriptions.values_list(
            "subscription_id", "plan_id", "status", "auto_enable", "add_on", "past_due", "quantity",
            "started_at", "current_period_start", "current_period_end", "canceled_at", "expires_at",
            "trial_ends_at")),
        "purchases": set(row.purchases.values_list("plan_id", "quantity", "started_at", "expires_at")),
        "balances": {
            (*values[:-1], json.dumps(values[-1], sort_keys=True))
            for values in row.balances.values_list(
                "feature_id", "granted", "remaining", "usage", "unlimited", "overage_allowed",
                "max_purchase", "next_reset_at", "breakdown")
        },
        "flags": set(row.flags.values_list("flag_id", "feature_id", "plan_id", "expires_at")),
    }


def assert_mirror_matches(server: AutumnStandIn, env: str = "sandbox", using: str = "default") -> int:
    """Every customer of the stand-in is a present row equal to it field by field, and
    every present row is a customer of the stand-in (rows of database ``using``). Returns
    how many were compared."""
    expected = server.list_customers(env=env)
    rows = {
        (c.autumn_id if c.autumn_id is not None else ("email", c.email)): c
        for c in Customer.objects.using(using).filter(env=env).present().prefetch_related(
            "subscriptions", "purchases", "balances", "flags")
    }
    assert len(rows) == len(expected), f"mirror has {len(rows)} present customers, Autumn {len(expected)}"
    for customer in expected:
        key = customer["id"] if customer["id"] is not None else ("email", customer["email"])
        row = rows.get(key)
        assert row is not None, f"customer {key!r} missing from the mirror"
        assert row.raw == customer, f"raw JSON of {key!r} differs"
        assert (row.autumn_id, row.name, row.email, row.fingerprint, row.stripe_id,
                row.send_email_receipts, row.created_at) == (
            customer["id"], customer.get("name"), customer.get("email"), customer.get("fingerprint"),
            customer.get("stripe_id"), bool(customer.get("send_email_receipts")),
            ms_to_datetime(customer["created_at"])), f"columns of {key!r} differ"
        assert mirrored_children(row) == expected_children(customer), f"children of {key!r} differ"
    return len(expected)


def _float(value):
    return None if value is None else float(value)


def sync_killed_once(server: AutumnStandIn, committed: Callable[[], bool], what: str,
                     *args: str, **env: str) -> None:
    """``manage.py autumn_sync *args`` in a child process against ``server``, killed with
    SIGKILL once ``committed()`` holds (it may run for minutes on a loaded machine)."""
    child = run_manage("autumn_sync", *args, background=True,
                       env_extra={"AUTUMN_API_URL": server.url, "AUTUMN_SECRET_KEY": TEST_KEY, **env})
    try:
        deadline = time.monotonic() + 120
        while not committed():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def run_manage(*args: str, env_extra: dict[str, str] | None = None, timeout: float = 120,
               module: str = "django", **popen) -> subprocess.CompletedProcess | subprocess.Popen:
    """Run ``python -m django`` (or another ``module``, e.g. celery) with the test settings
    against the test database, in a child process (for exit codes, killed runs, workers)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(REPO_ROOT)}
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        env["AUTUMN_TEST_SQLITE"] = str(Path(db["NAME"]).resolve())
    else:
        env["PGDATABASE"] = db["NAME"]
    env.update(env_extra or {})
    command = [sys.executable, "-m", module, *args]
    if popen.pop("background", False):
        popen.setdefault("stdout", subprocess.PIPE)
        popen.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen(command, env=env, cwd=REPO_ROOT, text=True, **popen)
    return subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)


# The Celery tests' real redis-server and workers, one Redis for the whole session whichever
# module asks first (defined apart; imported last: they use run_manage above).
from .celery_fixtures import celery_env, redis_url, start_celery  # noqa: E402, F401
