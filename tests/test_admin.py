"""The admin against a real mirror: synced from the stand-in, browsed with Django's client."""

from __future__ import annotations

import copy
import re
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.formats import date_format
from django.utils.html import escape

from autumn_django.admin.pagination import EstimatedCountPaginator
from autumn_django.models import Balance, Customer, Subscription, SyncRun
from autumn_django.sync import sync_all_customers

from .conftest import published_tasks

pytestmark = pytest.mark.django_db(transaction=True)

CUSTOMERS = "/admin/autumn_django/customer/"
BALANCES = "/admin/autumn_django/balance/"
SYNC_RUNS = "/admin/autumn_django/syncrun/"
SYNC_NOW = SYNC_RUNS + "sync-now/"

RESET = datetime(2031, 1, 15, 18, 45, tzinfo=timezone.utc)
RESET_MS = int(RESET.timestamp() * 1000)
SHOWCASE_ID = "cus_showcase"
# The balance list's feature column: the id (with the catalogue's name beside it, when the
# catalogue names it) in the row's link.
FEATURE_CELL = r'class="field-feature"><a [^>]*>(?:<span class="autumn-id">)?([^<]+)'
# User data with everything a page must survive: markup, quotes, RTL text and emoji.
HOSTILE_NAME = '<script>alert("x")</script> דוד כהן 🚀'


def _balance(feature: str, *, granted: float = 0, usage: float = 0, unlimited: bool = False,
             overage: bool = False, reset_ms: int | None = None) -> dict:
    return {"feature_id": feature, "granted": granted, "usage": usage,
            "remaining": 0 if unlimited else granted - usage, "unlimited": unlimited,
            "overage_allowed": overage, "max_purchase": None, "next_reset_at": reset_ms,
            "breakdown": [{"id": f"cus_ent_{feature}", "plan_id": "pro", "included_grant": granted}]}


def _subscription(plan_id: str, **fields) -> dict:
    return {"id": f"sub_{plan_id}", "plan_id": plan_id, "status": "active", "auto_enable": False,
            "add_on": False, "past_due": False, "quantity": 1, "started_at": 1_700_000_000_000,
            "current_period_start": None, "current_period_end": None, "canceled_at": None,
            "expires_at": None, "trial_ends_at": None, **fields}


SHOWCASE = {
    "name": HOSTILE_NAME,
    "email": "showcase@example.com",
    "metadata": {"source": "sales", "note": "<img src=x onerror=alert(1)>"},
    "subscriptions": [_subscription("pro", past_due=True),
                      _subscription("extra_seats", add_on=True, quantity=3),
                      _subscription("team", status="scheduled")],
    "purchases": [{"plan_id": "credits_1000", "quantity": 2, "started_at": 1_700_000_000_000,
                   "expires_at": None}],
    "balances": {
        "messages": _balance("messages", granted=1000, usage=250, reset_ms=RESET_MS),
        "ai_tokens": _balance("ai_tokens", granted=100, usage=12.5),
        "api_calls": _balance("api_calls", unlimited=True, usage=4321),
        "exports": _balance("exports", granted=10, usage=13, overage=True),
    },
    "flags": {"sso": {"id": "flag_sso", "plan_id": "pro", "feature_id": "sso", "expires_at": None}},
}


@pytest.fixture
def mirror(make_standin):
    """A stand-in of 40 customers, the showcase and an id-less one, synced into the mirror."""
    server = make_standin(40, seed=5)
    first = next(c for c in server.list_customers() if c["id"])
    showcase = {**copy.deepcopy(first), **copy.deepcopy(SHOWCASE), "id": SHOWCASE_ID}
    showcase.pop("created_at")
    server.add_customer(showcase)
    idless = {**copy.deepcopy(first), "id": None, "email": "idless@example.com", "name": "No Id"}
    idless.pop("created_at")
    server.add_customer(idless)
    sync_all_customers()
    server.clear_requests()
    return server


@pytest.fixture
def showcase(mirror) -> Customer:
    return Customer.objects.get(autumn_id=SHOWCASE_ID)


def staff(django_user_model, *perms: str, username: str = "staff"):
    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label,
                                                         codename=codename))
    return user


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


def post_action(client, action: str, pks, **extra):
    return client.post(CUSTOMERS, {"action": action, "index": "0",
                                   "_selected_action": [str(pk) for pk in pks], **extra}, follow=True)


# -- the customer list ------------------------------------------------------------------

def test_customer_list_shows_the_columns_escaped(admin_client, showcase):
    Customer.objects.filter(pk=showcase.pk).update(deleted_at=datetime(2030, 1, 1, tzinfo=timezone.utc))

    html = admin_client.get(CUSTOMERS).content.decode()

    row = _row(html, showcase.pk)
    assert SHOWCASE_ID in row and "showcase@example.com" in row and "Sandbox" in row
    assert f"<bdi>{escape(HOSTILE_NAME)}</bdi>" in row
    assert "<script>alert" not in html
    assert re.search(rf"autumn-plan\">{_plan('pro')}</span>, <span class=\"autumn-plan autumn-addon\">"
                     rf"{_plan('extra_seats')} \u00d73</span>", row), "active plans, base plan first"
    assert "team" not in row, "a scheduled plan is not an active plan"
    assert "past due</span>" in row and "deleted</span>" in row
    # Healthy rows carry no markers.
    other = Customer.objects.exclude(pk=showcase.pk).exclude(subscriptions__past_due=True).first()
    assert "autumn-badge" not in _row(html, other.pk)


def test_customer_list_search_by_id_name_and_email(admin_client, showcase):
    for term in (SHOWCASE_ID, "דוד", "showcase@example"):
        html = admin_client.get(CUSTOMERS, {"q": term}).content.decode()
        assert _row(html, showcase.pk), term
        assert len(re.findall(r'name="_selected_action"', html)) == 1, term
    assert "0 customers" in admin_client.get(CUSTOMERS, {"q": "cus_show"}).content.decode(), \
        "ids match exactly"


@pytest.mark.parametrize(("params", "matches"), [
    ({"plan": "pro"}, lambda c: "pro" in c["active"]),
    ({"plan": "extra_seats"}, lambda c: "extra_seats" in c["active"]),
    # A seat plan of the customer's entities (scope "entity") is not the customer's.
    ({"plan": "team_member"}, lambda c: "team_member" in c["active"]),
    ({"past_due": "yes"}, lambda c: c["past_due"]),
    ({"past_due": "no"}, lambda c: not c["past_due"]),
    ({"status": "scheduled"}, lambda c: "scheduled" in c["statuses"]),
    ({"status": "none"}, lambda c: not c["active"]),
    ({"deleted": "yes"}, lambda c: c["deleted"]),
    ({"env__exact": "live"}, lambda c: False),
])
def test_customer_list_filters(admin_client, showcase, params, matches):
    Customer.objects.filter(pk=showcase.pk).update(deleted_at=datetime(2030, 1, 1, tzinfo=timezone.utc))
    facts = {}
    for customer in Customer.objects.prefetch_related("subscriptions"):
        subs = list(customer.subscriptions.all())
        facts[customer.pk] = {
            # The customer's own plans: its entities' (scope "entity") are not its.
            "active": {s.plan_id for s in subs if s.status == "active" and s.scope == "customer"},
            "statuses": {s.status for s in subs},
            "past_due": any(s.past_due for s in subs),
            "deleted": customer.deleted_at is not None,
        }

    html = admin_client.get(CUSTOMERS, params).content.decode()

    listed = {int(pk) for pk in re.findall(r'name="_selected_action" value="(\d+)"', html)}
    assert listed == {pk for pk, fact in facts.items() if matches(fact)}


def test_plan_filter_offers_the_plan_ids(admin_client, mirror):
    html = admin_client.get(CUSTOMERS).content.decode()
    own = Subscription.objects.filter(scope="customer").values_list("plan_id", flat=True).distinct()
    for plan in own:
        assert f"?plan={plan}" in html
    for plan in Subscription.objects.exclude(plan_id__in=own).values_list("plan_id", flat=True):
        assert f"?plan={plan}" not in html, "an entity's plan is not the customer's"


def test_list_pages_cost_the_same_queries_at_10_and_1000_customers(admin_client, make_standin):
    make_standin(1000, seed=11)
    sync_all_customers()
    pages = (CUSTOMERS, CUSTOMERS + "?plan=pro&past_due=no", BALANCES, BALANCES + "?exhausted=yes")
    for url in pages:
        admin_client.get(url)  # warm caches (content types, session)

    def queries() -> dict[str, int]:
        counts = {}
        for url in pages:
            with CaptureQueriesContext(connection) as ctx:
                assert admin_client.get(url).status_code == 200
            counts[url] = len(ctx.captured_queries)
        return counts

    at_1000 = queries()
    keep = list(Customer.objects.order_by("pk").values_list("pk", flat=True)[:10])
    Customer.objects.exclude(pk__in=keep).delete()
    at_10 = queries()

    assert at_1000 == at_10
    # Session, user, count (PostgreSQL: and its estimate), page, prefetch of active plans,
    # plan choices and their catalogue names, and the banner's last complete sync: no more.
    assert at_10[CUSTOMERS] <= 9, at_10


# -- the customer page ------------------------------------------------------------------

def test_customer_page_shows_children_balances_and_links(admin_client, showcase, settings):
    settings.TIME_ZONE = "Asia/Kolkata"

    html = admin_client.get(f"{CUSTOMERS}{showcase.pk}/change/").content.decode()

    assert "<script>alert" not in html and "<img src=x" not in html
    assert escape(HOSTILE_NAME) in html
    # Subscriptions (scheduled too, past due marked), purchases and flags.
    assert 'active <span class="autumn-badge autumn-badge-warn">past due</span>' in html
    for text in ("extra_seats", "team", "scheduled", "credits_1000", "sso"):
        assert text in html, text
    # Balances: granted / used / remaining, and usage bars with their values.
    assert _meter(html, "1000.0") == {"value": "250.0", "low": "750.0", "high": "900.0"}
    assert _meter(html, "100.0")["value"] == "12.5"
    assert ">12.5<" in html and ">87.5<" in html and "12.5%" in html
    assert _meter(html, "10.0")["value"] == "13.0" and "130%" in html and "autumn-usage-over" in html
    assert "Unlimited" in html and ">4,321<" in html
    # The next reset in the active time zone, named.
    local = RESET.astimezone(ZoneInfo("Asia/Kolkata"))
    assert f"{date_format(local, 'DATETIME_FORMAT')} IST" in html
    assert "12:15 a.m." in html  # 18:45 UTC is 00:15 the next day in India
    # Metadata, and the raw JSON folded.
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert re.search(r"<details[^>]*><summary>[^<]+</summary><pre[^>]*>\{", html)
    assert '"id": "cus_showcase"' in html.replace("&quot;", '"')
    # Autumn's dashboard.
    assert 'href="https://app.useautumn.com/sandbox/customers/cus_showcase"' in html


def test_customer_page_hides_third_party_credentials_in_the_json(admin_client, showcase):
    """A Vercel-billed customer's ``processors.vercel`` carries an installation token: kept
    in the mirror, never shown (this failed before: only webhook bodies were hidden)."""
    raw = {**showcase.raw, "processors": {"vercel": {"installation_id": "icfg_1",
                                                     "access_token": "vercel_secret_token_123"}}}
    Customer.objects.filter(pk=showcase.pk).update(raw=raw)

    html = admin_client.get(f"{CUSTOMERS}{showcase.pk}/change/").content.decode()

    assert "vercel_secret_token_123" not in html
    assert "icfg_1" in html and "*** (hidden)" in html
    assert Customer.objects.get(pk=showcase.pk).raw["processors"]["vercel"]["access_token"]


def test_dashboard_link_for_live_customers_and_setting(admin_client, showcase, settings):
    Customer.objects.filter(pk=showcase.pk).update(env="live", autumn_id="org:7/x")
    settings.AUTUMN_DASHBOARD_URL = "https://dash.example.com/"

    html = admin_client.get(f"{CUSTOMERS}{showcase.pk}/change/").content.decode()

    assert 'href="https://dash.example.com/customers/org%3A7%2Fx"' in html


def test_customer_page_links_the_owner(admin_client, showcase, django_user_model):
    user = django_user_model.objects.create_user("ada", email="ada@example.com")
    Customer.objects.filter(pk=showcase.pk).update(owner=user)

    html = admin_client.get(f"{CUSTOMERS}{showcase.pk}/change/").content.decode()

    assert f'href="/admin/auth/user/{user.pk}/change/"' in html


# -- read-only rules --------------------------------------------------------------------

def test_mirror_fields_do_not_change_and_the_owner_link_does(admin_client, showcase, django_user_model):
    user = django_user_model.objects.create_user("ada")
    url = f"{CUSTOMERS}{showcase.pk}/change/"
    data = _form_data(admin_client.get(url))
    data.update(name="Changed", email="changed@example.com", env="live", autumn_id="other",
                raw="{}", owner=str(user.pk))

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.content.decode()[:2000]
    row = Customer.objects.get(pk=showcase.pk)
    assert (row.name, row.email, row.env, row.autumn_id, row.raw, row.synced_at) == (
        showcase.name, showcase.email, showcase.env, showcase.autumn_id, showcase.raw, showcase.synced_at)
    assert row.owner == user
    assert row.balances.count() == 4 and row.subscriptions.count() == 3


def test_owner_linked_elsewhere_is_refused(admin_client, showcase, django_user_model):
    user = django_user_model.objects.create_user("ada")
    other = Customer.objects.exclude(pk=showcase.pk).filter(env="sandbox").first()
    Customer.objects.filter(pk=other.pk).update(owner=user)
    url = f"{CUSTOMERS}{showcase.pk}/change/"
    data = {**_form_data(admin_client.get(url)), "owner": str(user.pk)}

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert "is already linked to the sandbox customer" in response.content.decode()
    assert Customer.objects.get(pk=showcase.pk).owner is None


def test_no_adding_or_deleting(admin_client, showcase):
    assert admin_client.get(CUSTOMERS + "add/").status_code == 403
    assert admin_client.post(f"{CUSTOMERS}{showcase.pk}/delete/", {"post": "yes"}).status_code == 403
    response = post_action(admin_client, "delete_selected", [showcase.pk], post="yes")
    assert Customer.objects.filter(pk=showcase.pk).exists()
    assert "delete_selected" not in admin_client.get(CUSTOMERS).content.decode()
    assert ("warning", "No action selected.") in messages_of(response)
    balance = Balance.objects.first()
    assert admin_client.get(BALANCES + "add/").status_code == 403
    assert admin_client.post(f"{BALANCES}{balance.pk}/change/", {"usage": "0"}).status_code == 403
    assert admin_client.post(f"{BALANCES}{balance.pk}/delete/", {"post": "yes"}).status_code == 403
    run = SyncRun.objects.get()
    assert admin_client.post(f"{SYNC_RUNS}{run.pk}/change/", {"status": "failed"}).status_code == 403
    assert SyncRun.objects.get().status == "succeeded"


# -- balances ---------------------------------------------------------------------------

def test_balance_list_columns_filters_and_usage_sort(admin_client, showcase):
    html = admin_client.get(BALANCES, {"q": SHOWCASE_ID}).content.decode()
    assert len(re.findall(r'name="_selected_action"', html)) == 0, "no actions on balances"
    assert html.count('class="field-feature"') == 4
    assert f'href="/admin/autumn_django/customer/{showcase.pk}/change/"' in html
    assert "<script>alert" not in html
    assert "1,000" in html and ">250<" in html and ">750<" in html and "25%" in html

    def features(params) -> list[str]:
        page = admin_client.get(BALANCES, {"q": SHOWCASE_ID, **params}).content.decode()
        return re.findall(FEATURE_CELL, page)

    assert features({"exhausted": "yes"}) == ["exports"]
    assert features({"unlimited__exact": "1"}) == ["api_calls"]
    assert features({"feature": "ai_tokens"}) == ["ai_tokens"]
    usage_column = 5  # list_display index (no actions, so no checkbox column)
    ordered = features({"o": f"{usage_column}"})
    assert ordered[-3:] == ["ai_tokens", "messages", "exports"]  # 12.5%, 25%, 130%
    assert features({"o": f"-{usage_column}"})[:3] == ["exports", "messages", "ai_tokens"]


def test_a_balance_past_its_reset_is_marked_reset_due_not_exhausted(admin_client, showcase, settings):
    # The sync wrote the rows; then the reset times passed (Autumn resets lazily: only
    # customers.get applies them, so the rows still show last period's usage).
    settings.TIME_ZONE = "Asia/Kolkata"
    due = datetime(2026, 3, 1, 6, 30, tzinfo=timezone.utc)
    Balance.objects.filter(customer=showcase, feature_id="exports").update(next_reset_at=due)
    pack = Balance.objects.get(customer=showcase, feature_id="ai_tokens")
    pack.breakdown = [{**pack.breakdown[0], "reset": {"interval": "month",
                                                      "resets_at": int(due.timestamp() * 1000)}}]
    pack.save(update_fields=["breakdown"])
    local = f"{date_format(due.astimezone(ZoneInfo('Asia/Kolkata')), 'DATETIME_FORMAT')} IST"
    marker = re.compile(r'<span class="autumn-badge autumn-badge-reset" title="[^"]+">reset due</span> '
                        rf'<time datetime="{re.escape(due.isoformat())}">{re.escape(local)}</time>')

    page = admin_client.get(f"{CUSTOMERS}{showcase.pk}/change/").content.decode()
    listing = admin_client.get(BALANCES, {"q": SHOWCASE_ID}).content.decode()

    for html in (page, listing):
        rows = {feature: row for row in re.findall(r"<tr[^>]*>(?:(?!</tr>).)*</tr>", html, re.S)
                for feature in ("exports", "ai_tokens", "messages") if f">{feature}<" in row}
        for feature in ("exports", "ai_tokens"):
            assert len(marker.findall(rows[feature])) == 2, feature  # in the usage and next reset columns
            assert "<meter" not in rows[feature], f"{feature}: no bar of last period's usage"
        assert "→ 10 at its reset" in rows["exports"] and "→ 100 at its reset" in rows["ai_tokens"]
        assert "reset due" not in rows["messages"] and "<meter" in rows["messages"], "not due: as before"

    def features(params) -> list[str]:
        found = admin_client.get(BALANCES, {"q": SHOWCASE_ID, **params}).content.decode()
        return re.findall(FEATURE_CELL, found)

    assert features({"exhausted": "yes"}) == [], "exports is back to its grant, not exhausted"
    assert "exports" in features({"exhausted": "no"})


def test_feature_filter_offers_the_feature_ids(admin_client, mirror):
    html = admin_client.get(BALANCES).content.decode()
    for feature in Balance.objects.values_list("feature_id", flat=True).distinct():
        assert f"?feature={feature}" in html


# -- sync runs --------------------------------------------------------------------------

def test_sync_run_list_and_page(admin_client, mirror):
    run = SyncRun.objects.get()
    SyncRun.objects.filter(pk=run.pk).update(errors=[
        {"customer": "id 'cus_<b>'", "error": "balances.x.granted: expected a number"},
        {"warning": "The saved cursor was rejected; the pass restarted."},
        {"something": "else"},
    ])

    listing = admin_client.get(SYNC_RUNS).content.decode()
    page = admin_client.get(f"{SYNC_RUNS}{run.pk}/change/").content.decode()

    assert "Succeeded" in listing and " s<" in listing
    assert ">42<" in listing  # created
    assert "<code>id &#x27;cus_&lt;b&gt;&#x27;</code>: balances.x.granted: expected a number" in page
    assert "Warning: The saved cursor was rejected" in page
    assert "&quot;something&quot;: &quot;else&quot;" in page
    assert "lease_token" not in page and run.lease_token not in page


# -- actions ----------------------------------------------------------------------------

def test_refresh_inline_calls_customers_get_and_skips_idless(admin_client, mirror, settings):
    settings.AUTUMN_TASK_MODE = "inline"
    chosen = list(Customer.objects.exclude(autumn_id=None).exclude(autumn_id=SHOWCASE_ID)
                  .order_by("pk")[:2])
    idless = Customer.objects.filter(autumn_id=None).first()
    assert idless is not None, "the seed has id-less customers"
    mirror.modify_customer(chosen[0].autumn_id, name="Renamed in Autumn")

    response = post_action(admin_client, "refresh_from_autumn", [c.pk for c in chosen] + [idless.pk])

    assert response.status_code == 200
    assert sorted(body["customer_id"] for endpoint, body in mirror.requests
                  if endpoint == "customers.get") == sorted(c.autumn_id for c in chosen)
    assert Customer.objects.get(pk=chosen[0].pk).name == "Renamed in Autumn"
    assert messages_of(response) == [
        ("success", "Refreshed 2 customers from Autumn."),
        ("warning", "Skipped 1 customer without an Autumn id: Autumn looks customers up by id only. "
                    "The next full sync refreshes it."),
    ]


def test_refresh_skips_customers_of_the_other_env(admin_client, showcase, mirror, settings):
    settings.AUTUMN_TASK_MODE = "inline"
    Customer.objects.filter(pk=showcase.pk).update(env="live")

    response = post_action(admin_client, "refresh_from_autumn", [showcase.pk])

    assert mirror.requests == []
    assert messages_of(response) == [("warning", "Skipped 1 customer of another environment: "
                                                 "the secret key is for sandbox.")]


def test_refresh_inline_failure_is_reported(admin_client, showcase, mirror, settings):
    settings.AUTUMN_TASK_MODE = "inline"
    mirror.faults.fail_next(50, status=401)

    response = post_action(admin_client, "refresh_from_autumn", [showcase.pk])

    assert messages_of(response) == [("error", "The refresh of 1 customer failed: Autumn could not "
                                               "be asked (see the log).")]


def test_refresh_button_on_the_customer_page(admin_client, showcase, mirror, settings):
    settings.AUTUMN_TASK_MODE = "inline"
    url = f"{CUSTOMERS}{showcase.pk}/refresh/"
    assert f'action="{url}"' in admin_client.get(f"{CUSTOMERS}{showcase.pk}/change/").content.decode()
    assert admin_client.get(url).status_code == 405

    response = admin_client.post(url, follow=True)

    assert response.redirect_chain[-1][0] == f"{CUSTOMERS}{showcase.pk}/change/"
    # One customers.get (and, with entities in the mirror, the customer's entities.list).
    assert [e for e, _ in mirror.requests if e != "entities.list"] == ["customers.get"]
    assert messages_of(response) == [("success", "Refreshed 1 customer from Autumn.")]


def test_sync_now_inline_runs_a_full_sync(admin_client, mirror, settings):
    settings.AUTUMN_TASK_MODE = "inline"
    assert f'action="{SYNC_NOW}"' in admin_client.get(SYNC_RUNS).content.decode()
    assert f'action="{SYNC_NOW}"' in admin_client.get(CUSTOMERS).content.decode()
    assert admin_client.get(SYNC_NOW).status_code == 405

    response = admin_client.post(SYNC_NOW, follow=True)

    assert response.redirect_chain[-1][0] == SYNC_RUNS
    assert SyncRun.objects.count() == 2
    assert "customers.list" in {endpoint for endpoint, _ in mirror.requests}
    assert messages_of(response) == [("success", "Synced the sandbox customers: 0 created, 0 updated, "
                                                 "42 unchanged, 0 deleted, 0 skipped.")]


def test_sync_now_inline_reports_a_failure_and_a_sync_already_running(admin_client, mirror, settings):
    settings.AUTUMN_TASK_MODE = "inline"
    mirror.faults.fail_next(50, status=401)

    failed = admin_client.post(SYNC_NOW, follow=True)

    assert messages_of(failed)[0][0] == "error"
    assert messages_of(failed)[0][1].startswith("The full sync failed: ")
    mirror.faults.clear()
    now = datetime.now(timezone.utc)  # a live lease: not a dead run to take over
    SyncRun.objects.create(env="sandbox", status="running", started_at=now, heartbeat_at=now,
                           lease_token="x" * 32, page_size=1000)

    skipped = admin_client.post(SYNC_NOW, follow=True)

    assert messages_of(skipped) == [("warning", "Another sync of the sandbox customers is running, so "
                                                "this one did not start.")]


def test_celery_mode_queues_and_runs_nothing(admin_client, showcase, mirror, settings, celery_app):
    settings.AUTUMN_TASK_MODE = "celery"

    refresh = post_action(admin_client, "refresh_from_autumn", [showcase.pk])
    sync = admin_client.post(SYNC_NOW, follow=True)

    assert published_tasks(celery_app) == [("autumn_django.sync_customer", f"('{SHOWCASE_ID}', 'sandbox')"),
                                      ("autumn_django.sync_all_customers", "()")]
    assert mirror.requests == [], "nothing ran in the request"
    assert SyncRun.objects.count() == 1
    assert messages_of(refresh) == [
        ("success", "Queued the refresh of 1 customer; a Celery worker will run it.")]
    assert messages_of(sync) == [("success", "Queued a full sync; a Celery worker will run it.")]


@pytest.mark.slow
def test_celery_mode_with_the_broker_down_says_so(admin_client, mirror, settings, celery_app):
    settings.AUTUMN_TASK_MODE = "celery"
    celery_app.conf.broker_url = "redis://127.0.0.1:9/0"  # port 9: nothing listens
    three = Customer.objects.exclude(autumn_id=None).values_list("pk", flat=True)[:3]

    refresh = post_action(admin_client, "refresh_from_autumn", list(three))
    sync = admin_client.post(SYNC_NOW, follow=True)

    assert mirror.requests == []
    assert messages_of(refresh) == [("error", "Could not queue the refresh of 3 customers: the Celery "
                                              "broker did not take them (see the log). The next full "
                                              "sync will catch up.")]
    assert messages_of(sync) == [("error", "Could not queue the full sync: the Celery broker did not "
                                           "take it (see the log). Nothing ran.")]


# -- permissions ------------------------------------------------------------------------

def test_non_staff_are_sent_to_log_in(client, showcase, django_user_model):
    user = django_user_model.objects.create_user("user", password="pw")
    client.force_login(user)
    for url in (CUSTOMERS, f"{CUSTOMERS}{showcase.pk}/change/", BALANCES, SYNC_RUNS):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), url
    response = client.post(SYNC_NOW)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_staff_without_permissions_are_forbidden(client, showcase, mirror, django_user_model, settings):
    client.force_login(staff(django_user_model))
    settings.AUTUMN_TASK_MODE = "inline"
    for url in (CUSTOMERS, f"{CUSTOMERS}{showcase.pk}/change/", BALANCES, SYNC_RUNS):
        assert client.get(url).status_code == 403, url
    assert client.post(SYNC_NOW).status_code == 403
    assert client.post(f"{CUSTOMERS}{showcase.pk}/refresh/").status_code == 403
    assert mirror.requests == []


def test_view_permission_browses_but_cannot_sync_or_edit(client, showcase, mirror, django_user_model,
                                                         settings):
    client.force_login(staff(django_user_model, "autumn_django.view_customer"))
    settings.AUTUMN_TASK_MODE = "inline"

    listing = client.get(CUSTOMERS).content.decode()
    page = client.get(f"{CUSTOMERS}{showcase.pk}/change/").content.decode()

    assert SHOWCASE_ID in listing and "refresh_from_autumn" not in listing and SYNC_NOW not in listing
    assert "<meter" in page and "/refresh/" not in page, "children come with the customer"
    assert 'name="user"' not in page, "no change permission: the user link is read-only"
    assert client.post(f"{CUSTOMERS}{showcase.pk}/change/", {"user": ""}).status_code == 403
    response = post_action(client, "refresh_from_autumn", [showcase.pk])
    assert response.status_code == 200 and messages_of(response) == [], "no actions offered, none run"
    assert client.post(SYNC_NOW).status_code == 403
    assert client.post(f"{CUSTOMERS}{showcase.pk}/refresh/").status_code == 403
    assert client.get(BALANCES).status_code == 403, "balances have a view permission of their own"
    assert mirror.requests == []


def test_sync_permission_allows_the_actions(client, showcase, mirror, django_user_model, settings):
    client.force_login(staff(django_user_model, "autumn_django.view_customer",
                             "autumn_django.sync_customers"))
    settings.AUTUMN_TASK_MODE = "inline"

    response = post_action(client, "refresh_from_autumn", [showcase.pk])

    assert messages_of(response) == [("success", "Refreshed 1 customer from Autumn.")]
    assert client.post(SYNC_NOW).status_code == 302
    assert SyncRun.objects.count() == 2


def test_refresh_refuses_more_than_the_limit(admin_client, make_standin, settings):
    settings.AUTUMN_TASK_MODE = "inline"
    server = make_standin(150, seed=4)
    sync_all_customers()
    server.clear_requests()

    response = post_action(admin_client, "refresh_from_autumn", [], select_across="1",
                           **{"_selected_action": "1"})

    assert server.requests == []
    assert messages_of(response) == [("error", "Select at most 100 customers to refresh; to refresh "
                                               "them all, use Sync now.")]


# -- counting ---------------------------------------------------------------------------

def test_paginator_estimates_only_large_unfiltered_postgresql_tables(admin_client, mirror, monkeypatch):
    customers = Customer.objects.order_by("pk")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Customer._meta.db_table}")

    class Small(EstimatedCountPaginator):
        exact_below = 10

    whole, filtered = Small(customers, 10), Small(customers.filter(env="sandbox"), 10)
    assert (filtered.count, filtered.is_estimate) == (42, False)
    if connection.vendor == "postgresql":
        assert whole.count > 0 and whole.is_estimate
    else:
        assert (whole.count, whole.is_estimate) == (42, False)
    assert (EstimatedCountPaginator(customers, 10).count,) == (42,), "small tables are counted"

    monkeypatch.setattr(EstimatedCountPaginator, "exact_below", 10)
    page = admin_client.get(CUSTOMERS).content.decode()
    footer = _paginator(page)
    assert footer.split()[-2:] == (["42", "customers"] if connection.vendor == "sqlite"
                                   else [str(whole.count), "customers"])
    assert ("autumn-estimate" in page) is (connection.vendor == "postgresql")
    filtered = admin_client.get(CUSTOMERS, {"env__exact": "sandbox"}).content.decode()
    assert _paginator(filtered).split()[-2:] == ["42", "customers"]
    assert "autumn-estimate" not in filtered


def test_pagination_is_the_running_djangos_own_markup(admin_client, mirror):
    """The app wraps Django's pagination template rather than keeping a copy, which went
    stale when Django 6.1 changed it to a <nav>."""
    from django.template.loader import get_template

    django_markup = get_template("admin/pagination.html").template.source
    page = admin_client.get(CUSTOMERS, {"env__exact": "sandbox"}).content.decode()
    opening = re.search(r"<(nav|p) class=\"paginator\"[^>]*>", django_markup).group(0)
    assert opening in page


# -- helpers ----------------------------------------------------------------------------

def _paginator(html: str) -> str:
    """The text of the admin's paginator, in the markup of whichever Django runs."""
    match = re.search(r'<(nav|p) class="paginator"[^>]*>(.*?)</\1>', html, re.S)
    return re.sub(r"<[^>]+>", " ", match.group(2))


def _plan(plan_id: str) -> str:
    """A regex for a plan id as the admin shows it: alone, or with the catalogue's name."""
    return (rf'(?:<span class="autumn-id">)?{re.escape(plan_id)}'
            r'(?:</span> <span class="autumn-name">[^<]*</span>)?')


def _row(html: str, pk: int) -> str:
    match = re.search(rf'<tr>(?:(?!</tr>).)*value="{pk}"(?:(?!</tr>).)*</tr>', html, re.S)
    return match.group(0) if match else ""


def _meter(html: str, maximum: str) -> dict[str, str]:
    match = re.search(rf'<meter [^>]*max="{re.escape(maximum)}"[^>]*>', html)
    assert match, f"no usage bar with max={maximum}"
    return {k: v for k, v in re.findall(r'(\w+)="([^"]*)"', match.group(0)) if k in ("value", "low", "high")}


def _form_data(response) -> dict[str, str]:
    """What the browser would post back: the form's fields and the inlines' management forms."""
    data = {}
    for name, field in response.context["adminform"].form.fields.items():
        value = response.context["adminform"].form.initial.get(name, field.initial)
        data[name] = "" if value is None else str(value)
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        for name in management.fields:
            value = management.initial.get(name, management[name].value())
            data[management.add_prefix(name)] = "" if value is None else str(value)
    return data
