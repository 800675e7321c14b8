"""The full sync as a Celery workflow (``sync.workflow``): real `celery worker` processes
sharing one run through Redis, the stand-in over HTTP, the test database shared with them."""

from __future__ import annotations

import math
import os
import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from autumn_django.client import AutumnClient
from autumn_django.exceptions import SyncAlreadyRunning
from autumn_django.models import Customer, SyncRun, SyncSighting, SyncWindow
from autumn_django.schedules import sync_schedule
from autumn_django.sync import sync_all_customers, workflow
from autumn_django.tasks import sync_all_customers_workflow_task, sync_window_task

from .celery_app import app as celery_app
from .celery_fixtures import wait_for
from .conftest import assert_mirror_matches
from .test_sync_entities import assert_entities_match

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


def finished_run(workers, timeout: float = 180) -> SyncRun:
    def done():
        run = SyncRun.objects.filter(workflow=True).exclude(status=SyncRun.Status.RUNNING).first()
        if run is None and all(w.poll() is not None for w in workers):
            raise AssertionError("every worker exited")
        return run
    run = wait_for(done, timeout=timeout, what="the workflow run to finish")
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


def test_a_worker_killed_in_the_entities_pass_leaves_it_to_the_other(make_standin, start_celery):
    server = make_standin(60, entities=True)
    sync_all_customers()  # the mirror holds a customer Autumn deletes before the workflow
    gone = server.list_customers()[30]["id"]
    server.delete_customer(gone)
    entities = len(server.list_entities())
    server.faults.delay(0.3, endpoint="entities.list")
    victim = start_celery("worker", "--pool", "solo", AUTUMN_API_URL=server.url, **WORKER_ENV)

    sync_all_customers_workflow_task.delay()
    # Customers settled, an entities page committed, more to come: kill the only worker.
    run = wait_for(lambda: SyncRun.objects.filter(workflow=True, phase="entities", entity_pages__gte=1)
                   .exclude(entity_cursor="").first(), timeout=90, what="an entities page", proc=victim)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    assert SyncRun.objects.get(pk=run.pk).status == SyncRun.Status.RUNNING
    survivor = start_celery("worker", "--pool", "solo", AUTUMN_API_URL=server.url, **WORKER_ENV)

    # Well before anything would take the run over: no new run is started here at all.
    run = finished_run([survivor], timeout=60)

    assert run.attempts == 1, "the same attempt finished: the settling task's message resumed it"
    assert_mirror_matches(server)
    assert_entities_match(server)
    assert_counted_once(run, 59)
    assert run.deleted == 1, "deletions settled once (again, with no sightings left, all would go)"
    # The entities pass went on from the dead worker's last committed page, not from the first.
    assert run.entity_pages == math.ceil(entities / 20), (run.entity_pages, entities)
    assert run.entities_created + run.entities_updated + run.entities_unchanged == entities


def test_a_cut_window_whose_task_was_never_queued_is_queued_by_a_finishing_task(
        make_standin, start_celery, settings):
    server = make_standin(300, skew=True)
    settings.AUTUMN_SYNC_PAGE_SIZE, settings.AUTUMN_SYNC_WINDOWS = 20, 4
    # A worker crawls the first window and cuts it, then dies after each cut's commit and
    # before its enqueue: here, in this process, the enqueues go nowhere.
    with AutumnClient() as client:
        run, pending = workflow.start_workflow(client)
        claimed = workflow.claim_window(run.pk, pending[0], run.lease_token)
        lost: list[int] = []
        workflow.crawl_window(client, *claimed, lost.append)
    unfinished = set(SyncWindow.objects.filter(run=run, done=False).values_list("number", flat=True))
    assert lost and unfinished == set(lost), (lost, unfinished)
    workers = start_workers(start_celery, server)

    # The dead crawler's message, redelivered: its window is done.
    sync_window_task.delay(run.pk, pending[0], run.lease_token)
    run = finished_run(workers, timeout=60)

    assert_mirror_matches(server)
    assert_counted_once(run, 300)
    rescued = SyncWindow.objects.filter(run=run, number__in=lost)
    assert all(w.done and w.worker for w in rescued), "a worker crawled every stranded window"


def test_window_tasks_waiting_in_a_busy_queue_keep_their_run(make_standin, start_celery, settings):
    server = make_standin(200)
    settings.AUTUMN_SYNC_PAGE_SIZE = 20
    # The workflow starts here; its window tasks wait in Redis, no worker takes them yet.
    started = sync_all_customers_workflow_task.apply().get()
    run = SyncRun.objects.get(pk=started["run"])
    assert started["windows"] and all(w.queued_at for w in SyncWindow.objects.filter(run=run))
    # Longer in the queue than the lease: the run's last progress is that old.
    SyncRun.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.AUTUMN_SYNC_LOCK_TIMEOUT + 1))

    with pytest.raises(SyncAlreadyRunning, match="wait in the Celery queue"):
        sync_all_customers()
    assert sync_all_customers_workflow_task.apply().get()["status"] == "skipped"
    workers = start_workers(start_celery, server, count=1)
    finished = finished_run(workers, timeout=60)

    assert (finished.pk, finished.attempts, finished.lease_token) == (run.pk, 1, run.lease_token)
    assert SyncRun.objects.count() == 1
    assert_mirror_matches(server)


def test_a_run_whose_windows_waited_past_the_queue_timeout_is_taken_over(make_standin, celery_env,
                                                                         settings):
    make_standin(40)
    settings.AUTUMN_SYNC_QUEUE_TIMEOUT = 30
    run = SyncRun.objects.get(pk=sync_all_customers_workflow_task.apply().get()["run"])
    SyncWindow.objects.filter(run=run).update(queued_at=timezone.now() - timedelta(seconds=31))
    SyncRun.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.AUTUMN_SYNC_LOCK_TIMEOUT + 1))

    # Their messages are taken for lost (a broker that forgot them): the next start resumes the run.
    again = sync_all_customers_workflow_task.apply().get()

    assert again["status"] == "running" and again["run"] == run.pk
    run.refresh_from_db()
    assert run.attempts == 2
    assert all(w.queued_at > timezone.now() - timedelta(seconds=30)
               for w in SyncWindow.objects.filter(run=run)), "queued again by the new attempt"
