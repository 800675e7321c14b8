"""Celery behaviour with real parts: a redis-server, `celery worker` and `celery beat` in
child processes, the stand-in over HTTP, and the test database shared with the worker."""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from autumn_django.models import Customer, SyncRun
from autumn_django.schedules import sync_schedule
from autumn_django.tasks import sync_all_customers_task

from .celery_fixtures import wait_for
from .conftest import TEST_KEY, assert_mirror_matches

pytestmark = pytest.mark.django_db(transaction=True)


def test_new_user_ends_with_a_linked_mirror_row(make_standin, start_celery):
    server = make_standin(10)
    worker = start_celery("worker", AUTUMN_API_URL=server.url)
    # Autumn takes 3 s to answer: a signup that waited on the worker or on Autumn would
    # return with the customer already stored. (Not a timed assertion: it was one, and
    # failed whenever password hashing alone took a second on a loaded machine.)
    server.faults.delay(3.0, endpoint="customers.get_or_create")

    user = get_user_model().objects.create_user("grace@example.com", "grace@example.com", "x",
                                                first_name="Grace", last_name="Hopper")

    assert not Customer.objects.filter(owner=user).exists(), "signup must not wait on the worker or Autumn"
    row = wait_for(lambda: Customer.objects.filter(owner=user).first(), what="linked customer", proc=worker)
    assert row.autumn_id == f"user_{user.pk}" and row.name == "Grace Hopper"
    assert row.raw == server.get_customer(f"user_{user.pk}")


def test_signup_task_retries_while_autumn_answers_503(make_standin, start_celery):
    server = make_standin(5)
    server.faults.fail_next(2, status=503, endpoint="customers.get_or_create", retry_after=0)
    # The client gives up at once, so what retries here is the Celery task.
    worker = start_celery("worker", AUTUMN_API_URL=server.url, AUTUMN_MAX_RETRIES="0")

    user = get_user_model().objects.create_user("retry", "retry@example.com", "x")

    wait_for(lambda: Customer.objects.filter(owner=user).exists(), what="linked customer", proc=worker)
    attempts = [b for e, b in server.requests if e == "customers.get_or_create"]
    assert len(attempts) == 3


def test_two_full_syncs_fired_together_make_one_run(make_standin, start_celery):
    server = make_standin(200)
    server.faults.delay(0.2, endpoint="customers.list")
    worker = start_celery("worker", AUTUMN_API_URL=server.url, AUTUMN_SYNC_PAGE_SIZE="20")

    first = sync_all_customers_task.delay()
    second = sync_all_customers_task.delay()
    results = sorted((first.get(timeout=90), second.get(timeout=90)), key=lambda r: r["status"])

    assert worker.poll() is None
    assert results[0]["status"] == "skipped" and "Another sync of sandbox is running" in results[0]["reason"]
    assert results[1]["status"] == "succeeded" and results[1]["created"] == 200
    assert SyncRun.objects.count() == 1
    assert_mirror_matches(server)


BEAT_NOT_INSTALLED = importlib.util.find_spec("django_celery_beat") is None


@pytest.mark.parametrize("scheduler", [
    "celery.beat:PersistentScheduler",
    pytest.param("django_celery_beat.schedulers:DatabaseScheduler", marks=pytest.mark.skipif(
        BEAT_NOT_INSTALLED, reason="django-celery-beat is not installed: 2.9 declares Django<6.1 "
                                   "(scripts/test.sh runs this on its Django 5.2 leg)")),
])
def test_the_ready_made_beat_entry_fires_the_sync(make_standin, start_celery, scheduler):
    server = make_standin(30)
    worker = start_celery("worker", AUTUMN_API_URL=server.url)
    beat = start_celery("beat", "--scheduler", scheduler, AUTUMN_TEST_BEAT_EVERY="2",
                        AUTUMN_API_URL=server.url)

    wait_for(lambda: SyncRun.objects.filter(status=SyncRun.Status.SUCCEEDED).exists(),
             what="a sync run started by beat", proc=beat)

    assert worker.poll() is None
    assert_mirror_matches(server)
    if scheduler.startswith("django_celery_beat"):
        from django_celery_beat.models import PeriodicTask

        entry = PeriodicTask.objects.get(name="autumn-sync-all-customers")
        assert entry.task == "autumn_django.sync_all_customers" and entry.expire_seconds == 2


def test_a_queued_sync_older_than_its_interval_expires(make_standin, start_celery):
    server = make_standin(10)
    options = sync_schedule(every=1)["autumn-sync-all-customers"]["options"]
    stale = sync_all_customers_task.apply_async(expires=options["expires"])
    time.sleep(1.5)  # no worker yet: the run waits past its interval

    start_celery("worker", AUTUMN_API_URL=server.url)

    assert wait_for(lambda: stale.state == "REVOKED", what="the stale run to expire")
    assert not SyncRun.objects.exists()


def test_example_project_worker_and_beat_need_no_redis(make_standin, tmp_path):
    """The example project's worker and beat run on its embedded (filesystem) broker: beat
    queues the sync, the worker runs it, and no server but the stand-in is involved."""
    server = make_standin(15)
    repo = Path(__file__).resolve().parent.parent
    db = tmp_path / "example.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(repo), "DJANGO_SETTINGS_MODULE": "example_project.settings",
           "EXAMPLE_DB_PATH": str(db), "AUTUMN_API_URL": server.url, "AUTUMN_SECRET_KEY": TEST_KEY,
           "AUTUMN_SYNC_EVERY": "2"}
    env.pop("CELERY_BROKER_URL", None)
    manage = [sys.executable, str(repo / "example_project" / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput"], env=env, check=True, capture_output=True)
    celery = [sys.executable, "-m", "celery", "-A", "example_project"]
    children = [
        subprocess.Popen([*celery, "worker", "--pool", "solo", "--loglevel", "INFO"], env=env,
                         cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True),
        subprocess.Popen([*celery, "beat", "--loglevel", "INFO", "--max-interval", "1",
                          "--schedule", str(tmp_path / "beat-schedule")], env=env, cwd=tmp_path,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True),
    ]
    try:
        def succeeded_runs() -> int:
            with sqlite3.connect(db) as connection:
                return connection.execute(
                    "SELECT count(*) FROM autumn_django_syncrun WHERE status = 'succeeded'").fetchone()[0]

        wait_for(succeeded_runs, what="a sync run through the filesystem broker", proc=children[0])
        with sqlite3.connect(db) as connection:
            count = connection.execute("SELECT count(*) FROM autumn_django_customer").fetchone()[0]
        assert count == 15
        assert (tmp_path / "celery-broker").is_dir()
    finally:
        for child in children:
            child.terminate()
            child.wait(timeout=20)
