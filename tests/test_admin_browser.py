"""The admin in a real browser: a staff user logs in, finds a customer, refreshes it from
Autumn and reads its balances. Headless Chromium against pytest-django's live server and
the Autumn stand-in, in inline task mode (no worker)."""

from __future__ import annotations

import os
import shutil
import time
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import Permission

from autumn_django.sync import sync_all_customers

from .browser import REPO_ROOT, chromium, require_chromium, save_screenshot

pytestmark = pytest.mark.django_db(transaction=True)

CUSTOMER_ID = "user_4821"
DAY_MS = 86_400_000
# AUTUMN_DOCS_SCREENSHOT=1 also writes the README's screenshot, docs/admin-customer.png.
DOCS_SCREENSHOT = REPO_ROOT / "docs" / "admin-customer.png"


@pytest.fixture
def admin_server(live_server, settings):
    """pytest-django's live server, which serves static files through the staticfiles app,
    by their names in the source. Under ManifestStaticFilesStorage (scripts/test.sh's
    django52 leg) pages name hashed files that only collectstatic's STATIC_ROOT holds:
    then a live server of Django's own handler, which serves STATIC_ROOT as a production
    web server would, so the page gets exactly what collectstatic gathered from the wheel."""
    require_chromium()
    if "Manifest" not in settings.STORAGES["staticfiles"]["BACKEND"]:
        yield live_server
        return
    from django.test.testcases import LiveServerThread, _StaticFilesHandler

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "127.0.0.1"]
    thread = LiveServerThread("127.0.0.1", static_handler=_StaticFilesHandler, port=0)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{thread.port}")
    finally:
        thread.terminate()


def realistic_customer(base: dict) -> dict:
    """A paying customer as a support person would look one up: a plan and add-ons, a
    scheduled downgrade, a credit pack, fractional and unlimited balances, one over its grant."""
    now = int(time.time() * 1000)
    period_start, period_end = now - 12 * DAY_MS, now + 18 * DAY_MS

    def subscription(plan_id: str, **fields) -> dict:
        return {"id": f"sub_{plan_id}_4821", "plan_id": plan_id, "status": "active",
                "auto_enable": False, "add_on": False, "past_due": False, "quantity": 1,
                "started_at": now - 200 * DAY_MS, "current_period_start": period_start,
                "current_period_end": period_end, "canceled_at": None, "expires_at": None,
                "trial_ends_at": None, **fields}

    def balance(feature: str, granted: float, usage: float, *, reset: int | None = period_end,
                unlimited: bool = False, overage: bool = False) -> dict:
        return {"feature_id": feature, "granted": 0 if unlimited else granted, "usage": usage,
                "remaining": 0 if unlimited else granted - usage, "unlimited": unlimited,
                "overage_allowed": overage, "max_purchase": None, "next_reset_at": reset,
                "breakdown": [{"id": f"cus_ent_{feature}", "plan_id": "pro",
                               "included_grant": granted, "usage": usage}]}

    customer = {**base, "id": CUSTOMER_ID, "name": "Zoë Müller", "email": "zoe@acme-gmbh.example",
                "stripe_id": "cus_Q8x2LmZk41", "send_email_receipts": True,
                "metadata": {"company": "Acme GmbH", "source": "sales", "seats_hint": 25},
                "subscriptions": [
                    subscription("pro"),
                    subscription("analytics_addon", add_on=True, quantity=2),
                    subscription("team", status="scheduled", started_at=period_end,
                                 current_period_start=None, current_period_end=None),
                ],
                "purchases": [{"plan_id": "credits_1000", "quantity": 2,
                               "started_at": now - 40 * DAY_MS, "expires_at": None}],
                "balances": {
                    "messages": balance("messages", 10_000, 4_210),
                    "ai_tokens": balance("ai_tokens", 10_000, 9_631.5),
                    "api_calls": balance("api_calls", 0, 48_213, unlimited=True, reset=now + 9 * 3_600_000),
                    "seats": balance("seats", 10, 12, reset=None, overage=True),
                    "storage_gb": balance("storage_gb", 50, 3.5, reset=None),
                },
                "flags": {f: {"id": f"flag_{f}", "plan_id": "pro", "feature_id": f, "expires_at": None}
                          for f in ("analytics", "custom_domain")}}
    customer.pop("created_at", None)
    return customer


def test_staff_user_finds_refreshes_and_reads_a_customer(admin_server, make_standin, django_user_model,
                                                         settings):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    server = make_standin(30, seed=8)
    server.add_customer(realistic_customer(server.list_customers()[0]))
    sync_all_customers()
    user = django_user_model.objects.create_user("support", password="support-pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="autumn_django",
        codename__in=["view_customer", "view_balance", "view_syncrun", "sync_customers"]))
    settings.AUTUMN_TASK_MODE = "inline"  # after the user: signups must not call the stand-in
    # Usage moved on in Autumn since the sync: the refresh must bring it in.
    customer = server.get_customer(CUSTOMER_ID)
    customer["balances"]["messages"].update(usage=7_412, remaining=2_588)
    server.modify_customer(CUSTOMER_ID, balances=customer["balances"])
    server.clear_requests()

    with chromium() as driver:
        wait = WebDriverWait(driver, 15)
        driver.get(f"{admin_server.url}/admin/login/?next=/admin/autumn_django/customer/")
        driver.find_element(By.ID, "id_username").send_keys("support")
        driver.find_element(By.ID, "id_password").send_keys("support-pw")
        driver.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()
        wait.until(ec.presence_of_element_located((By.ID, "result_list")))
        assert _stylesheet_applied(driver), "the admin's CSS must load (static files)"

        # Search by email, pick the one result, refresh it from Autumn.
        search = driver.find_element(By.ID, "searchbar")
        search.send_keys("zoe@acme-gmbh")
        search.submit()
        wait.until(ec.url_contains("q="))
        rows = driver.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
        assert len(rows) == 1 and CUSTOMER_ID in rows[0].text and "pro" in rows[0].text
        rows[0].find_element(By.CSS_SELECTOR, "input.action-select").click()
        Select(driver.find_element(By.NAME, "action")).select_by_value("refresh_from_autumn")
        driver.find_element(By.CSS_SELECTOR, "button[name=index]").click()
        message = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".messagelist .success")))
        assert message.text == "Refreshed 1 customer from Autumn."
        assert ("customers.get", {"customer_id": CUSTOMER_ID}) in server.requests

        # The customer page: balances with their usage bars, as refreshed.
        driver.find_element(By.LINK_TEXT, CUSTOMER_ID).click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".field-usage_bar meter")))
        balances = {
            row.find_element(By.CSS_SELECTOR, ".field-feature").text.split()[0]: row
            for row in driver.find_elements(By.CSS_SELECTOR, "#balances-group tbody tr.has_original")
        }
        assert sorted(balances) == ["ai_tokens", "api_calls", "messages", "seats", "storage_gb"]
        messages_row = balances["messages"]
        assert messages_row.find_element(By.CSS_SELECTOR, ".field-used_amount").text == "7,412"
        assert messages_row.find_element(By.CSS_SELECTOR, ".field-remaining_amount").text == "2,588"
        meter = messages_row.find_element(By.TAG_NAME, "meter")
        assert (meter.get_attribute("value"), meter.get_attribute("max")) == ("7412", "10000")
        assert meter.size["width"] > 50 and meter.size["height"] > 5, "the bar is drawn"
        assert "96.31%" in balances["ai_tokens"].text
        assert "Unlimited" in balances["api_calls"].text
        assert "120%" in balances["seats"].text
        assert "Open in Autumn's dashboard" in driver.page_source

        # The button on the page refreshes too; then the screenshot for people to look at.
        driver.find_element(By.XPATH, "//button[normalize-space()='Refresh from Autumn']").click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".messagelist .success")))
        assert [e for e, _ in server.requests].count("customers.get") == 2
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        driver.find_element(By.ID, "toggle-nav-sidebar").click()  # more room for the page
        path = save_screenshot(driver, "admin-customer.png")
        if os.environ.get("AUTUMN_DOCS_SCREENSHOT"):
            DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
            shutil.copyfile(path, DOCS_SCREENSHOT)


def _stylesheet_applied(driver) -> bool:
    # base.css sets the header's background; without it the header is transparent.
    header = driver.find_element("id", "header")
    return header.value_of_css_property("background-color") not in ("rgba(0, 0, 0, 0)", "transparent")


def test_staff_user_filters_entities_by_plan_and_follows_one_to_its_customer(admin_server, django_user_model):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from autumn_django.models import Subscription

    from .entity_data import make_catalogue, make_customer, make_entity, make_license

    make_catalogue()
    acme = make_customer("acme", name="Acme GmbH")
    Subscription.objects.create(customer=acme, plan_id="team", status="active")
    make_license(acme, "seat_pro", granted=10, usage=2, paid=5)
    design = make_entity(acme, "ws_design", name="Design team", plans=("seat_pro",), inherited=("team",),
                         balances={"ai_tokens": (100, 40)}, flags=("sso",), seconds=1)
    make_entity(acme, "ws_ops", name="Ops", plans=("seat_basic",), inherited=("team",), seconds=2)
    make_entity(make_customer("globex"), "gx_1", name="Globex", plans=("seat_basic",), seconds=3)
    user = django_user_model.objects.create_user("support", password="support-pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="autumn_django", codename__in=["view_customer", "view_entity"]))

    with chromium() as driver:
        wait = WebDriverWait(driver, 15)
        driver.get(f"{admin_server.url}/admin/login/?next=/admin/autumn_django/entity/")
        driver.find_element(By.ID, "id_username").send_keys("support")
        driver.find_element(By.ID, "id_password").send_keys("support-pw")
        driver.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()
        wait.until(ec.presence_of_element_located((By.ID, "result_list")))

        def rows() -> list[str]:
            return [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")]

        assert len(rows()) == 3
        # Filter by plan: the choice carries the catalogue's name.
        choice = driver.find_element(By.CSS_SELECTOR, '#changelist-filter a[href="?plan=seat_pro"]')
        assert choice.text == "Pro seat (seat_pro)"
        choice.click()
        wait.until(ec.url_contains("plan=seat_pro"))
        assert len(rows()) == 1 and "ws_design" in rows()[0] and "Acme GmbH" in rows()[0]
        assert "Pro seat" in rows()[0] and "Team seats" in rows()[0]

        # The entity's page: its own plan, the customer's it inherits, its balance's bar.
        driver.find_element(By.LINK_TEXT, "ws_design").click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#balances-group meter")))
        subscriptions = [r.text for r in driver.find_elements(
            By.CSS_SELECTOR, "#subscriptions-group tbody tr.has_original")]
        assert len(subscriptions) == 2
        assert subscriptions[0].startswith("seat_pro") and "entity" in subscriptions[0]
        assert subscriptions[1].startswith("team") and "customer" in subscriptions[1]
        meter = driver.find_element(By.CSS_SELECTOR, "#balances-group meter")
        assert (meter.get_attribute("value"), meter.get_attribute("max")) == ("40", "100")
        assert meter.size["width"] > 50, "the bar is drawn"
        assert "Single sign-on" in driver.find_element(By.ID, "flags-group").text

        # Its customer, through the link on the page: the entities table and the seat pool.
        driver.find_element(By.PARTIAL_LINK_TEXT, "acme (Acme GmbH)").click()
        wait.until(ec.presence_of_element_located((By.ID, "entities-group")))
        assert driver.current_url.endswith(f"/admin/autumn_django/customer/{acme.pk}/change/")
        table = driver.find_element(By.ID, "entities-group")
        assert "entities (2)" in table.text.lower()  # the admin draws headings in capitals
        entity_rows = [r.text for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
        assert len(entity_rows) == 2 and "ws_ops" in entity_rows[0] and "ws_design" in entity_rows[1]
        link = table.find_element(By.PARTIAL_LINK_TEXT, "ws_design")
        assert link.get_attribute("href").endswith(f"/admin/autumn_django/entity/{design.pk}/change/")
        pool = driver.find_element(By.ID, "licenses-group")
        assert "2 / 10" in pool.text and "2 of 10 seats used" in pool.get_attribute("innerHTML")
        assert pool.find_element(By.TAG_NAME, "meter").size["width"] > 50
        save_screenshot(driver, "admin-customer-entities.png")
