"""The admin's entities, seat pools and catalogue, over rows written with the ORM
(``tests/entity_data.py``): a customer's page, the Entities list and page, the feature and
plan lists, and catalogue names beside ids, each at a constant number of queries."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from autumn_django.admin.entities import CUSTOMER_PAGE_ENTITIES
from autumn_django.models import Balance, Entity, Subscription

from .entity_data import make_catalogue, make_customer, make_entity, make_license
from .test_admin import staff

pytestmark = pytest.mark.django_db(transaction=True)

CUSTOMERS = "/admin/autumn_django/customer/"
ENTITIES = "/admin/autumn_django/entity/"
BALANCES = "/admin/autumn_django/balance/"
FEATURES = "/admin/autumn_django/feature/"
PLANS = "/admin/autumn_django/plan/"
HOSTILE = '<b>Ops</b> צוות'


@pytest.fixture
def acme():
    """A customer with a seat pool, three entities (one deleted) and the catalogue."""
    make_catalogue()
    customer = make_customer("acme", name="Acme GmbH", email="billing@acme.example")
    Subscription.objects.create(customer=customer, plan_id="team", status="active")
    Subscription.objects.create(customer=customer, plan_id="seat_pro", status="active", scope="entity")
    make_license(customer, "seat_pro", granted=10, usage=7, paid=5)
    make_license(customer, "seat_basic", granted=4, usage=0, name="Basic seat (legacy)")
    make_entity(customer, "ws_design", name=HOSTILE, plans=("seat_pro",), inherited=("team",),
                balances={"ai_tokens": (100, 40)}, flags=("sso",), seconds=1)
    make_entity(customer, "ws_ops", name="Ops", feature_id="workspaces", inherited=("team",), seconds=2)
    make_entity(customer, "ws_old", name="Old", plans=("seat_basic",), deleted=True, seconds=3)
    return customer


def listed(html: str) -> list[str]:
    """The entity ids in a changelist page's rows, in order."""
    return re.findall(r'<th class="field-autumn_id"><a href="[^"]+">([^<]+)</a>', html)


def count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(captured)


# -- the customer page ------------------------------------------------------------------

def test_customer_page_shows_its_entities_and_seat_pools(admin_client, acme):
    design = Entity.objects.get(autumn_id="ws_design")

    html = admin_client.get(f"{CUSTOMERS}{acme.pk}/change/").content.decode()

    section = html[html.index('id="entities-group"'):]
    section = section[:section.index("</fieldset>")]
    assert "Entities (3)" in section
    rows = re.findall(r'<tr class="autumn-entity-row">(.*?)</tr>', section, re.S)
    assert len(rows) == 3
    ops, design_row, old = rows  # present ones newest first, then the deleted
    assert f'href="{ENTITIES}{design.pk}/change/"' in design_row
    assert "&lt;b&gt;Ops&lt;/b&gt; צוות" in design_row and "<b>Ops" not in html
    assert 'seats</span> <span class="autumn-name">Team seats' in design_row
    assert 'seat_pro</span> <span class="autumn-name">Pro seat' in design_row, "own plans, named"
    assert ">team<" not in design_row, "the inherited plan is the customer's, not the entity's own"
    assert "workspaces" in ops and "ws_ops (Ops)" in ops
    assert "ws_old" in old and "deleted</span>" in old and "deleted</span>" not in ops
    assert "View all" not in section
    # Seat pools: the pool's own name first, else the catalogue's; used / granted; a bar with text.
    pools = html[html.index('id="licenses-group"'):]
    assert 'seat_pro</span> <span class="autumn-name">Pro seat' in pools
    assert "Basic seat (legacy)" in pools
    assert ">7 / 10<" in pools and ">0 / 4<" in pools
    assert re.search(r'<meter [^>]*max="10.0"[^>]*value="7.0" title="7 of 10 seats used">7 of 10 seats used'
                     r"</meter> <span class=\"autumn-usage-percent\">70%</span>", pools)
    assert re.search(r'class="field-paid_seats">\s*<p>5</p>', pools)
    # The subscriptions show their scope: the seat plan is an entity's, folded in by Autumn.
    subscriptions = html[html.index('id="subscriptions-group"'):html.index('id="flags-group"')]
    seat_row = next(r for r in re.findall(r"<tr[^>]*has_original[^>]*>(.*?)</tr>", subscriptions, re.S)
                    if "seat_pro" in r)
    assert 'autumn-badge-entity">entity</span>' in seat_row


def test_customer_page_caps_its_entities_with_a_link_to_them_all(admin_client, acme):
    for i in range(CUSTOMER_PAGE_ENTITIES + 5):
        make_entity(acme, f"seat_{i:02d}", name=f"Seat {i}", seconds=100 + i)

    html = admin_client.get(f"{CUSTOMERS}{acme.pk}/change/").content.decode()

    assert html.count('<tr class="autumn-entity-row">') == CUSTOMER_PAGE_ENTITIES
    assert "Entities (28)" in html
    link = f'{ENTITIES}?customer__id__exact={acme.pk}'
    assert f'<a href="{link}">View all 28 entities</a>' in html
    assert len(listed(admin_client.get(link + "&all=").content.decode())) == 28


def test_customer_page_queries_do_not_grow_with_entities_and_pools(admin_client, acme):
    url = f"{CUSTOMERS}{acme.pk}/change/"
    admin_client.get(url)  # warm caches (content types, session)
    few = count_queries(admin_client, url)
    for i in range(40):
        make_entity(acme, f"seat_{i:02d}", plans=("seat_pro", "seat_basic"), inherited=("team",),
                    balances={"ai_tokens": (10, 1)}, flags=("sso",), seconds=100 + i)
        make_license(acme, f"pool_{i}", granted=5, usage=i % 6)
    Subscription.objects.bulk_create(Subscription(customer=acme, plan_id=f"p{i}", status="active")
                                     for i in range(20))

    assert count_queries(admin_client, url) == few + 1, "one count, once there are more than the cap"


# -- the Entities list ------------------------------------------------------------------

def test_entity_list_columns(admin_client, acme):
    html = admin_client.get(ENTITIES).content.decode()

    assert listed(html) == ["ws_old", "ws_ops", "ws_design"], "newest first"
    row = html[html.index(">ws_design<"):]
    row = row[:row.index("</tr>")]
    assert f'href="{CUSTOMERS}{acme.pk}/change/"><bdi>acme (Acme GmbH)</bdi>' in row
    assert "&lt;b&gt;Ops&lt;/b&gt;" in row and "<b>Ops" not in html
    assert 'seats</span> <span class="autumn-name">Team seats' in row
    assert 'seat_pro</span> <span class="autumn-name">Pro seat' in row
    assert 'name="_selected_action"' not in html, "read-only: no actions"


@pytest.mark.parametrize(("params", "expected"), [
    ({"q": "ws_ops"}, ["ws_ops"]),
    ({"q": "ws_"}, []),  # ids match exactly
    ({"q": "צוות"}, ["ws_design"]),
    ({"q": "acme"}, ["ws_old", "ws_ops", "ws_design"]),  # the customer's id
    ({"q": "billing@acme"}, ["ws_old", "ws_ops", "ws_design"]),  # part of its email
    ({"feature": "workspaces"}, ["ws_ops"]),
    ({"plan": "seat_pro"}, ["ws_design"]),
    ({"plan": "team"}, ["ws_ops", "ws_design"]),  # inherited plans count, as in entities.list
    ({"deleted": "yes"}, ["ws_old"]),
    ({"deleted": "no"}, ["ws_ops", "ws_design", "live_1"]),
    ({"env__exact": "live"}, ["live_1"]),
])
def test_entity_list_search_and_filters(admin_client, acme, params, expected):
    make_entity(make_customer("other_live", env="live"), "live_1", name="Elsewhere")
    Subscription.objects.filter(entity__autumn_id="ws_old").update(status="scheduled")

    html = admin_client.get(ENTITIES, params).content.decode()

    assert listed(html) == expected


def test_entity_filters_offer_catalogue_names(admin_client, acme):
    html = admin_client.get(ENTITIES).content.decode()

    assert re.search(r'<a href="\?plan=seat_pro"[^>]*>Pro seat \(seat_pro\)</a>', html)
    assert re.search(r'<a href="\?plan=team"[^>]*>Team \(team\)</a>', html)
    assert re.search(r'<a href="\?feature=seats"[^>]*>Team seats \(seats\)</a>', html)
    assert re.search(r'<a href="\?feature=workspaces"[^>]*>workspaces</a>', html), "no name: the id"


def test_entity_list_queries_do_not_grow_with_the_page(admin_client, acme):
    urls = (ENTITIES, ENTITIES + "?plan=team&feature=seats", ENTITIES + "?q=acme")
    for url in urls:
        admin_client.get(url)
    few = {url: count_queries(admin_client, url) for url in urls}
    for i in range(60):
        make_entity(acme, f"seat_{i:02d}", plans=("seat_pro",), inherited=("team",), seconds=100 + i)

    assert {url: count_queries(admin_client, url) for url in urls} == few
    # Session, user, count (PostgreSQL: and its estimate), page, own plans, the two
    # filters' choices and their names.
    assert few[ENTITIES] <= 9 + (connection.vendor == "postgresql"), few


# -- the entity page --------------------------------------------------------------------

def test_entity_page(admin_client, acme):
    design = Entity.objects.get(autumn_id="ws_design")
    url = f"{ENTITIES}{design.pk}/change/"

    html = admin_client.get(url).content.decode()

    assert f'href="{CUSTOMERS}{acme.pk}/change/"><bdi>acme (Acme GmbH)</bdi>' in html
    assert "&lt;b&gt;Ops&lt;/b&gt; צוות" in html and "<b>Ops" not in html
    subscriptions = html[html.index('id="subscriptions-group"'):html.index('id="flags-group"')]
    rows = re.findall(r"<tr[^>]*has_original[^>]*>(.*?)</tr>", subscriptions, re.S)
    assert [("seat_pro" in r, "entity</span>" in r) for r in rows] == [(True, True), (False, False)], \
        "its own plan first, then the customer's"
    assert 'team</span> <span class="autumn-name">Team' in rows[1] and ">customer<" in rows[1]
    balances = html[html.index('id="balances-group"'):]
    assert 'ai_tokens</span> <span class="autumn-name">AI tokens' in balances
    assert re.search(r'<meter [^>]*max="100.0"[^>]*value="40.0"', balances)
    assert 'sso</span> <span class="autumn-name">Single sign-on' in html[html.index('id="flags-group"'):]
    assert re.search(r"<details[^>]*><summary>Show the entity object Autumn sent</summary>", html)
    assert '"customer_id": "acme"' in html.replace("&quot;", '"')
    # Read-only, and its queries do not grow with its children.
    assert 'type="submit" value="Save"' not in html
    assert admin_client.post(url, {"name": "x"}).status_code == 403
    assert admin_client.get(ENTITIES + "add/").status_code == 403
    assert admin_client.post(f"{ENTITIES}{design.pk}/delete/", {"post": "yes"}).status_code == 403
    few = count_queries(admin_client, url)
    Balance.objects.bulk_create(Balance(entity=design, feature_id=f"f{i}", granted=5, usage=1)
                                for i in range(30))
    Subscription.objects.bulk_create(Subscription(entity=design, plan_id=f"p{i}", status="active",
                                                  scope="entity") for i in range(30))
    assert count_queries(admin_client, url) == few


def test_entity_permissions_follow_the_customers_scheme(client, acme, django_user_model):
    design = Entity.objects.get(autumn_id="ws_design")
    client.force_login(staff(django_user_model, "autumn_django.view_customer"))

    assert client.get(ENTITIES).status_code == 403
    assert client.get(f"{ENTITIES}{design.pk}/change/").status_code == 403
    page = client.get(f"{CUSTOMERS}{acme.pk}/change/").content.decode()
    assert "Entities (3)" in page and f"{ENTITIES}{design.pk}/change/" not in page, \
        "the table comes with the customer; links only for those who may follow them"

    client.force_login(staff(django_user_model, "autumn_django.view_entity", username="seats"))
    assert client.get(ENTITIES).status_code == 200
    assert client.get(f"{ENTITIES}{design.pk}/change/").status_code == 200
    assert client.get(f"{CUSTOMERS}{acme.pk}/change/").status_code == 403


# -- the catalogue and its names ----------------------------------------------------------

def test_feature_and_plan_lists(admin_client, acme):
    features = admin_client.get(FEATURES).content.decode()
    plans = admin_client.get(PLANS).content.decode()

    credits = features[features.index(">credits<"):]
    credits = credits[:credits.index("</tr>")]
    assert "AI credits" in credits and "Credit system" in credits
    assert ('ai_tokens</span> <span class="autumn-name">AI tokens</span>: 0.5 credits each' in credits)
    assert 'images</span> <span class="autumn-name">Image generations</span>: 4 credits each' in credits
    free = plans[plans.index(">free<"):]
    free = free[:free.index("</tr>")]
    assert "Free" in free and "base" in free and 'field-auto_enable_marker">yes<' in free
    assert 'field-add_on_marker">yes<' in plans[plans.index(">extra_storage<"):]
    assert admin_client.get(FEATURES + "add/").status_code == 403


def test_credit_schema_on_the_feature_page_and_list_queries(admin_client, acme):
    from autumn_django.models import Feature

    page = admin_client.get(f"{FEATURES}{Feature.objects.get(feature_id='credits').pk}/change/")
    assert "0.5 credits each" in page.content.decode()
    few = count_queries(admin_client, FEATURES)
    for i in range(20):
        Feature.objects.create(env="sandbox", feature_id=f"cs{i}", name=f"CS {i}", type="credit_system",
                               credit_schema=[{"metered_feature_id": "images", "credit_cost": i}],
                               raw={}, synced_at=acme.synced_at)
    assert count_queries(admin_client, FEATURES) == few


def test_names_beside_ids_on_the_balance_and_customer_lists(admin_client, acme):
    design = Entity.objects.get(autumn_id="ws_design")
    Balance.objects.create(customer=acme, feature_id="seats", granted=10, usage=7)

    balances = admin_client.get(BALANCES).content.decode()
    customers = admin_client.get(CUSTOMERS).content.decode()

    assert 'seats</span> <span class="autumn-name">Team seats' in balances
    assert 'ai_tokens</span> <span class="autumn-name">AI tokens' in balances
    # An entity's balance names the entity (linked) and its customer.
    assert re.search(rf'href="{ENTITIES}{design.pk}/change/"><bdi>ws_design \(.*?\)</bdi></a> of '
                     rf'<a href="{CUSTOMERS}{acme.pk}/change/">', balances)
    found = admin_client.get(BALANCES, {"q": "ws_design"}).content.decode()
    assert found.count('class="field-feature"') == 1 and "ai_tokens" in found, "found by entity id"
    assert 'team</span> <span class="autumn-name">Team</span>' in customers
    assert "seat_pro" not in customers.split('id="result_list"')[1].split("</table>")[0], \
        "the customer's plans, not its entities' folded in"
