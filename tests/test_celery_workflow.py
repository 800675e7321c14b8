"""The full sync as a Celery workflow (``sync.workflow``): real `celery worker` processes
sharing one run through Redis, the stand-in over HTTP, the test database shared with them."""

from __future__ import annotations

import os
import signal
import time

import pytest

from autumn_django.exceptions import SyncAlreadyRunning
from autumn_django.models import Customer, SyncRun, SyncSighting, SyncWindow
from autumn_django.schedules import sync_schedule
from autumn_django.sync import sync_all_customers
from autumn_django.tasks import sync_all_customers_workflow_task

from .celery_app import app as celery_app
from .celery_fixtures import wait_for
from .conftest import assert_mirror_matches

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_publisher_pool() -> None:
    """The worker tests' teardown closes the app's connection pool: publish on a new one."""
    from kombu import pools

    pools.reset()  # kombu keeps its pools by broker URL, the closed one among them
    celery_app._pool = celery_app.amqp._producer_pool = None

# Workers: one task at a time each (the solo pool runs it in the worker's own process, so
# SIGKILL ends the task with it), windows cut into 4, a dead claim stale after 6 s, and
# a killed worker's message back in the queue 2 s after it was taken.
WORKER_ENV = {"AUTUMN_TEST_SYNC_PAGE_SIZE": "20", "AUTUMN_TEST_SYNC_WINDOWS": "4",
              "AUTUMN_SYNC_LOCK_TIMEOUT": "6", "AUTUMN_TEST_VISIBILITY_TIMEOUT": "2"}


def start_workers(start_celery, server, count: int = 2) -> list:
    return [start_celery("worker", "--pool", "solo", AUTUMN_API_URL=server.url, **WORKER_ENV)
            for _ in range(count)]


def finished_run(workers) -> SyncRun:
    def done():
        run = SyncRun.objects.filter(workflow=True).exclude(status=SyncRun.Status.RUNNING).first()
        if run is None and all(w.poll() is not None for w in workers):
            raise AssertionError("every worker exited")
        return run
    run = wait_for(done, timeout=180, what="the workflow run to finish")
    assert run.status == SyncRun.Status.SUCCEEDED, run.failure
    return run


def assert_counted_once(run: SyncRun, customers: int) -> None:
    """Every customer counted once, whichever worker read it; the windows' pages are the run's."""
    assert run.created + run.updated + run.unchanged + run.undeleted == customers, vars(run)
    assert run.pages == sum(SyncWindow.objects.filter(run=run).values_list("pages", flat=True))
    assert not SyncSighting.objects.filter(run=run).exists()  # dropped once settled


def test_two_workers_share_one_run(make_standin, start_celery):
    server = make_standin(400, skew=True)
    server.faults.delay(0.1, endpoint="customers.list")
    workers = start_workers(start_celery, server)

    queued = sync_all_customers_workflow_task.delay()
    assert queued.get(timeout=60)["status"] == "running"
    run = finished_run(workers)

    assert_mirror_matches(server)
    assert_counted_once(run, 400)
    windows = list(SyncWindow.objects.filter(run=run))
    assert len(windows) > 1 and all(w.done for w in windows)
    assert len({w.worker for w in windows}) == 2, "windows should spread over both workers"
    assert len(run.windows) == len(windows)  # kept for the next run's plan, as in-process runs keep them
    assert SyncRun.objects.count() == 1


def test_a_worker_killed_mid_window_leaves_it_to_the_other(make_standin, start_celery):
    server = make_standin(300, skew=True)
    sync_all_customers()  # the mirror holds a customer Autumn deletes before the workflow
    gone = server.list_customers()[150]["id"]
    server.delete_customer(gone)
    server.modify_customer(server.list_customers()[10]["id"], name="Renamed")
    server.faults.delay(0.4, endpoint="customers.list")
    victim = start_celery("worker", "--pool", "solo", AUTUMN_API_URL=server.url, **WORKER_ENV)

    sync_all_customers_workflow_task.delay()
    run = wait_for(lambda: SyncRun.objects.filter(workflow=True).first(), what="the workflow run")
    # The victim is the only worker: once a window of it committed a page and is not done, kill it.
    part = wait_for(lambda: SyncWindow.objects.filter(run=run, done=False, pages__gte=1).exclude(claim="")
                    .first(), what="a window part-crawled", proc=victim)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    killed_at = time.time()
    assert SyncRun.objects.get(pk=run.pk).status == SyncRun.Status.RUNNING
    survivor = start_celery("worker", "--pool", "solo", AUTUMN_API_URL=server.url, **WORKER_ENV)

    run = finished_run([survivor])

    assert time.time() - killed_at < 120
    assert_mirror_matches(server)
    assert_counted_once(run, 299)
    windows = list(SyncWindow.objects.filter(run=run))
    resumed = SyncWindow.objects.get(pk=part.pk)
    assert resumed.worker != part.worker and resumed.pages > part.pages, "the survivor resumed it"
    # Deletions were settled after every window's last page committed.
    deleted_at = Customer.objects.get(autumn_id=gone).deleted_at
    assert deleted_at is not None and deleted_at >= max(w.claimed_at for w in windows)
    assert run.deleted == 1


def test_a_second_sync_is_refused_while_the_workflow_runs(make_standin, start_celery):
    server = make_standin(200)
    server.faults.delay(0.3, endpoint="customers.list")
    workers = start_workers(start_celery, server)

    sync_all_customers_workflow_task.delay()
    wait_for(lambda: SyncWindow.objects.filter(pages__gte=1).exists(), what="a committed page")

    with pytest.raises(SyncAlreadyRunning, match="Another sync of sandbox is running"):
        sync_all_customers()
    skipped = sync_all_customers_workflow_task.delay().get(timeout=60)
    assert skipped["status"] == "skipped"
    run = finished_run(workers)
    assert SyncRun.objects.count() == 1 and run.host == "" and run.pid is None
    assert_mirror_matches(server)


def test_the_beat_entry_can_queue_the_workflow():
    entry = sync_schedule(every=60, workflow=True)["autumn-sync-all-customers"]
    assert entry["task"] == "autumn_django.sync_all_customers_workflow"
    assert sync_schedule(every=60)["autumn-sync-all-customers"]["task"] == "autumn_django.sync_all_customers"
