"""The sync's larger SQLite page cache (``sync.pagecache``): raised on the connection it
writes on while it runs, the project's own size back after, whatever the ending."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from autumn_django.client import AutumnClient
from autumn_django.exceptions import ServerError
from autumn_django.models import SyncRun
from autumn_django.sync import sync_all_customers, workflow
from autumn_django.sync.pagecache import SYNC_PAGE_CACHE_KIB, sync_page_cache

pytestmark = pytest.mark.django_db(transaction=True)

sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's page cache")


def cache_size() -> int:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size")
        return cursor.fetchone()[0]


def set_cache_size(value: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA cache_size = {value}")


@pytest.fixture
def project_cache_size():
    """The test connection's cache size is the test's to set; put back what it was."""
    before = cache_size() if connection.vendor == "sqlite" else None
    yield set_cache_size
    if before is not None:
        set_cache_size(before)


def sizes_while_syncing(**options) -> tuple[SyncRun, set[int]]:
    """A full sync, and the cache sizes its connection had after each committed page."""
    seen: set[int] = set()
    run = sync_all_customers(progress=lambda progress: seen.add(cache_size()),
                             entity_progress=lambda *args: seen.add(cache_size()), **options)
    return run, seen


@sqlite_only
def test_a_sync_writes_with_the_larger_cache_then_gives_the_project_its_own_back(
        make_standin, project_cache_size):
    make_standin(250, entities=True)
    project_cache_size(-2000)  # SQLite's default: 2,000 KiB

    run, seen = sizes_while_syncing(page_size=100)

    assert run.status == SyncRun.Status.SUCCEEDED and run.pages >= 3 and run.entity_pages >= 1
    assert seen == {-SYNC_PAGE_CACHE_KIB}  # every page of both passes
    assert cache_size() == -2000


@sqlite_only
def test_the_celery_workflow_writes_with_the_larger_cache_too(make_standin, project_cache_size, settings):
    make_standin(250, entities=True)
    settings.AUTUMN_SYNC_PAGE_SIZE = 50
    project_cache_size(-2000)
    seen: set[int] = set()

    def after_each_page(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        window_page = 'UPDATE "autumn_django_syncwindow"' in sql and '"pages" = ' in sql
        if window_page or 'UPDATE "autumn_django_syncrun" SET "entity_cursor" = ' in sql:  # an entities page
            raw = context["connection"].connection  # sqlite3's own: not through this wrapper
            seen.add(raw.execute("PRAGMA cache_size").fetchone()[0])
        return result

    # What the workflow's tasks do, one after another in this process: each window's task
    # (a window cut off queues its own), then the last stage.
    with connection.execute_wrapper(after_each_page), AutumnClient() as client:
        run, queued = workflow.start_workflow(client)
        while queued:
            claimed = workflow.claim_window(run.pk, queued.pop(0), run.lease_token)
            workflow.crawl_window(client, *claimed, queued.append)
        assert workflow.settle_if_last(run.pk, run.lease_token)
        finished = workflow.finish_workflow(client, run.pk, run.lease_token)

    assert finished.status == SyncRun.Status.SUCCEEDED and finished.entity_pages >= 2
    assert seen == {-SYNC_PAGE_CACHE_KIB}  # every page of the windows and of the entities
    assert cache_size() == -2000


@sqlite_only
def test_a_cache_given_in_pages_is_compared_in_bytes_and_restored_as_given(make_standin, project_cache_size):
    make_standin(120)
    project_cache_size(100)  # pages, not KiB: 100 pages of 4 KiB is less than the sync's

    run, seen = sizes_while_syncing(page_size=50)

    assert run.status == SyncRun.Status.SUCCEEDED
    assert seen == {-SYNC_PAGE_CACHE_KIB}
    assert cache_size() == 100


@sqlite_only
@pytest.mark.parametrize("larger", [-(SYNC_PAGE_CACHE_KIB * 2), 10_000])  # KiB; 10,000 pages is ~39 MiB
def test_a_projects_larger_cache_stands(make_standin, project_cache_size, larger):
    make_standin(120)
    project_cache_size(larger)

    run, seen = sizes_while_syncing(page_size=50)

    assert run.status == SyncRun.Status.SUCCEEDED
    assert seen == {larger}
    assert cache_size() == larger


@sqlite_only
def test_a_failed_sync_gives_the_project_its_cache_back_too(make_standin, settings, project_cache_size):
    settings.AUTUMN_SYNC_WINDOWS = 1
    server = make_standin(250)
    project_cache_size(-2000)
    server.faults.fail_next(1, status=500, endpoint="customers.list", after=2)
    seen: set[int] = set()

    with pytest.raises(ServerError, match="500"):
        sync_all_customers(page_size=100, progress=lambda progress: seen.add(cache_size()))

    assert seen == {-SYNC_PAGE_CACHE_KIB}
    assert SyncRun.objects.get().status == SyncRun.Status.FAILED
    assert cache_size() == -2000


@sqlite_only
def test_a_connection_closed_within_is_not_reopened_to_restore_it(project_cache_size):
    project_cache_size(-2000)
    with sync_page_cache("default"):
        assert cache_size() == -SYNC_PAGE_CACHE_KIB
        connection.close()  # as after an error that broke it

    assert connection.connection is None
    assert cache_size() == -2000  # a new connection: SQLite's own default


@pytest.mark.skipif(connection.vendor == "sqlite", reason="other databases")
def test_other_databases_are_left_alone():
    with CaptureQueriesContext(connection) as queries, sync_page_cache("default"):
        pass

    assert queries.captured_queries == []
