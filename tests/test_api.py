"""The REST API over the mirror, against rows the real sync wrote from the stand-in."""

from __future__ import annotations

import base64

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authentication import BasicAuthentication, SessionAuthentication

from autumn_django.api import views
from autumn_django.models import Customer
from autumn_django.sync import sync_all_customers, sync_customer

pytestmark = pytest.mark.django_db

ME = "/autumn/me/"
CUSTOMERS = "/autumn/customers/"


@pytest.fixture
def server(make_standin):
    server = make_standin(60, seed=3)
    sync_all_customers()
    return server


def make_user(username: str, **extra):
    return get_user_model().objects.create_user(username, password="pw", **extra)


def link(user, autumn_id: str) -> None:
    Customer.objects.filter(env="sandbox", autumn_id=autumn_id).update(owner=user)


def rich_customer_id(server) -> str:
    """A customer with subscriptions, purchases, balances and flags."""
    return next(c["id"] for c in server.list_customers()
                if c["id"] and c["subscriptions"] and c["purchases"] and c["balances"] and c["flags"])


def capped_customer_id(server) -> str:
    """A customer past the list endpoint's 15 subscriptions + purchases cap."""
    return next(c["id"] for c in server.list_customers()
                if c["id"] and len(c["subscriptions"]) + len(c["purchases"]) > 15)


# -- me/ ------------------------------------------------------------------------------


@pytest.mark.parametrize("pick", [rich_customer_id, capped_customer_id])
def test_me_is_autumns_customers_get_field_by_field(client, server, pick):
    customer_id = pick(server)
    user = make_user("ada")
    link(user, customer_id)
    client.force_login(user)

    response = client.get(ME)

    assert response.status_code == 200
    body, expected = response.json(), server.get_customer(customer_id)
    assert set(body) == set(expected)
    for field, value in expected.items():
        assert body[field] == value, field
        assert type(body[field]) is type(value), field  # epoch ms stay integers, etc.
    for section in ("balances", "flags"):
        for feature_id, item in expected[section].items():
            assert body[section][feature_id] == item, (section, feature_id)
    assert body["subscriptions"] == expected["subscriptions"]
    assert body["purchases"] == expected["purchases"]


def test_me_follows_a_refresh(client, server):
    customer_id = rich_customer_id(server)
    user = make_user("ada")
    link(user, customer_id)
    client.force_login(user)
    server.modify_customer(customer_id, name="Ada Renamed", balances={})
    sync_customer(customer_id)

    assert client.get(ME).json() == server.get_customer(customer_id)


def test_me_without_a_customer_is_404_with_a_message(client, server):
    client.force_login(make_user("newcomer"))

    response = client.get(ME)

    assert response.status_code == 404
    assert response.json() == {"detail": "No Autumn customer is linked to your account yet."}


def test_me_of_a_deleted_customer_or_another_env_is_404(client, settings, server):
    customer_id = rich_customer_id(server)
    user = make_user("ada")
    link(user, customer_id)
    client.force_login(user)
    settings.AUTUMN_SECRET_KEY = "am_sk_live_other0000000000000000"
    assert client.get(ME).status_code == 404  # the row is a sandbox customer

    settings.AUTUMN_SECRET_KEY = "am_sk_test_suite0000000000000000"
    server.delete_customer(customer_id)
    sync_customer(customer_id)
    assert client.get(ME).status_code == 404


def test_a_user_only_ever_sees_their_own_customer(client, server):
    ids = [c["id"] for c in server.list_customers() if c["id"]]
    ada, bob = make_user("ada"), make_user("bob")
    link(ada, ids[0])
    link(bob, ids[1])

    client.force_login(bob)
    assert client.get(ME).json()["id"] == ids[1]
    # me/ takes no id: a query string naming another customer changes nothing.
    assert client.get(ME, {"customer_id": ids[0], "id": ids[0]}).json()["id"] == ids[1]
    # Nor can a non-staff user reach the staff endpoints.
    assert client.get(f"{CUSTOMERS}{ids[0]}/").status_code == 403
    assert client.get(CUSTOMERS).status_code == 403


def test_anonymous_is_refused_as_the_projects_authentication_says(client, server, monkeypatch):
    # DRF's defaults list SessionAuthentication first, which sends no WWW-Authenticate: 403.
    for url in (ME, CUSTOMERS):
        assert client.get(url).status_code == 403

    # A project whose REST_FRAMEWORK lists Basic (or token) authentication first gets 401
    # and a challenge. DRF binds DEFAULT_AUTHENTICATION_CLASSES when it is imported, so
    # set what those settings would have given.
    for view in (views.MeView, views.CustomerListView):
        monkeypatch.setattr(view, "authentication_classes", [BasicAuthentication, SessionAuthentication])
    for url in (ME, CUSTOMERS):
        response = client.get(url)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_any_configured_authentication_works(client, server):
    # DRF's default authentication classes include HTTP Basic; nothing in the app narrows them.
    customer_id = rich_customer_id(server)
    link(make_user("ada"), customer_id)
    credentials = base64.b64encode(b"ada:pw").decode()

    response = client.get(ME, HTTP_AUTHORIZATION=f"Basic {credentials}")

    assert response.status_code == 200 and response.json()["id"] == customer_id


# -- the staff endpoints ----------------------------------------------------------------


@pytest.fixture
def staff_client(client):
    client.force_login(make_user("staff", is_staff=True))
    return client


def listed_ids(client, **params) -> list[str]:
    """Every autumn_id the list returns for ``params``, following the pages."""
    ids, page = [], 1
    while page:
        response = client.get(CUSTOMERS, {**params, "page": page})
        assert response.status_code == 200, response.content
        body = response.json()
        ids += [row["autumn_id"] for row in body["results"]]
        page = page + 1 if body["next"] else None
    return ids


def test_staff_list_pages_newest_first(staff_client, server):
    expected = server.list_customers()  # ascending created_at

    first = staff_client.get(CUSTOMERS).json()
    assert first["count"] == 60 and len(first["results"]) == 50 and first["next"]
    second = staff_client.get(CUSTOMERS, {"page": 2}).json()
    assert len(second["results"]) == 10 and second["next"] is None and second["previous"]
    small = staff_client.get(CUSTOMERS, {"page_size": 7}).json()
    assert len(small["results"]) == 7

    ids = [row["autumn_id"] for row in first["results"] + second["results"]]
    assert ids == [c["id"] for c in reversed(expected)]
    row = first["results"][0]
    assert set(row) == {"autumn_id", "env", "owner", "synced_at", "deleted_at", "customer"}
    assert row["customer"] == server.get_customer(row["autumn_id"])


def test_staff_list_filters(staff_client, server):
    customers = server.list_customers()

    def having(predicate) -> set[str]:
        matched = {c["id"] for c in customers if predicate(c)}
        assert matched and len(matched) < len(customers), "the filter must select something, not everything"
        return matched

    def items(c):
        return c["subscriptions"] + c["purchases"]

    def has_plan(c, *plans):
        return any(i["plan_id"] in plans for i in items(c))

    def has_feature(c, feature):
        return feature in c["balances"] or feature in c["flags"]

    def scheduled(c):
        return any(s["status"] == "scheduled" for s in c["subscriptions"])

    def contains(c, text):
        return any(text in (c[f] or "").lower() for f in ("id", "name", "email"))

    cases = [
        ({"plan": "pro"}, having(lambda c: has_plan(c, "pro"))),
        ({"plan": ["pro", "team"]}, having(lambda c: has_plan(c, "pro", "team"))),
        ({"status": "scheduled"}, having(scheduled)),
        ({"feature": "sso"}, having(lambda c: has_feature(c, "sso"))),
        ({"feature": "ai_tokens"}, having(lambda c: has_feature(c, "ai_tokens"))),
        ({"search": "ACME"}, having(lambda c: contains(c, "acme"))),
        ({"search": "org:"}, having(lambda c: "org:" in (c["id"] or ""))),
        ({"plan": "pro", "feature": "ai_tokens"},
         having(lambda c: has_plan(c, "pro") and has_feature(c, "ai_tokens"))),
    ]
    for params, expected in cases:
        ids = listed_ids(staff_client, **params)
        assert len(ids) == len(set(ids)), f"{params}: a customer listed twice"
        assert set(ids) == expected, params


def test_staff_list_deleted_filter_and_bad_values(staff_client, server):
    gone = [c["id"] for c in server.list_customers()[:3]]
    for customer_id in gone:
        server.delete_customer(customer_id)
        sync_customer(customer_id)

    assert set(listed_ids(staff_client, deleted="true")) == set(gone)
    assert len(listed_ids(staff_client)) == 57
    assert staff_client.get(CUSTOMERS, {"status": "expired"}).status_code == 400
    assert staff_client.get(CUSTOMERS, {"deleted": "maybe"}).status_code == 400


def test_staff_detail(staff_client, server):
    customer_id = capped_customer_id(server)

    response = staff_client.get(f"{CUSTOMERS}{customer_id}/")

    assert response.status_code == 200
    body = response.json()
    assert body["autumn_id"] == customer_id and body["deleted_at"] is None
    assert body["customer"] == server.get_customer(customer_id)
    assert staff_client.get(f"{CUSTOMERS}no_such_customer/").status_code == 404

    # Deleted customers stay readable for staff, marked as such.
    server.delete_customer(customer_id)
    sync_customer(customer_id)
    assert staff_client.get(f"{CUSTOMERS}{customer_id}/").json()["deleted_at"] is not None


def test_list_queries_do_not_grow_with_the_page(staff_client, make_standin):
    def queries(**filters) -> tuple[int, int]:
        with CaptureQueriesContext(connection) as captured:
            response = staff_client.get(CUSTOMERS, {"page_size": 100, **filters})
        assert response.status_code == 200
        return len(captured), len(response.json()["results"])

    filters = {"plan": ["pro", "starter"], "status": "active", "feature": "messages", "search": "e"}
    make_standin(10, seed=11)
    sync_all_customers()
    few, few_filtered = queries(), queries(**filters)
    make_standin(100, seed=12)
    sync_all_customers()
    many, many_filtered = queries(), queries(**filters)

    assert (few[1], many[1]) == (10, 100)
    assert 0 < few_filtered[1] < many_filtered[1]
    assert few[0] == many[0] and few_filtered[0] == many_filtered[0]
    # The session and its user, then the page's count and rows: nothing per customer.
    assert few[0] == few_filtered[0] == 4
