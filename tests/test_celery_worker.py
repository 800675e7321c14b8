"""Celery behaviour with real parts: a redis-server, `celery worker` and `celery beat` in
child processes, the stand-in over HTTP, and the test database shared with the worker."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from autumn_django.models import Customer, SyncRun
from autumn_django.schedules import sync_schedule
from autumn_django.tasks import sync_all_customers_task

from .celery_app import app as celery_app
from .conftest import TEST_KEY, assert_mirror_matches, run_manage

pytestmark = pytest.mark.django_db(transaction=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable, timeout: float = 60.0, what: str = "condition", proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the child process exited: {proc.communicate()[1][-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: `apt-get install redis-server` (.ci/run does it)")
    port = free_port()
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    client = redis.Redis.from_url(url)
    wait_for(lambda: _pings(client), timeout=10, what="redis-server")
    yield url
    server.terminate()
    server.wait(timeout=10)


def _pings(client) -> bool:
    try:
        return client.ping()
    except Exception:
        return False


@pytest.fixture
def celery_env(redis_url, settings) -> Iterator[dict[str, str]]:
    """Point the test process's Celery app and settings at a clean Redis."""
    import redis

    redis.Redis.from_url(redis_url).flushall()
    old = (celery_app.conf.broker_url, celery_app.conf.result_backend)
    celery_app.conf.broker_url = celery_app.conf.result_backend = redis_url
    settings.AUTUMN_TASK_MODE = "celery"
    yield {"CELERY_BROKER_URL": redis_url, "CELERY_RESULT_BACKEND": redis_url,
           "AUTUMN_TASK_MODE": "celery", "AUTUMN_SECRET_KEY": TEST_KEY}
    celery_app.conf.broker_url, celery_app.conf.result_backend = old
    celery_app.pool.force_close_all()


@pytest.fixture
def start_celery(celery_env, tmp_path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `celery worker` or `celery beat` as a child process with the test settings."""
    children: list[subprocess.Popen] = []

    def start(kind: str, *args: str, **env: str) -> subprocess.Popen:
        command = ["-A", "tests.celery_app", kind, "--loglevel", "INFO"]
        if kind == "worker":
            command += ["--pool", "prefork", "--concurrency", "2", "--without-gossip",
                        "--without-mingle", "--hostname", f"test{len(children)}@%h"]
        else:
            command += ["--schedule", str(tmp_path / "celerybeat-schedule"), "--max-interval", "1"]
        command += args  # last, so a test's own options (e.g. "--pool solo") win
        child = run_manage(*command, background=True, env_extra={**celery_env, **env},
                           module="celery")
        children.append(child)
        return child

    yield start
    for child in children:
        child.terminate()
    for child in children:
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


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
