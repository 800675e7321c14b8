"""The entities pass's faster path keeps its guarantees: pages are fetched and read while one
is written, and no further than a bound (the prefetch child's, or one page ahead in this
process); entity rows written
through SQL keep the read-order rule and survive a racing insert; an entity whose row
changed after the pass began is written whole."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from autumn_django.models import Entity, SyncedEntityPage, SyncRun
from autumn_django.sync import sync_all_customers
from autumn_django.sync.entities import EntityWriter
from autumn_django.sync.pages.entityrecords import read_entity

from .test_sync_entities import assert_entities_match, entity_requests

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_the_next_entities_page_is_fetched_while_one_is_written_and_no_further(make_standin, settings):
    settings.AUTUMN_SYNC_PREFETCH_PROCESS = False
    server = make_standin(150, seed=3, entities=True)
    pages = -(-len(server.list_entities()) // 20)
    assert pages >= 4, "the data set should make several entity pages"
    seen_during_first_page: list[int] = []

    def progress(run: SyncRun) -> None:
        if run.entity_pages == 1:  # the first page is committed; the second not yet taken
            # While this page is being finished, the next one is asked for...
            wait_for(lambda: len(entity_requests(server)) >= 2)
            time.sleep(0.5)  # ...and nothing after it, however long the writer takes.
            seen_during_first_page.append(len(entity_requests(server)))

    run = sync_all_customers(page_size=20, entity_progress=progress)

    assert seen_during_first_page == [2]
    assert run.entity_pages == pages and run.status == SyncRun.Status.SUCCEEDED
    assert_entities_match(server)


def test_the_prefetch_child_reads_ahead_of_a_slow_writer_and_stops_at_its_bound(make_standin, settings):
    settings.AUTUMN_SYNC_PREFETCH_PROCESS = True
    server = make_standin(600, seed=3, entities=True)
    size = 20
    pages = -(-len(server.list_entities()) // size)
    assert pages >= 20, "the data set should make many more entity pages than the bound"
    asked: list[int] = []

    def progress(run: SyncRun) -> None:
        # The first page is read in this process, the rest in the child: once the second
        # page is written, the writer holds up; the child goes on, then stops.
        if run.entity_pages == 2:
            wait_for(lambda: len(entity_requests(server)) >= 4)
            time.sleep(1.0)
            asked.append(len(entity_requests(server)))
            time.sleep(0.5)
            asked.append(len(entity_requests(server)))

    run = sync_all_customers(page_size=size, entity_progress=progress)

    # Pages ahead: one fetched, one read, one queued to send, and what the pipe holds.
    assert asked[0] == asked[1], "the child stopped asking while the writer was held up"
    assert 4 <= asked[0] < pages
    assert run.entity_pages == pages and run.status == SyncRun.Status.SUCCEEDED
    assert_entities_match(server)


def test_an_entity_row_holding_data_read_later_is_left_as_it_is(make_standin):
    server = make_standin(100, seed=3, entities=True)
    sync_all_customers(page_size=50)
    entity = server.list_entities()[0]
    row = Entity.objects.get(customer__autumn_id=entity["customer_id"], autumn_id=entity["id"])
    children = sorted(row.balances.values_list("pk", flat=True))
    assert children, "the entity should have balances"
    # A refresh of its customer read it after this run will: the run must not overwrite it.
    later = timezone.now() + timedelta(hours=1)
    Entity.objects.filter(pk=row.pk).update(read_at=later)
    server.modify_entity(entity["customer_id"], entity["id"], name="Renamed meanwhile")

    run = sync_all_customers(page_size=50)

    row.refresh_from_db()
    assert (row.name, row.read_at, run.entities_updated) == (entity.get("name"), later, 0)
    assert sorted(row.balances.values_list("pk", flat=True)) == children, "children and all"

    Entity.objects.filter(pk=row.pk).update(read_at=timezone.now() - timedelta(hours=1))
    run = sync_all_customers(page_size=50)
    row.refresh_from_db()
    assert (row.name, run.entities_updated) == ("Renamed meanwhile", 1)
    assert_entities_match(server)


def test_entities_stored_by_someone_else_after_the_lookup_are_updated_not_inserted_twice(make_standin):
    server = make_standin(100, seed=3, entities=True)
    sync_all_customers(page_size=50)
    served = server.list_entities()[:5]
    rows = dict(Entity.objects.filter(autumn_id__in=[e["id"] for e in served])
                .values_list("autumn_id", "pk"))
    for entity in served:
        server.modify_entity(entity["customer_id"], entity["id"], name=f"New name of {entity['id']}")
    writer = EntityWriter("sandbox")
    plain_lookup, lookups = writer._sql.stored, []

    def lookup_that_misses_once(cursor, records):
        # The first lookup answers as if the rows were not stored yet: the writer then
        # inserts them, as if a refresh stored them between its lookup and its insert.
        lookups.append(len(records))
        return {} if len(lookups) == 1 else plain_lookup(cursor, records)

    writer._sql.stored = lookup_that_misses_once
    records = [read_entity(entity, read_at=timezone.now()) for entity in server.list_entities()[:5]]

    with transaction.atomic():
        result = writer.write(records, now=timezone.now())
        assert Entity.objects.count() == len(server.list_entities())  # the transaction goes on

    assert len(lookups) >= 2, "the page should have been looked up again"
    assert (sorted(result.updated), result.created) == (sorted(rows.values()), [])
    for entity in served:
        assert Entity.objects.get(pk=rows[entity["id"]]).name == f"New name of {entity['id']}"
    assert_entities_match(server)


def test_an_entity_whose_row_changed_after_the_pass_began_is_written_whole(make_standin):
    """The pass skips building the rows of entities the mirror held as they are when it
    began; one whose row changed since (here: marked deleted) is rebuilt by the writer."""
    server = make_standin(150, seed=3, entities=True)
    sync_all_customers(page_size=20)
    last = server.list_entities()[-1]  # on the last page: read after the first page's commit
    row = Entity.objects.get(customer__autumn_id=last["customer_id"], autumn_id=last["id"])

    def progress(run: SyncRun) -> None:
        if run.entity_pages == 1:
            Entity.objects.filter(pk=row.pk).update(deleted_at=timezone.now())

    # About pages that are read: without their memos. (A page recalled by its memo is
    # judged by the mirror as the pass began, as the customers' are: test_sync_entity_memos.)
    SyncedEntityPage.objects.all().delete()
    run = sync_all_customers(page_size=20, entity_progress=progress)

    row.refresh_from_db()
    assert row.deleted_at is None and run.entities_updated == 1
    assert_entities_match(server)


@pytest.fixture
def entity_children(monkeypatch):
    """The cursor each entities child was started from (the real child runs)."""
    from autumn_django.sync.pages import prefetch

    started: list[str] = []
    real = prefetch.read_entity_pages

    def recording(client, crawl, *args, **kwargs):
        started.append(crawl.cursor)
        return real(client, crawl, *args, **kwargs)

    monkeypatch.setattr(prefetch, "read_entity_pages", recording)
    return started


def test_entities_that_fit_one_page_are_read_without_a_child(make_standin, settings, entity_children):
    settings.AUTUMN_SYNC_PREFETCH_PROCESS = True
    server = make_standin(60, seed=3, entities=True)
    served = len(server.list_entities())
    assert 0 < served <= 1000

    run = sync_all_customers(page_size=1000)

    assert entity_children == [], "no child for a single page"
    assert (run.entity_pages, run.entities_created) == (1, served)
    assert_entities_match(server)


def test_after_the_first_page_the_child_reads_on_from_its_cursor(make_standin, settings, entity_children):
    settings.AUTUMN_SYNC_PREFETCH_PROCESS = True
    server = make_standin(150, seed=3, entities=True)
    served = len(server.list_entities())
    pages = -(-served // 20)
    assert pages >= 4

    run = sync_all_customers(page_size=20)

    assert len(entity_children) == 1 and entity_children[0], "one child, from the second page's cursor"
    assert (run.entity_pages, run.entities_created) == (pages, served)
    assert_entities_match(server)
