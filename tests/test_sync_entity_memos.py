"""Entity page memos: an ``entities.list`` page whose bytes a completed pass read before is
not decoded while the mirror still holds every entity on it as it showed them; its
entities count as unchanged and as seen, so deletions are still judged right."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from autumn_django.exceptions import ServerError
from autumn_django.models import Entity, SyncedEntityPage, SyncedPage, SyncRun
from autumn_django.sync import sync_all_customers
from autumn_django.sync.entity_pass import EntityPass
from autumn_django.sync.pages import entitypages
from autumn_django.sync.pages.entitypages import EntityPageMemo, entity_key_fingerprint
from autumn_django.sync.pages.fingerprints import Fingerprints
from autumn_django.sync.pages.timeforms import EPOCH

from .conftest import assert_mirror_matches
from .test_sync_entities import assert_entities_match, entity_requests

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def decoded(monkeypatch, settings) -> list[list]:
    """For every ``entities.list`` page decoded (sliced into its entities' bytes), in order,
    the ids of the entities decoded on it: every entities page the pass decodes goes
    through ``entitypages.decode_page``, and an entity whose bytes the mirror holds as it
    is, is not decoded. The pages are read in this process, where it can be counted (the
    prefetch child runs the same reader: ``test_the_prefetch_child_recalls_what_it_read_before``
    checks it from outside)."""
    settings.AUTUMN_SYNC_PREFETCH_PROCESS = False
    pages: list[list] = []
    plain = entitypages.decode_page

    def counting(response, known_bytes):
        page = plain(response, known_bytes)
        pages.append([entity.get("id") for entity in page.entities])
        return page

    monkeypatch.setattr(entitypages, "decode_page", counting)
    return pages


@pytest.fixture
def entity_server(make_standin):
    server = make_standin(150, seed=3, entities=True)
    assert len(server.list_entities()) > 60, "the data set should make several entity pages"
    return server


def page_size(entities: list[dict], *, defect: bool) -> int:
    """A page size at which some page of the crawl ends on an entity without an id (the
    null-cursor defect) or, with ``defect=False``, none does."""
    for size in range(15, 60):
        ends = [entities[end - 1] for end in range(size, len(entities) + 1, size)]
        if any(entity["id"] is None for entity in ends) == defect:
            return size
    raise AssertionError(f"no page size {'with' if defect else 'without'} the defect in 15..59")


def last_page_entity(server, size: int) -> dict:
    """The oldest entity with an id: on the crawl's last page, so the pages before it stay
    byte for byte the same when it goes (the crawl is newest first)."""
    served = server.list_entities()
    position = max(i for i, entity in enumerate(served) if entity["id"])
    assert position >= (len(served) - 1) // size * size, "it should be on the last page"
    return served[position]


def synced_then_oldest_deleted(server) -> tuple[int, SyncRun, dict]:
    """A page size without the defect, a first sync at it, and the entity then deleted in
    Autumn: the oldest with an id, on the last page (so only that page's bytes change)."""
    size = page_size(server.list_entities(), defect=False)
    first = sync_all_customers(page_size=size)
    oldest = last_page_entity(server, size)
    server.delete_entity(oldest["customer_id"], oldest["id"])
    return size, first, oldest


def test_entity_page_memo_round_trips_and_damaged_bytes_are_ignored():
    memo = EntityPageMemo("cur_9", 3, True, 1_700_000_000_123, [1, 2, 2**64 - 1], [10, 20, 2**63],
                          [7, 0, 9])

    again = EntityPageMemo.from_bytes(memo.to_bytes())

    assert again is not None
    assert (again.next_cursor, again.count, again.ends_on_id, again.oldest) == (
        "cur_9", 3, True, 1_700_000_000_123)
    assert (list(again.keys), list(again.states), list(again.raws)) == (
        [1, 2, 2**64 - 1], [10, 20, 2**63], [7, 0, 9])
    assert again.held_by(Fingerprints([10, 20, 2**63, 99]))
    assert not again.held_by(Fingerprints([10, 2**63]))
    good = memo.to_bytes()
    assert EntityPageMemo.from_bytes(good[:-3]) is None
    assert EntityPageMemo.from_bytes(good.replace(b'"count"', b'"cuont"')) is None
    # A memo of the format before entities' bytes were named is read again, once.
    assert EntityPageMemo.from_bytes(good.replace(b"memo 2", b"memo 1")) is None


def test_key_fingerprints_are_the_same_from_a_record_and_from_a_row():
    created = EPOCH + timedelta(milliseconds=1_700_000_000_123)
    key = entity_key_fingerprint
    assert key("cus", "ent", None, None) == key("cus", "ent", created, "x")
    idless = key("cus", None, created, None)
    assert idless == key("cus", None, created.astimezone(timezone.get_fixed_timezone(60)), None)
    assert idless != key("cus", None, created, "None")
    assert idless != key("cus", None, created + timedelta(milliseconds=1), None)
    assert key("cus", "ent", None, None) != key("cus2", "ent", None, None)


def test_a_no_change_resync_decodes_no_entity_page(entity_server, decoded):
    size = page_size(entity_server.list_entities(), defect=False)
    first = sync_all_customers(page_size=size)
    total = assert_entities_match(entity_server)
    assert len(decoded) == first.entity_pages == SyncedEntityPage.objects.count()
    decoded.clear()
    synced_at = dict(Entity.objects.values_list("pk", "synced_at"))

    again = sync_all_customers(page_size=size)

    assert decoded == [], "no entities page decoded"
    assert (again.entity_pages, again.entities_unchanged) == (first.entity_pages, total)
    assert (again.entities_created, again.entities_updated, again.entities_deleted) == (0, 0, 0)
    assert again.entities_reached_created_at == first.entities_reached_created_at
    assert dict(Entity.objects.values_list("pk", "synced_at")) == synced_at, "nothing rewritten"
    assert SyncedEntityPage.objects.filter(used_at__gte=again.started_at).count() == first.entity_pages
    # The customers' memos are theirs: used by this run's customers pass too.
    assert SyncedPage.objects.filter(used_at__gte=again.started_at).exists()
    assert again.unchanged == len(entity_server.list_customers())
    assert assert_entities_match(entity_server) == total
    assert_mirror_matches(entity_server)


@pytest.fixture
def recalled(monkeypatch) -> list[bool]:
    """For every entities page the pass writes, in order, whether it came recalled by a
    memo (not decoded), as the writer receives it: from the prefetch child or not."""
    pages: list[bool] = []
    plain = EntityPass._write_page

    def writing(self, read):
        pages.append(read.page.memo is not None)
        return plain(self, read)

    monkeypatch.setattr(EntityPass, "_write_page", writing)
    return pages


def test_the_prefetch_child_recalls_what_it_read_before(entity_server, recalled, settings):
    settings.AUTUMN_SYNC_PREFETCH_PROCESS = True
    size = page_size(entity_server.list_entities(), defect=False)
    first = sync_all_customers(page_size=size)
    assert recalled == [False] * first.entity_pages and first.entity_pages > 2
    recalled.clear()
    changed = next(e for e in entity_server.list_entities()[:size] if e["id"])  # on the first page
    entity_server.modify_entity(changed["customer_id"], changed["id"], name="Renamed in Autumn")

    again = sync_all_customers(page_size=size)

    assert recalled == [False] + [True] * (first.entity_pages - 1)
    assert (again.entities_updated, again.entities_deleted) == (1, 0)
    assert again.entities_unchanged == len(entity_server.list_entities()) - 1
    assert_entities_match(entity_server)


def test_an_entity_changed_in_autumn_has_only_its_page_decoded(entity_server, decoded):
    size = page_size(entity_server.list_entities(), defect=False)
    sync_all_customers(page_size=size)
    served = entity_server.list_entities()
    changed = next(e for e in served[len(served) // 2:] if e["id"])
    entity_server.modify_entity(changed["customer_id"], changed["id"], name="Renamed in Autumn")
    decoded.clear()

    run = sync_all_customers(page_size=size)

    assert len(decoded) == 1 and changed["id"] in decoded[0]
    assert (run.entities_updated, run.entities_unchanged) == (1, len(served) - 1)
    row = Entity.objects.get(customer__autumn_id=changed["customer_id"], autumn_id=changed["id"])
    assert row.name == "Renamed in Autumn"
    assert_entities_match(entity_server)


def test_an_entity_rewritten_in_the_mirror_since_has_its_page_read_again(entity_server, decoded):
    size = page_size(entity_server.list_entities(), defect=False)
    sync_all_customers(page_size=size)
    entity = next(e for e in entity_server.list_entities()[5:] if e["id"])
    # As a refresh that stored another state would leave it (read no later than the list).
    Entity.objects.filter(customer__autumn_id=entity["customer_id"], autumn_id=entity["id"]).update(
        name="Stale", raw={**entity, "name": "Stale"}, raw_hash="0" * 32)
    decoded.clear()

    run = sync_all_customers(page_size=size)

    assert len(decoded) == 1 and entity["id"] in decoded[0]
    assert run.entities_updated == 1
    assert Entity.objects.get(customer__autumn_id=entity["customer_id"], autumn_id=entity["id"]).name \
        == entity.get("name")
    assert_entities_match(entity_server)


def test_a_deleted_entity_is_marked_deleted_and_those_on_remembered_pages_are_not(entity_server, decoded):
    size, first, oldest = synced_then_oldest_deleted(entity_server)
    decoded.clear()

    run = sync_all_customers(page_size=size)

    assert len(decoded) == 1, "only the last page changed"
    assert run.entity_pages == first.entity_pages and run.entities_deleted == 1
    gone = Entity.objects.filter(deleted_at__isnull=False)
    assert [(row.customer.autumn_id, row.autumn_id) for row in gone] == [
        (oldest["customer_id"], oldest["id"])]
    assert_entities_match(entity_server)


def test_a_resumed_pass_over_remembered_pages_settles_deletions(entity_server, decoded):
    size, _, _ = synced_then_oldest_deleted(entity_server)
    entity_server.faults.fail_next(1, status=500, endpoint="entities.list", after=2)
    decoded.clear()
    with pytest.raises(ServerError):
        sync_all_customers(page_size=size)
    failed = SyncRun.objects.order_by("-pk").first()
    assert (failed.status, failed.entity_pages, decoded) == (SyncRun.Status.FAILED, 2, [])
    assert failed.entities_reached_created_at is not None, "a remembered page moves the resume point"

    run = sync_all_customers(page_size=size)

    assert (run.pk, run.attempts, run.status) == (failed.pk, 2, SyncRun.Status.SUCCEEDED)
    assert len(decoded) == 1 and run.entities_deleted == 1
    assert Entity.objects.filter(deleted_at__isnull=False).count() == 1
    assert_entities_match(entity_server)


def test_a_rejected_saved_cursor_restarts_the_pass_over_remembered_pages(entity_server, decoded):
    size, _, _ = synced_then_oldest_deleted(entity_server)
    # A run stopped in its entities phase, whose saved cursor Autumn no longer takes.
    SyncRun.objects.create(env="sandbox", status=SyncRun.Status.FAILED, phase="entities",
                           started_at=timezone.now(), heartbeat_at=timezone.now(), lease_token="x",
                           page_size=size, entity_cursor="not-a-cursor",
                           entities_reached_created_at=timezone.now())
    decoded.clear()

    run = sync_all_customers(page_size=size)

    assert run.status == SyncRun.Status.SUCCEEDED
    assert any("cursor was rejected" in p.get("warning", "") for p in run.errors)
    assert len(decoded) == 1 and run.entities_deleted == 1
    assert_entities_match(entity_server)


def test_a_defective_page_gets_no_memo_and_memos_no_longer_read_are_pruned(entity_server, decoded):
    entities = entity_server.list_entities()
    defective = page_size(entities, defect=True)
    first = sync_all_customers(page_size=defective)
    shortened = [body for body in entity_requests(entity_server) if body["limit"] < defective]
    assert shortened, "the crawl should have met the null-cursor defect"
    # Each page the defect shortened is read every time, and has no memo.
    assert SyncedEntityPage.objects.count() == first.entity_pages - len(shortened)
    decoded.clear()

    again = sync_all_customers(page_size=defective)

    # At each: the full answer (which shows the defect), then the shorter one.
    assert len(decoded) == 2 * len(shortened) and again.entities_unchanged == len(entities)
    before = set(SyncedEntityPage.objects.values_list("digest", flat=True))
    assert len(before) == first.entity_pages - len(shortened)

    plain = page_size(entities, defect=False)
    other = sync_all_customers(page_size=plain)

    after = set(SyncedEntityPage.objects.values_list("digest", flat=True))
    assert len(after) == other.entity_pages and not after & before, "the other page size's are gone"
    assert other.entities_deleted == 0
    assert_entities_match(entity_server)


def newest_entity_added(server) -> dict:
    """An entity created in Autumn now, of the customer of the newest one: it comes first in
    ``entities.list``, so every page after it shifts by one (new bytes, same entities)."""
    newest = server.list_entities()[0]
    return server.add_entity({"id": "ent_added_now", "customer_id": newest["customer_id"], "name": "Added",
                              "feature_id": newest.get("feature_id")})


def test_an_entity_created_in_autumn_shifts_every_page_but_only_it_is_decoded(entity_server, decoded):
    size = page_size(entity_server.list_entities(), defect=False)
    first = sync_all_customers(page_size=size)
    total = assert_entities_match(entity_server)
    added = newest_entity_added(entity_server)
    decoded.clear()

    run = sync_all_customers(page_size=size)

    assert len(decoded) == run.entity_pages, "every page's bytes changed: each was sliced"
    assert [entity_id for page in decoded for entity_id in page] == [added["id"]], "only it was decoded"
    assert (run.entities_created, run.entities_updated, run.entities_deleted) == (1, 0, 0)
    assert run.entities_unchanged == total
    assert run.entities_reached_created_at == first.entities_reached_created_at
    assert assert_entities_match(entity_server) == total + 1
    decoded.clear()

    again = sync_all_customers(page_size=size)

    assert decoded == [], "the shifted pages' memos were stored"
    assert again.entities_unchanged == total + 1


def test_a_pass_resumed_over_shifted_pages_settles_creations_and_deletions(entity_server, decoded):
    size, _, oldest = synced_then_oldest_deleted(entity_server)
    newest_entity_added(entity_server)
    entity_server.faults.fail_next(1, status=500, endpoint="entities.list", after=2)
    decoded.clear()
    with pytest.raises(ServerError):
        sync_all_customers(page_size=size)
    failed = SyncRun.objects.order_by("-pk").first()
    assert (failed.status, failed.entity_pages) == (SyncRun.Status.FAILED, 2)
    assert [entity_id for page in decoded for entity_id in page] == ["ent_added_now"]
    # Its entities not decoded, the second page still moved the resume point to its oldest.
    second_oldest = entity_server.list_entities()[2 * size - 1]["created_at"]
    assert failed.entities_reached_created_at == EPOCH + timedelta(milliseconds=second_oldest)

    run = sync_all_customers(page_size=size)

    assert (run.pk, run.status) == (failed.pk, SyncRun.Status.SUCCEEDED)
    assert run.entities_deleted == 1
    gone = Entity.objects.get(deleted_at__isnull=False)
    assert (gone.customer.autumn_id, gone.autumn_id) == (oldest["customer_id"], oldest["id"])
    assert_entities_match(entity_server)
