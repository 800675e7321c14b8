"""The API's entities: ``me/?expand=entities`` for the owner, ``entities/`` for staff, over
rows written with the ORM (``tests/entity_data.py``)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from autumn_django.models import Customer, Entity

from .entity_data import make_customer, make_entity

pytestmark = pytest.mark.django_db

ME = "/autumn/me/"
ENTITIES = "/autumn/entities/"


def make_user(username: str, **extra):
    return get_user_model().objects.create_user(username, password="pw", **extra)


@pytest.fixture
def two_customers(settings):
    """ada's customer with three entities (one deleted), bob's with one, a live one."""
    settings.AUTUMN_SECRET_KEY = "am_sk_test_suite0000000000000000"
    ada, bob = make_user("ada"), make_user("bob")
    acme = make_customer("acme", name="Acme")
    Customer.objects.filter(pk=acme.pk).update(owner=ada)
    make_entity(acme, "ws_design", name="Design", plans=("seat_pro",), inherited=("team",),
                balances={"ai_tokens": (100, 40)}, flags=("sso",), seconds=1)
    make_entity(acme, "ws_ops", name="Ops", feature_id="workspaces", seconds=2)
    make_entity(acme, "ws_old", name="Old", deleted=True, seconds=3)
    globex = make_customer("globex", name="Globex")
    Customer.objects.filter(pk=globex.pk).update(owner=bob)
    make_entity(globex, "gx_secret", name="Globex secret project", seconds=4)
    make_entity(make_customer("live_cus", env="live"), "live_ws", seconds=5)
    return {"ada": ada, "bob": bob}


# -- me/?expand=entities ----------------------------------------------------------------

def test_me_expands_the_owners_present_entities_as_autumn_sent_them(client, two_customers):
    client.force_login(two_customers["ada"])

    plain = client.get(ME).json()
    body = client.get(ME, {"expand": "entities"}).json()

    assert "entities" not in plain
    assert {k: v for k, v in body.items() if k != "entities"} == plain
    expected = [Entity.objects.get(autumn_id=i).raw for i in ("ws_ops", "ws_design")]
    assert body["entities"] == expected, "present ones, newest first, whole"
    design = body["entities"][1]
    assert [(s["plan_id"], s["scope"]) for s in design["subscriptions"]] == [
        ("seat_pro", "entity"), ("team", "customer")]
    assert design["balances"]["ai_tokens"]["remaining"] == 60 and "sso" in design["flags"]
    assert design["feature_id"] == "seats" and design["name"] == "Design"


def test_a_user_never_sees_another_customers_entities(client, two_customers):
    client.force_login(two_customers["bob"])

    body = client.get(ME, {"expand": "entities", "customer_id": "acme", "id": "acme"}).json()

    assert body["id"] == "globex"
    assert [e["id"] for e in body["entities"]] == ["gx_secret"]
    # The staff list is not theirs either, whatever they filter by.
    assert client.get(ENTITIES, {"customer_id": "acme"}).status_code == 403
    assert client.get(ENTITIES).status_code == 403


def test_expand_takes_autumns_forms_and_refuses_unknown_values(client, two_customers):
    client.force_login(two_customers["ada"])

    assert len(client.get(ME, {"expand": ["entities"]}).json()["entities"]) == 2
    assert len(client.get(ME + "?expand=entities,entities").json()["entities"]) == 2
    response = client.get(ME, {"expand": "entities,invoices"})
    assert response.status_code == 400
    assert response.json() == {"expand": "Unknown: invoices. Expected one of entities."}


def test_me_expand_costs_one_query_more_whatever_the_entities(client, two_customers):
    client.force_login(two_customers["ada"])

    def queries(**params) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(ME, params).status_code == 200
        return len(captured)

    plain, expanded = queries(), queries(expand="entities")
    acme = Customer.objects.get(autumn_id="acme")
    for i in range(30):
        make_entity(acme, f"seat_{i}", plans=("seat_pro",), seconds=100 + i)
    assert (queries(), queries(expand="entities")) == (plain, plain + 1) == (plain, expanded)


# -- the staff list ---------------------------------------------------------------------

def test_staff_list_of_entities(client, two_customers):
    client.force_login(make_user("staff", is_staff=True))

    def ids(**params) -> list[str]:
        response = client.get(ENTITIES, params)
        assert response.status_code == 200, response.content
        return [row["autumn_id"] for row in response.json()["results"]]

    assert ids() == ["gx_secret", "ws_ops", "ws_design"], "the key's env, present, newest first"
    assert ids(customer_id="acme") == ["ws_ops", "ws_design"]
    assert ids(feature_id="workspaces") == ["ws_ops"]
    assert ids(customer_id="acme", feature_id="seats") == ["ws_design"]
    assert ids(customer_id="nobody") == []
    assert ids(deleted="true") == ["ws_old"]
    assert client.get(ENTITIES, {"deleted": "maybe"}).status_code == 400
    row = client.get(ENTITIES, {"customer_id": "globex"}).json()["results"][0]
    assert set(row) == {"autumn_id", "env", "customer_id", "feature_id", "synced_at", "deleted_at", "entity"}
    assert row["customer_id"] == "globex" and row["entity"] == Entity.objects.get(autumn_id="gx_secret").raw
    page = client.get(ENTITIES, {"page_size": 2}).json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]


def test_staff_list_queries_do_not_grow_with_the_page(client, two_customers):
    client.force_login(make_user("staff", is_staff=True))

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(ENTITIES, {"page_size": 100}).status_code == 200
        return len(captured)

    few = queries()
    acme = Customer.objects.get(autumn_id="acme")
    for i in range(40):
        make_entity(acme, f"seat_{i}", seconds=100 + i)
    assert queries() == few == 4  # session, user, count, rows


def test_anonymous_cannot_list_entities(client, two_customers):
    assert client.get(ENTITIES).status_code == 403
    assert client.get(ME, {"expand": "entities"}).status_code == 403
