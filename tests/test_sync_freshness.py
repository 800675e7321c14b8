"""How fresh the mirror is: ``sync_finished`` after every complete sync, the system check
``autumn_django.W004`` when the last one is too old (or there is none), and the banner on
the admin's customer list (issue 14)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.core import checks
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from autumn_django import signals
from autumn_django.exceptions import AuthenticationError
from autumn_django.models import SyncRun
from autumn_django.sync import sync_all_customers

from .conftest import run_manage

pytestmark = pytest.mark.django_db(transaction=True)

CUSTOMERS = "/admin/autumn_django/customer/"


# -- sync_finished ------------------------------------------------------------------------


@pytest.fixture
def finished():
    got: list[tuple] = []

    def receiver(sender, signal, run, counts, using, **kwargs):
        got.append((sender, run.pk, run.status, counts, using, connections[using].in_atomic_block,
                    SyncRun.objects.using(using).get(pk=run.pk).status))

    signals.sync_finished.connect(receiver, weak=False)
    yield got
    signals.sync_finished.disconnect(receiver)


def counts_of(run: SyncRun) -> dict[str, int]:
    run = SyncRun.objects.get(pk=run.pk)
    return {name: getattr(run, name) for name in
            ("created", "updated", "unchanged", "deleted", "undeleted", "skipped", "reread",
             "entities_created", "entities_updated", "entities_unchanged", "entities_deleted",
             "entities_skipped")}


def test_sync_finished_is_sent_once_after_a_run_succeeds_and_never_for_a_failed_one(make_standin, finished):
    server = make_standin(30)
    server.faults.fail_next(1, status=401, endpoint="customers.list", after=1)  # the second page

    with pytest.raises(AuthenticationError):
        sync_all_customers(page_size=10)
    assert SyncRun.objects.get().status == "failed"
    assert finished == [], "a failed run's counts are partial: nothing is sent"

    run = sync_all_customers(page_size=10)  # resumes the failed run and completes it

    assert finished == [(SyncRun, run.pk, "succeeded", counts_of(run), "default", False, "succeeded")]
    assert counts_of(run)["created"] == 30

    sync_all_customers()  # every complete run sends it, changed or not
    assert len(finished) == 2 and finished[1][3]["unchanged"] == 30


def test_a_sync_finished_receiver_that_raises_leaves_the_run_succeeded(make_standin, caplog):
    make_standin(5)

    def broken(sender, **kwargs):
        raise RuntimeError("report service down")

    signals.sync_finished.connect(broken, weak=False)
    try:
        run = sync_all_customers()
    finally:
        signals.sync_finished.disconnect(broken)

    assert run.status == SyncRun.Status.SUCCEEDED == SyncRun.objects.get().status
    [logged] = [r.getMessage() for r in caplog.records
                if r.name == "autumn_django.sync.events" and r.levelno == logging.ERROR]
    assert "broken" in logged and "RuntimeError: report service down" in logged


# -- the staleness check -----------------------------------------------------------------


def run_of(env: str = "sandbox", status: str = "succeeded", *, age: timedelta, using: str = "default"):
    now = timezone.now()
    return SyncRun.objects.using(using).create(
        env=env, status=status, started_at=now - age - timedelta(minutes=3), heartbeat_at=now - age,
        finished_at=now - age, lease_token="t" * 32, page_size=1000)


def w004(databases=("default",)) -> list[checks.CheckMessage]:
    messages = checks.run_checks(tags=["autumn"], databases=list(databases))
    return [message for message in messages if message.id == "autumn_django.W004"]


def test_a_fresh_mirror_raises_no_warning():
    run_of(age=timedelta(hours=2))
    assert w004() == []


def test_a_stale_mirror_is_warned_about(settings):
    stale = run_of(age=timedelta(hours=26))
    run_of(status="failed", age=timedelta(minutes=5))  # a failed run is no complete sync
    run_of(env="live", age=timedelta(minutes=5))  # nor is one of the other env

    [warning] = w004()

    assert warning.level == checks.WARNING
    assert warning.msg.startswith("The last complete sync of the sandbox customers finished "
                                  "1 day, 2 hours ago")
    assert f"run #{stale.pk}" in warning.msg
    assert warning.msg.endswith(
        "longer ago than AUTUMN_SYNC_STALE_AFTER_SECONDS (90000 s): the mirror may be stale.")
    assert "manage.py autumn_sync" in warning.hint and "sync_schedule" in warning.hint

    settings.AUTUMN_SYNC_STALE_AFTER_SECONDS = 27 * 3600
    assert w004() == []
    settings.AUTUMN_SYNC_STALE_AFTER_SECONDS = "a day"  # E019 says so; W004 keeps quiet
    assert [m.id for m in checks.run_checks(tags=["autumn"], databases=["default"])] == ["autumn_django.E019"]


def test_a_mirror_never_synced_is_warned_about():
    assert [w.msg for w in w004()] == [
        "No complete sync of the sandbox customers has finished yet: the mirror may be stale or empty."]
    run_of(status="failed", age=timedelta(minutes=1))
    assert len(w004()) == 1


@pytest.mark.django_db(databases=["default", "other"], transaction=True)
def test_the_check_reads_only_the_databases_django_passes():
    run_of(age=timedelta(hours=1))  # in "default" only

    for alias in ("default", "other"):
        with CaptureQueriesContext(connections[alias]) as queries:
            assert w004(databases=()) == []
        assert [q for q in queries.captured_queries if "autumn_django_syncrun" in q["sql"]] == [], alias
    assert w004(databases=["default"]) == []
    assert [w.msg[:30] for w in w004(databases=["other"])] == ["No complete sync of the sandbo"]
    assert w004(databases=["default", "other"]) == [], "the newest complete sync in any of them"


@pytest.mark.django_db(transaction=False)
def test_without_the_table_the_check_says_nothing_and_breaks_no_transaction():
    # As before `migrate`: the query fails. Inside a transaction (this test's, rolled back
    # after it) that must not leave the transaction aborted (PostgreSQL) for what follows.
    table = SyncRun._meta.db_table
    assert transaction.get_connection().in_atomic_block
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
    assert w004() == []
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table}_away RENAME TO {table}")
    assert SyncRun.objects.count() == 0
    assert len(w004()) == 1


def test_before_migrate_manage_py_check_passes_quietly(tmp_path):
    fresh = tmp_path / "never-migrated.sqlite3"
    result = run_manage("check", "--tag", "autumn",
                        env_extra={"AUTUMN_TEST_DB": "sqlite", "AUTUMN_TEST_SQLITE": str(fresh)})
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout and "W004" not in result.stdout + result.stderr


# -- the banner on the customer list -------------------------------------------------------


def test_the_customer_list_says_when_the_last_complete_sync_was(admin_client):
    run = run_of(age=timedelta(hours=2))
    html = admin_client.get(CUSTOMERS).content.decode()
    assert "Last complete sync of the sandbox customers: 2\xa0hours ago" in html
    assert f'href="/admin/autumn_django/syncrun/{run.pk}/change/"' in html
    assert "may be stale" not in html


def test_the_customer_list_says_the_mirror_may_be_stale(admin_client, settings):
    run_of(age=timedelta(hours=26))
    html = admin_client.get(CUSTOMERS).content.decode()
    assert ('<ul class="messagelist autumn-freshness"><li class="warning">' in html.replace("\n", ""))
    assert ("The mirror may be stale: the last complete sync of the sandbox customers finished "
            "1\xa0day, 2\xa0hours ago") in html

    settings.AUTUMN_SYNC_STALE_AFTER_SECONDS = 30 * 3600
    assert "may be stale" not in admin_client.get(CUSTOMERS).content.decode()


def test_the_customer_list_says_when_no_complete_sync_ever_ran(admin_client):
    run_of(status="failed", age=timedelta(minutes=1))
    html = admin_client.get(CUSTOMERS).content.decode()
    assert "The mirror may be stale: no complete sync of the sandbox customers has finished yet." in html
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(CUSTOMERS)
    assert len([q for q in queries.captured_queries if "autumn_django_syncrun" in q["sql"]]) == 1
