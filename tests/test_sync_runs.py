"""One sync at a time, killed runs, resuming, and single-customer writes."""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from autumn_django.client import AutumnClient
from autumn_django.exceptions import SyncAlreadyRunning
from autumn_django.models import Customer, SyncRun
from autumn_django.sync import (
    get_or_create_customer,
    runs,
    sync_all_customers,
    sync_customer,
    update_customer,
)
from autumn_django.sync.pages.windows import Window

from .conftest import TEST_KEY, assert_mirror_matches, run_manage

pytestmark = pytest.mark.django_db(transaction=True)


def one_window(cursor: str) -> list[dict]:
    """The saved windows of a run crawling one window, at ``cursor``."""
    return [Window(0, None, None, cursor).as_dict()]


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def prefetch_children_of(pid: int) -> list[int]:
    """Pids of the sync prefetch processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid and b"autumn_django.sync.pages.prefetch" in command:
            found.append(int(entry.name))
    return found


def process_gone(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"  # exited, waiting for a parent to reap it


def start_slow_sync(server):
    """``manage.py autumn_sync`` in a child process, 50 customers a page, 0.25 s a page,
    stopped by the caller once two pages are committed. Returns the process and the pids of
    its prefetch child."""
    server.faults.delay(0.25, endpoint="customers.list")
    child = run_manage("autumn_sync", "--page-size", "50", background=True,
                       env_extra={"AUTUMN_API_URL": server.url, "AUTUMN_SECRET_KEY": TEST_KEY,
                                  "AUTUMN_TEST_SYNC_WINDOWS": "1"})
    # Generous: on a loaded machine the child's start-up alone can take many seconds.
    wait_for(lambda: SyncRun.objects.filter(pages__gte=2).exists(), timeout=120,
             what="two committed pages")
    with pytest.raises(SyncAlreadyRunning, match=r"Another sync of sandbox is running \(run #"):
        sync_all_customers(page_size=50)  # it is alive: its lock holds
    return child, wait_for(lambda: prefetch_children_of(child.pid), what="the prefetch child")


def test_a_sync_stopped_while_the_catalogue_is_read_exits_without_waiting_for_it(make_standin):
    """The catalogue is read on a thread while the first customers page comes: SIGTERM
    must not wait for its answers (25 s here) before the process exits."""
    server = make_standin(120)
    server.faults.delay(25, endpoint="features.list")
    child = run_manage("autumn_sync", "--page-size", "50", background=True,
                       env_extra={"AUTUMN_API_URL": server.url, "AUTUMN_SECRET_KEY": TEST_KEY})
    try:
        wait_for(lambda: any(endpoint == "customers.list" for endpoint, _ in server.requests),
                 timeout=120, what="the first customers request")
        stopped = time.monotonic()
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=60)
        took = time.monotonic() - stopped
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 128 + signal.SIGTERM and took < 10, (took, stderr)
    assert "Stopped by SIGTERM" in stderr.strip().splitlines()[-1]
    stopped_run = SyncRun.objects.get()
    assert stopped_run.status == SyncRun.Status.FAILED and stopped_run.pages == 0
    assert not Customer.objects.exists()  # nothing written before the catalogue is in
    server.faults.delay(0, endpoint="features.list")

    assert sync_all_customers(page_size=50).status == SyncRun.Status.SUCCEEDED
    assert_mirror_matches(server)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_or_stopped_sync_is_taken_over_at_once_and_resumed(make_standin, stop, settings):
    """The lease (300 s here) is only the last resort: a run whose process is gone is seen
    to be gone, and the next run resumes it straight away. (One cursor; the windowed crawl's
    kill test is in test_sync_windows.py.)"""
    settings.AUTUMN_SYNC_WINDOWS = 1
    server = make_standin(400)
    child, prefetchers = start_slow_sync(server)
    try:
        child.send_signal(stop)
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    killed = SyncRun.objects.get()
    if stop == signal.SIGTERM:
        # Like Ctrl-C: the lock let go, the resume point kept, one line, a non-zero exit.
        assert child.returncode == 128 + signal.SIGTERM
        assert stderr.strip().splitlines()[-1] == (
            "CommandError: Stopped by SIGTERM. Nothing of the page in flight was kept; the next "
            "autumn_sync resumes from the last saved page.")
        assert killed.status == SyncRun.Status.FAILED
        assert killed.failure == "Interrupted by SIGTERM; the next run resumes from the last saved page."
    else:
        assert killed.status == SyncRun.Status.RUNNING  # nobody got to say otherwise
    assert killed.pages >= 2 and killed.cursor
    assert Customer.objects.count() == killed.created, "only pages the run counted are stored"
    # The prefetch child does not outlive its parent, however the parent ended.
    wait_for(lambda: all(process_gone(pid) for pid in prefetchers), timeout=10,
             what="the prefetch child to exit")
    server.faults.delay(0)
    server.clear_requests()

    run = sync_all_customers(page_size=50)  # AUTUMN_SYNC_LOCK_TIMEOUT is still 300 s

    assert (run.pk, run.attempts, run.status) == (killed.pk, 2, SyncRun.Status.SUCCEEDED)
    first_list = next(body for endpoint, body in server.requests if endpoint == "customers.list")
    assert first_list["start_cursor"] == killed.cursor
    assert run.deleted == 0
    assert_mirror_matches(server)


def test_a_killed_run_of_another_machine_waits_for_its_lease_unless_postgresql_knows(make_standin, settings):
    """Another machine's process cannot be looked up; PostgreSQL's advisory lock, freed
    when the dead process's connection died, tells wherever the run was."""
    server = make_standin(400)
    child, _ = start_slow_sync(server)
    child.kill()
    child.wait()
    SyncRun.objects.update(host="another-machine")
    server.faults.delay(0)

    if connection.vendor == "postgresql":
        run = sync_all_customers(page_size=50)
        assert (run.attempts, run.status) == (2, SyncRun.Status.SUCCEEDED)
        assert_mirror_matches(server)
        return
    with pytest.raises(SyncAlreadyRunning, match="on another-machine"):
        sync_all_customers(page_size=50)
    settings.AUTUMN_SYNC_LOCK_TIMEOUT = 1
    time.sleep(1.1)
    run = sync_all_customers(page_size=50)
    assert (run.attempts, run.status) == (2, SyncRun.Status.SUCCEEDED)
    assert_mirror_matches(server)


def test_stalled_run_that_was_taken_over_cannot_write(make_standin):
    make_standin(10)
    stalled = runs.start_run("sandbox", page_size=10)
    SyncRun.objects.filter(pk=stalled.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    successor = runs.start_run("sandbox", page_size=10)
    assert successor.pk == stalled.pk and successor.lease_token != stalled.lease_token

    stalled.pages = 99
    with pytest.raises(runs.LeaseLost, match="lost its lock"):
        runs.save_page(stalled, one_window("x"))
    assert SyncRun.objects.get().pages == 0


def test_two_runs_cannot_both_start(make_standin):
    make_standin(10)
    first = runs.start_run("sandbox", page_size=10)
    with pytest.raises(SyncAlreadyRunning):
        runs.start_run("sandbox", page_size=10)
    with pytest.raises(SyncAlreadyRunning):
        runs.start_run("sandbox", page_size=10, restart=True)
    assert SyncRun.objects.get().pk == first.pk
    # The other env has its own lock.
    assert runs.start_run("live", page_size=10).env == "live"


def test_restart_begins_a_fresh_pass_instead_of_resuming(make_standin):
    server = make_standin(30)
    failed = runs.start_run("sandbox", page_size=10)
    runs.save_page(failed, one_window("stale-cursor"))
    runs.finish_run(failed, failure="boom")

    run = sync_all_customers(page_size=10, restart=True)

    assert run.pk != failed.pk and run.created == 30
    assert_mirror_matches(server)


def test_a_saved_cursor_autumn_rejects_restarts_the_pass(make_standin):
    server = make_standin(30)
    failed = runs.start_run("sandbox", page_size=10)
    runs.save_page(failed, one_window("not-a-cursor-autumn-knows"))
    runs.finish_run(failed, failure="boom")

    run = sync_all_customers(page_size=10)

    assert run.pk == failed.pk and run.status == SyncRun.Status.SUCCEEDED
    assert {"warning": "The saved cursor was rejected; the pass restarted."} in run.errors
    assert_mirror_matches(server)


def test_sync_customer_refreshes_one_and_marks_a_missing_one_deleted(make_standin):
    server = make_standin(20)
    sync_all_customers()
    first, second = [c for c in server.list_customers() if c["id"]][:2]
    server.modify_customer(first["id"], name="Fresh name")
    server.delete_customer(second["id"])

    row = sync_customer(first["id"])
    gone = sync_customer(second["id"])

    assert row.name == "Fresh name" and row.raw == server.get_customer(first["id"])
    assert gone is None
    assert Customer.objects.get(autumn_id=second["id"]).deleted_at is not None


def test_get_or_create_stores_and_links_the_user(make_standin):
    server = make_standin(5)
    user = get_user_model().objects.create_user("ada", "ada@example.com", "x")

    row = get_or_create_customer("user_ada", owner=user, name="Ada Lovelace", email="ada@example.com")

    assert row.owner == user and row.autumn_id == "user_ada" and row.name == "Ada Lovelace"
    assert row.raw == server.get_customer("user_ada")


def test_get_or_create_that_claims_an_idless_customer_keeps_one_row(make_standin):
    server = make_standin(200, seed=3)
    sync_all_customers()
    idless = next(c for c in server.list_customers() if c["id"] is None)
    before = Customer.objects.count()

    row = get_or_create_customer("claimed_1", email=idless["email"])

    assert Customer.objects.count() == before
    assert row.autumn_id == "claimed_1" and row.email == idless["email"]
    assert not Customer.objects.filter(autumn_id__isnull=True, email=idless["email"]).exists()
    assert sync_all_customers().deleted == 0
    assert_mirror_matches(server)


def test_claim_made_outside_the_app_is_followed_by_the_full_sync(make_standin):
    server = make_standin(200, seed=3)
    sync_all_customers()
    idless = next(c for c in server.list_customers() if c["id"] is None)
    pk = Customer.objects.get(autumn_id__isnull=True, email=idless["email"]).pk
    # Another service of the company claims it through Autumn's API, not through the mirror.
    with AutumnClient() as client:
        client.customers.get_or_create("claimed_elsewhere", email=idless["email"])

    run = sync_all_customers()

    assert (run.created, run.deleted) == (0, 0)
    assert Customer.objects.get(pk=pk).autumn_id == "claimed_elsewhere"
    assert_mirror_matches(server)


def test_rename_through_the_app_keeps_the_row_and_user_link(make_standin):
    server = make_standin(10)
    sync_all_customers()
    user = get_user_model().objects.create_user("bob", "bob@example.com", "x")
    old_id = next(c["id"] for c in server.list_customers() if c["id"])
    row = Customer.objects.get(autumn_id=old_id)
    Customer.objects.filter(pk=row.pk).update(owner=user)

    renamed = update_customer(old_id, new_customer_id="bob_renamed", metadata={"tier": "gold"})

    assert renamed.pk == row.pk and renamed.autumn_id == "bob_renamed" and renamed.owner == user
    assert renamed.metadata["tier"] == "gold"
    run = sync_all_customers()
    assert (run.created, run.deleted) == (0, 0)
    assert_mirror_matches(server)
