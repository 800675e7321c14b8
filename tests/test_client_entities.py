"""The client's entities, features and plans against the real stand-in: paging, the org
maximum, the null-cursor defect, typed errors and answer validation."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from autumn_django.client import AutumnClient
from autumn_django.exceptions import AutumnResponseError, NotFoundError, ServerError
from autumn_django.resources import EntityPage, EntityRead
from autumn_django.testing import AutumnStandIn, make_catalogue, make_customers, make_entities

from .conftest import TEST_KEY
from .test_client import Sleeps
from .test_standin_entities import T0, entity, nine, owner


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def start(settings, sleeps):
    """Start a stand-in with these customers and entities; a client pointed at it."""
    servers, clients = [], []

    def run(customers, entities, **options):
        server = AutumnStandIn(customers=customers, entities=entities, **options).start()
        servers.append(server)
        settings.AUTUMN_API_URL = server.url
        settings.AUTUMN_SECRET_KEY = TEST_KEY
        clients.append(AutumnClient(sleep=sleeps))
        return server, clients[-1]

    yield run
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


def listed_limits(server):
    return [body.get("limit") for endpoint, body in server.requests if endpoint == "entities.list"]


def test_pages_cover_every_entity_once_newest_first(start):
    customers = make_customers(300, seed=6)
    entities = [e for e in make_entities(customers, seed=6) if e["id"] is not None]
    server, client = start(customers, entities)
    before = datetime.now(timezone.utc)
    pages = list(client.entities.iter_pages(limit=9))
    assert all(isinstance(p, EntityPage) and p.complete and not p.warnings for p in pages)
    assert [e for p in pages for e in p.entities] == server.list_entities()
    assert pages[0].cursor == "" and pages[-1].next_cursor is None
    assert [p.cursor for p in pages[1:]] == [p.next_cursor for p in pages[:-1]]
    assert all(p.limit == 9 and before <= p.requested_at <= datetime.now(timezone.utc) for p in pages)
    assert len(pages[-1].entities) <= 9 and pages[-1].complete  # a normal last page
    assert listed_limits(server) == [9] * len(pages)


def test_resume_from_a_cursor_and_filter_by_customer(start):
    server, client = start([owner(), owner("beta", T0 - 500)], nine(defect_at=()))
    server.add_entity(entity("ent_b", "beta", T0 + 3))
    first = next(client.entities.iter_pages(limit=4))
    rest = list(client.entities.iter_pages(limit=4, cursor=first.next_cursor))
    ids = [e["id"] for p in [first, *rest] for e in p.entities]
    assert ids == [e["id"] for e in server.list_entities()]
    beta = list(client.entities.iter_pages(customer_id="beta"))
    assert [e["id"] for p in beta for e in p.entities] == ["ent_b"]
    assert server.requests[-1][1]["customer_id"] == "beta"
    page = client.entities.list(limit=2, search="ent_3")
    assert [e["id"] for e in page["list"]] == ["ent_3"] and page["next_cursor"] is None


def test_page_size_is_lowered_to_the_org_maximum(start, settings):
    settings.AUTUMN_SYNC_PAGE_SIZE = 6
    server, client = start([owner()], nine(defect_at=()), org_max_limit=4)
    pages = list(client.entities.iter_pages())
    assert [len(p.entities) for p in pages] == [4, 4, 1] and {p.limit for p in pages} == {4}
    assert listed_limits(server) == [6, 4, 4, 4]


def test_null_cursor_defect_is_continued_with_a_shorter_page(start):
    # Newest first, three a page: T0+8, T0+7 and the id-less T0+6 fill the first page.
    server, client = start([owner()], nine(defect_at=(2,)))
    pages = list(client.entities.iter_pages(limit=3))
    seen = [e["id"] for p in pages for e in p.entities]
    assert seen == [e["id"] for e in server.list_entities()] and len(seen) == 9
    assert [len(p.entities) for p in pages][:1] == [2]  # the same cursor asked again, shorter
    assert pages[0].limit == 2 and pages[0].cursor == "" and pages[0].next_cursor
    assert all(p.complete for p in pages)
    assert listed_limits(server)[:3] == [3, 2, 3]  # back to the crawl's limit after it


def test_a_full_page_of_id_less_entities_ends_the_crawl_incomplete(start, caplog):
    _server, client = start([owner()], nine(defect_at=(0, 1, 2)))
    pages = list(client.entities.iter_pages(limit=3))
    assert len(pages) == 1
    page = pages[0]
    assert [e["id"] for e in page.entities] == [None, None, None]
    assert page.next_cursor is None and page.complete is False
    assert len(page.warnings) == 1 and "could not continue" in page.warnings[0]
    assert "could not continue" in caplog.text
    # Read a page bigger, the same entities are no trouble: the crawl completes.
    assert all(p.complete for p in client.entities.iter_pages(limit=4))


def test_bad_limit_is_refused_before_any_request(start):
    server, client = start([owner()], nine())
    with pytest.raises(ValueError, match="at least 1"):
        next(client.entities.iter_pages(limit=-1))
    assert server.requests == []


def test_get_and_get_read(start):
    server, client = start([owner()], nine(defect_at=()))
    got = client.entities.get("ent_3", customer_id="acme")
    assert got == server.get_entity("acme", "ent_3")
    assert [s["plan_id"] for s in got["subscriptions"]] == ["pro"]  # inherited from the customer
    read = client.entities.get_read("ent_3")
    assert isinstance(read, EntityRead) and read.entity == got and read.read_at.tzinfo is not None
    assert server.requests[-1] == ("entities.get", {"entity_id": "ent_3"})
    with pytest.raises(NotFoundError) as caught:
        client.entities.get("nope")
    assert caught.value.code == "entity_not_found" and "entities.get" in str(caught.value)
    server.faults.malformed_next(1, endpoint="entities.get", body=b'{"list": []}',
                                 content_type="application/json")  # fmt: skip
    with pytest.raises(AutumnResponseError, match="not an entity"):
        client.entities.get("ent_3")


def test_list_answers_are_validated(start):
    server, client = start([owner()], nine())
    server.faults.malformed_next(1, endpoint="entities.list", body=b'{"list": {}, "next_cursor": null}',
                                 content_type="application/json")  # fmt: skip
    with pytest.raises(AutumnResponseError, match=r"entities\.list"):
        next(client.entities.iter_pages())
    server.faults.malformed_next(1, endpoint="entities.list")
    with pytest.raises(AutumnResponseError, match="not JSON"):
        client.entities.list()


def test_retries_on_the_new_endpoints(start, sleeps):
    server, client = start([owner()], nine(defect_at=()))
    server.faults.fail_next(2, status=503, endpoint="entities.list")
    server.faults.rate_limit_next(1, endpoint="features.list", retry_after=2)
    assert sum(len(p.entities) for p in client.entities.iter_pages(limit=4)) == 9
    assert len(client.features.list()) == len(make_catalogue()[0])
    assert len(sleeps) == 3 and sleeps[-1] >= 2  # two 503s, then the 429's Retry-After
    server.faults.fail_next(1, status=500, endpoint="plans.list")
    with pytest.raises(ServerError):
        client.plans.list()


def test_features_and_plans(start):
    server, client = start([owner()], [])
    features, plans = make_catalogue()
    assert client.features.list() == features
    assert client.plans.list() == plans
    credits = next(f for f in client.features.list() if f["type"] == "credit_system")
    assert credits["credit_schema"]
    assert [e for e, _ in server.requests] == ["features.list", "plans.list", "features.list"]
    assert all(body == {} for _, body in server.requests)
    server.faults.malformed_next(1, endpoint="plans.list", body=b'{"list": [{"name": "no id"}]}',
                                 content_type="application/json")  # fmt: skip
    with pytest.raises(AutumnResponseError, match="without an id"):
        client.plans.list()
    server.faults.malformed_next(1, endpoint="features.list", body=b"[]", content_type="application/json")
    with pytest.raises(AutumnResponseError, match=r"features.list answer is not \{list"):
        client.features.list()
