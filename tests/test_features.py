"""Feature checks from the mirror: every branch, Autumn's own rules case by case, balances
past their reset time, the DRF permission class and the template tag, on rows written by
the real sync from the stand-in."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.template import Context, Template
from django.utils import timezone
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from autumn_django import features
from autumn_django.api.permissions import HasFeature
from autumn_django.features import FeatureCheck, Reason, check_feature, has_feature
from autumn_django.models import Balance, Customer
from autumn_django.sync import sync_all_customers, sync_customer

pytestmark = pytest.mark.django_db

HOUR_MS = 3_600_000


def balance(feature_id: str, *, remaining: float, unlimited: bool = False, overage_allowed: bool = False,
            granted: float = 100) -> dict:
    return {"feature_id": feature_id, "granted": granted, "remaining": remaining,
            "usage": granted - remaining, "unlimited": unlimited, "overage_allowed": overage_allowed,
            "max_purchase": None, "next_reset_at": None, "breakdown": []}


def flag(feature_id: str, *, expires_at: int | None) -> dict:
    return {"id": f"flag_{feature_id}", "plan_id": "pro", "feature_id": feature_id, "expires_at": expires_at}


NOW_MS = int(time.time() * 1000)
BALANCES = {b["feature_id"]: b for b in [
    balance("unlimited_seats", remaining=0, unlimited=True),
    balance("messages", remaining=12),
    balance("ai_tokens", remaining=0.5, granted=10),
    balance("api_calls", remaining=0, overage_allowed=True),
    balance("exports", remaining=0),
    balance("storage_gb", remaining=-2.5),  # overage used up before it was switched off
]}
FLAGS = {f["feature_id"]: f for f in [
    flag("sso", expires_at=None),
    flag("audit_log", expires_at=NOW_MS + HOUR_MS),
    flag("custom_domain", expires_at=NOW_MS - HOUR_MS),
]}


@pytest.fixture
def user():
    return get_user_model().objects.create_user("ada", password="pw")


@pytest.fixture
def server(make_standin):
    return make_standin(3, seed=5)


@pytest.fixture
def customer(server, user) -> Customer:
    """The user's customer with the balances and flags above, mirrored through customers.get."""
    customer_id = next(c["id"] for c in server.list_customers() if c["id"])
    server.modify_customer(customer_id, balances=BALANCES, flags=FLAGS)
    row = sync_customer(customer_id)
    Customer.objects.filter(pk=row.pk).update(owner=user)
    return row


@pytest.mark.parametrize(("feature_id", "reason", "remaining"), [
    ("unlimited_seats", Reason.UNLIMITED, None),
    ("messages", Reason.BALANCE_REMAINING, 12),
    ("ai_tokens", Reason.BALANCE_EXHAUSTED, 0.5),  # half a unit is not the 1 a check requires
    ("api_calls", Reason.OVERAGE_ALLOWED, 0),
    ("exports", Reason.BALANCE_EXHAUSTED, 0),
    ("storage_gb", Reason.BALANCE_EXHAUSTED, -2.5),
    ("sso", Reason.FLAG, None),
    ("audit_log", Reason.FLAG, None),
    ("custom_domain", Reason.FLAG_EXPIRED, None),
    ("no_such_feature", Reason.NO_FEATURE, None),
])
def test_each_branch_in_one_query(customer, user, django_assert_num_queries, feature_id, reason, remaining):
    with django_assert_num_queries(1):
        result = check_feature(user, feature_id)
    assert result == FeatureCheck(feature_id, reason, remaining)
    allowed = reason in {Reason.UNLIMITED, Reason.BALANCE_REMAINING, Reason.OVERAGE_ALLOWED, Reason.FLAG,
                         Reason.NEGATIVE_REQUIRED}
    assert bool(result) is result.allowed is has_feature(user, feature_id) is allowed
    assert bool(result.message) is not allowed


def test_a_user_without_a_customer(customer, django_assert_num_queries):
    other = get_user_model().objects.create_user("bob")
    with django_assert_num_queries(1):
        assert check_feature(other, "messages").reason == Reason.NO_CUSTOMER
    with django_assert_num_queries(0):
        assert check_feature(AnonymousUser(), "messages").reason == Reason.NO_CUSTOMER
        assert check_feature(None, "messages").reason == Reason.NO_CUSTOMER


def test_a_deleted_customer_has_no_features(server, customer, user):
    assert has_feature(user, "messages")
    server.delete_customer(customer.autumn_id)
    assert sync_customer(customer.autumn_id) is None  # marked deleted, as Autumn answers 404

    result = check_feature(user, "messages")

    assert result.reason == Reason.CUSTOMER_DELETED and not result


def test_only_the_keys_environment_counts(settings, customer, user):
    assert has_feature(user, "sso")
    settings.AUTUMN_SECRET_KEY = "am_sk_live_other0000000000000000"  # the row is sandbox
    assert check_feature(user, "sso").reason == Reason.NO_CUSTOMER


class ExportView(APIView):
    permission_classes = [HasFeature("messages")]

    def get(self, request):
        return Response({"ok": True})


class SSOView(ExportView):
    permission_classes = [HasFeature("custom_domain") | IsAdminUser]


def call(view, user=None):
    request = APIRequestFactory().get("/")
    if user is not None:
        force_authenticate(request, user=user)
    return view.as_view()(request)


def test_permission_class(customer, user):
    assert call(ExportView, user).status_code == 200

    other = get_user_model().objects.create_user("bob")
    denied = call(ExportView, other)
    assert denied.status_code == 403
    assert denied.data["detail"] == "Your account has no billing plan yet."

    expired = call(SSOView, user)
    assert expired.status_code == 403
    assert call(SSOView, get_user_model().objects.create_user("staff", is_staff=True)).status_code == 200

    # Anonymous: DRF's "not authenticated" (403 under session authentication), not a feature message.
    anonymous = call(ExportView)
    assert anonymous.status_code in (401, 403)
    assert anonymous.data["detail"].code == "not_authenticated"


def test_permission_denial_says_why(customer, user):
    request = APIRequestFactory().get("/")
    force_authenticate(request, user=user)

    class Exhausted(ExportView):
        permission_classes = [HasFeature("exports")]

    response = Exhausted.as_view()(request)
    assert response.status_code == 403
    assert response.data["detail"] == "You have no exports left."
    assert HasFeature("exports").__name__ == "HasFeature('exports')"


@pytest.mark.parametrize(("feature_id", "expected"), [
    ("sso", "yes"), ("custom_domain", "no"), ("nope", "no"),
])
def test_template_tag_and_filter(rf, customer, user, feature_id, expected):
    request = rf.get("/")
    request.user = user
    tag = Template(
        '{% load autumn %}{% has_feature feature as ok %}{% if ok %}yes{% else %}no{% endif %}'
    )
    assert tag.render(Context({"request": request, "feature": feature_id})) == expected
    assert tag.render(Context({"user": user, "feature": feature_id})) == expected  # no request

    text = Template('{% load autumn %}{% if user|has_feature:feature %}yes{% else %}no{% endif %}')
    assert text.render(Context({"user": user, "feature": feature_id})) == expected


def test_template_tag_gives_the_reason(customer, user):
    template = Template('{% load autumn %}{% has_feature "exports" user=who as r %}{{ r.message }}')
    assert template.render(Context({"who": user})) == "You have no exports left."
    assert template.render(Context({"who": AnonymousUser()})) == "Your account has no billing plan yet."


# -- Autumn's rules, case by case -------------------------------------------------------------
# Each case is one customer built in the stand-in, mirrored by the full sync, then checked.
# The rules: autumn-api.md "Local feature checks: Autumn's rules" (numbered as there), from
# Autumn's server (shared/api/customers/cusFeatures/utils/convert/apiBalanceToAllowed.ts and
# what it calls); "reset" is autumn-api.md "Balance resets (lazy)".
CREDITS = "credits"


def entry(plan_id: str = "pro", *, included: float = 100, prepaid: float = 0, usage: float = 0,
          resets_in_hours: float | None = None, price: dict | None = None) -> dict:
    reset = None if resets_in_hours is None else {
        "interval": "month", "resets_at": NOW_MS + int(resets_in_hours * HOUR_MS)}
    return {"id": f"ent_{plan_id}_{included}_{prepaid}", "plan_id": plan_id, "included_grant": included,
            "prepaid_grant": prepaid, "remaining": included + prepaid - usage, "usage": usage,
            "unlimited": False, "reset": reset, "price": price, "expires_at": None}


def metered(*entries: dict, overage_allowed: bool = False, unlimited: bool = False) -> dict:
    granted = sum(e["included_grant"] + e["prepaid_grant"] for e in entries)
    usage = sum(e["usage"] for e in entries)
    resets = [e["reset"]["resets_at"] for e in entries if e["reset"]]
    return {CREDITS: {"feature_id": CREDITS, "granted": granted, "remaining": granted - usage,
                      "usage": usage, "unlimited": unlimited, "overage_allowed": overage_allowed,
                      "max_purchase": None, "next_reset_at": min(resets) if resets else None,
                      "breakdown": list(entries)}}


def usage_based(max_purchase: float | None) -> dict:
    return {"amount": 0.01, "billing_units": 1, "billing_method": "usage_based", "max_purchase": max_purchase}


def usage_limit(limit: float, usage: float, *, enabled: bool = True, feature_id: str = CREDITS,
                properties: dict | None = None) -> dict:
    found = {"feature_id": feature_id, "limit": limit, "usage": usage, "enabled": enabled,
             "interval": "month", "source": "customer"}
    if properties:
        found["filter"] = {"properties": properties}
    return found


def sub(plan_id: str, *, add_on: bool = False) -> dict:
    return {"id": f"sub_{plan_id}", "plan_id": plan_id, "status": "active", "auto_enable": False,
            "add_on": add_on, "past_due": False, "quantity": 1, "started_at": NOW_MS - 40 * 24 * HOUR_MS,
            "current_period_start": None, "current_period_end": None, "canceled_at": None,
            "expires_at": None, "trial_ends_at": None, "scope": "customer"}


@dataclass(frozen=True)
class Case:
    name: str
    rule: str
    reason: Reason
    remaining: float | None
    balances: dict = field(default_factory=dict)
    flags: dict = field(default_factory=dict)
    controls: dict = field(default_factory=dict)
    subscriptions: tuple = ()
    feature_id: str = CREDITS
    required: float = 1
    properties: dict | None = None
    hours_later: float = 0  # the check runs this long after the sync

    def __str__(self) -> str:
        return self.name


OVER_30_CAP_50 = metered(entry(usage=130, price=usage_based(50)), overage_allowed=True)
TWO_CAPS = metered(entry(usage=100, price=usage_based(10)),
                   entry("extra_seats", included=50, usage=50, price=usage_based(20)), overage_allowed=True)
OVER_30_CAP_1000 = metered(entry(usage=130, price=usage_based(1000)), overage_allowed=True)
SPEND_40 = {"spend_limits": [{"feature_id": CREDITS, "enabled": True, "overage_limit": 40,
                               "source": "customer"}]}
SPEND_150_PERCENT = {"spend_limits": [{"feature_id": CREDITS, "enabled": True, "overage_limit": 150,
                                       "limit_type": "usage_percentage", "source": "customer"}]}
MAIN_AND_ADD_ON = metered(entry(usage=130, price=usage_based(None)),
                          entry("extra_seats", included=50, usage=50), overage_allowed=True)
PRO_AND_ADD_ON = (sub("pro"), sub("extra_seats", add_on=True))
ROOM_5 = {"usage_limits": [usage_limit(100, 95)]}
FILTERED_FULL = {"usage_limits": [usage_limit(100, 100, properties={"model": "gpt-4o"})]}
PLENTY = metered(entry(usage=50))
RESETS_SOON = metered(entry(usage=100, resets_in_hours=1))
MONTHLY_AND_PACK = metered(entry(usage=100, resets_in_hours=1),
                           entry("credits_100", included=0, prepaid=50, usage=30))

CASES = [
    Case("remaining covers the default 1", "6", Reason.BALANCE_REMAINING, 12, metered(entry(usage=88))),
    Case("half a unit is not one", "6: remaining >= required (1)", Reason.BALANCE_EXHAUSTED, 0.5,
         metered(entry(included=10, usage=9.5))),
    Case("half a unit for half a unit", "6", Reason.BALANCE_REMAINING, 0.5,
         metered(entry(included=10, usage=9.5)), required=0.5),
    Case("exactly enough", "6: >=", Reason.BALANCE_REMAINING, 5, metered(entry(usage=95)), required=5),
    Case("a little short", "6", Reason.BALANCE_EXHAUSTED, 5, metered(entry(usage=95)), required=5.5),
    Case("nothing required of nothing left", "6: 0 >= 0", Reason.BALANCE_REMAINING, 0,
         metered(entry(usage=100)), required=0),
    Case("a negative amount", "2", Reason.NEGATIVE_REQUIRED, 0, metered(entry(usage=100)), required=-5),
    Case("unlimited", "2", Reason.UNLIMITED, None, metered(entry(usage=5000), unlimited=True),
         required=10**9),
    Case("unlimited beats a full usage limit", "2 before 3", Reason.UNLIMITED, None,
         metered(entry(usage=5000), unlimited=True), controls={"usage_limits": [usage_limit(10, 10)]}),
    Case("overage without a cap", "5: no cap", Reason.OVERAGE_ALLOWED, 0,
         metered(entry(usage=100), overage_allowed=True), required=1000),
    Case("overage within max_purchase", "5: 50 - 30 over >= 20", Reason.OVERAGE_ALLOWED, -30,
         OVER_30_CAP_50, required=20),
    Case("overage past max_purchase", "5: max_purchase", Reason.MAX_PURCHASE, -30, OVER_30_CAP_50,
         required=21),
    Case("max_purchase summed over usage-based entries", "5", Reason.OVERAGE_ALLOWED, 0, TWO_CAPS,
         required=30),
    Case("past the summed max_purchase", "5: max_purchase", Reason.MAX_PURCHASE, 0, TWO_CAPS, required=31),
    Case("one usage-based entry without max_purchase: no cap", "5: no cap", Reason.OVERAGE_ALLOWED, 0,
         metered(entry(usage=100, price=usage_based(10)), entry("x", included=0, price=usage_based(None)),
                 overage_allowed=True), required=1000),
    Case("remaining and overage together", "5: 10 + 5 >= 15", Reason.OVERAGE_ALLOWED, 10,
         metered(entry(usage=90, price=usage_based(5)), overage_allowed=True), required=15),
    Case("remaining and overage together, short", "5: max_purchase", Reason.MAX_PURCHASE, 10,
         metered(entry(usage=90, price=usage_based(5)), overage_allowed=True), required=16),
    Case("remaining alone is enough", "5", Reason.BALANCE_REMAINING, 10,
         metered(entry(usage=90, price=usage_based(5)), overage_allowed=True), required=10),
    Case("a spend limit caps before max_purchase", "5: 40 - 30 >= 10", Reason.OVERAGE_ALLOWED, -30,
         OVER_30_CAP_1000, controls=SPEND_40, required=10),
    Case("past the spend limit", "5: spend_limit", Reason.SPEND_LIMIT, -30, OVER_30_CAP_1000,
         controls=SPEND_40, required=11),
    Case("a disabled spend limit caps nothing", "5", Reason.OVERAGE_ALLOWED, -30, OVER_30_CAP_1000,
         controls={"spend_limits": [{**SPEND_40["spend_limits"][0], "enabled": False}]}, required=11),
    Case("a spend limit in percent of the main plan", "5: 150% of 100 - 30", Reason.OVERAGE_ALLOWED, -30,
         MAIN_AND_ADD_ON, controls=SPEND_150_PERCENT, subscriptions=PRO_AND_ADD_ON, required=120),
    Case("past a spend limit in percent", "5: spend_limit", Reason.SPEND_LIMIT, -30, MAIN_AND_ADD_ON,
         controls=SPEND_150_PERCENT, subscriptions=PRO_AND_ADD_ON, required=121),
    Case("overage_allowed control off overrides the balance", "4", Reason.BALANCE_EXHAUSTED, 0,
         metered(entry(usage=100), overage_allowed=True),
         controls={"overage_allowed": [{"feature_id": CREDITS, "enabled": False, "source": "customer"}]}),
    Case("overage_allowed control off, remaining enough", "4", Reason.BALANCE_REMAINING, 5,
         metered(entry(usage=95), overage_allowed=True), required=5,
         controls={"overage_allowed": [{"feature_id": CREDITS, "enabled": False, "source": "customer"}]}),
    Case("overage_allowed control on", "5: the control enabled", Reason.OVERAGE_ALLOWED, 0,
         metered(entry(usage=100)),
         controls={"overage_allowed": [{"feature_id": CREDITS, "enabled": True, "source": "plan"}]}),
    Case("another feature's overage control", "5", Reason.OVERAGE_ALLOWED, 0,
         metered(entry(usage=100), overage_allowed=True),
         controls={"overage_allowed": [{"feature_id": "messages", "enabled": False, "source": "customer"}]}),
    Case("a usage limit with room", "3", Reason.BALANCE_REMAINING, 50, PLENTY, controls=ROOM_5, required=5),
    Case("a usage limit without room", "3: usage_limit", Reason.USAGE_LIMIT, 50, PLENTY, controls=ROOM_5,
         required=6),
    Case("a usage limit gates overage too", "3: whatever the balance", Reason.USAGE_LIMIT, 0,
         metered(entry(usage=100), overage_allowed=True), controls=ROOM_5, required=6),
    Case("a disabled usage limit", "3: enabled only", Reason.BALANCE_REMAINING, 50, PLENTY,
         controls={"usage_limits": [usage_limit(100, 100, enabled=False)]}),
    Case("another feature's usage limit", "3", Reason.BALANCE_REMAINING, 50, PLENTY,
         controls={"usage_limits": [usage_limit(100, 100, feature_id="messages")]}),
    Case("a filtered usage limit, no properties", "3: a filter never matches no properties",
         Reason.BALANCE_REMAINING, 50, PLENTY, controls=FILTERED_FULL),
    Case("a filtered usage limit, matching properties", "3: usage_limit", Reason.USAGE_LIMIT, 50, PLENTY,
         controls=FILTERED_FULL, properties={"model": "gpt-4o"}),
    Case("a filtered usage limit, other properties", "3", Reason.BALANCE_REMAINING, 50, PLENTY,
         controls=FILTERED_FULL, properties={"model": "llama-3"}),
    Case("the tighter of two usage limits", "3: the least headroom", Reason.USAGE_LIMIT, 50, PLENTY,
         controls={"usage_limits": [usage_limit(100, 0), usage_limit(10, 8, properties=None)]}, required=3),
    Case("a flag", "1: a flag present", Reason.FLAG, None, flags={"sso": flag("sso", expires_at=None)},
         feature_id="sso"),
    Case("a flag that expires later", "1", Reason.FLAG, None,
         flags={"sso": flag("sso", expires_at=NOW_MS + 3 * HOUR_MS)}, feature_id="sso", hours_later=2),
    Case("a flag that expired", "flag expiry", Reason.FLAG_EXPIRED, None,
         flags={"sso": flag("sso", expires_at=NOW_MS + HOUR_MS)}, feature_id="sso", hours_later=2),
    Case("neither balance nor flag", "1: no balance", Reason.NO_FEATURE, None, PLENTY, feature_id="sso"),
    Case("a reset passed since the sync counts as applied", "reset", Reason.BALANCE_REMAINING, 100,
         RESETS_SOON, hours_later=2),
    Case("reset to its grant, no more", "reset, 6", Reason.BALANCE_EXHAUSTED, 100, RESETS_SOON, hours_later=2,
         required=101),
    Case("a reset not due yet", "6", Reason.BALANCE_EXHAUSTED, 0, RESETS_SOON),
    Case("only the part that resets", "reset: the pack keeps its use", Reason.BALANCE_REMAINING, 120,
         MONTHLY_AND_PACK, hours_later=2, required=120),
    Case("only the part that resets, short", "reset, 6", Reason.BALANCE_EXHAUSTED, 120, MONTHLY_AND_PACK,
         hours_later=2, required=121),
    Case("a reset forgets the overage", "reset, 5: 100 + 50 >= 150", Reason.OVERAGE_ALLOWED, 100,
         metered(entry(usage=130, resets_in_hours=1, price=usage_based(50)), overage_allowed=True),
         hours_later=2, required=150),
]


@pytest.fixture
def clock(monkeypatch):
    """Moves the checks' clock ``hours`` ahead (the sync and Autumn keep the real one)."""
    def later(hours: float) -> None:
        moved = timezone.now() + timedelta(hours=hours)
        monkeypatch.setattr(features, "timezone", SimpleNamespace(now=lambda: moved))

    return later


def mirror_one(make_standin, settings, user, **fields: Any) -> tuple[Customer, Any]:
    """One customer with ``fields``, added to a fresh stand-in, mirrored by the full sync and
    linked to ``user``; its row and the stand-in."""
    settings.AUTUMN_SYNC_PREFETCH_PROCESS = False  # the same preparer, in this process
    server = make_standin(0)
    server.add_customer({"id": "case_customer", "email": "case@example.com", **fields})
    run = sync_all_customers()
    assert run.created == 1
    row = Customer.objects.get(autumn_id="case_customer")
    Customer.objects.filter(pk=row.pk).update(owner=user)
    return row, server


@pytest.mark.parametrize("case", CASES, ids=str)
def test_checks_answer_as_autumns_rules(case, make_standin, settings, user, clock, django_assert_num_queries):
    mirror_one(make_standin, settings, user, balances=case.balances, flags=case.flags,
               billing_controls=case.controls, subscriptions=list(case.subscriptions))
    if case.hours_later:
        clock(case.hours_later)

    with django_assert_num_queries(1):
        result = check_feature(user, case.feature_id, case.required, properties=case.properties)

    assert (result.reason, result.remaining) == (case.reason, case.remaining), f"rule {case.rule}"
    assert result.reset_due is (case.name.startswith(("a reset passed", "reset to", "only the part",
                                                      "a reset forgets")))
    assert has_feature(user, case.feature_id, case.required, properties=case.properties) is result.allowed


# -- a balance past its reset time -------------------------------------------------------------


def test_a_balance_past_its_reset_is_allowed_and_refreshed_once(make_standin, settings, user, clock,
                                                                 monkeypatch):
    cache.clear()
    row, _ = mirror_one(make_standin, settings, user, balances=RESETS_SOON)
    queued = []
    monkeypatch.setattr("autumn_django.dispatch.dispatch",
                        lambda task, *args, **kw: queued.append((task, args)))
    clock(2)

    first, second = check_feature(user, CREDITS), check_feature(user, CREDITS)

    assert first == second == FeatureCheck(CREDITS, Reason.BALANCE_REMAINING, 100, reset_due=True)
    assert has_feature(user, CREDITS, 100)
    assert [(task.name, args) for task, args in queued] == [
        ("autumn_django.sync_customer", (row.autumn_id, "sandbox"))]


def test_a_refresh_that_fails_never_fails_the_check(make_standin, settings, user, clock, monkeypatch):
    cache.clear()
    mirror_one(make_standin, settings, user, balances=RESETS_SOON)

    def broken(*args, **kwargs):
        raise RuntimeError("broker on fire")

    monkeypatch.setattr("autumn_django.dispatch.dispatch", broken)
    clock(2)

    assert check_feature(user, CREDITS).reason == Reason.BALANCE_REMAINING


def test_inline_the_refresh_reaches_autumn_and_the_mirror(make_standin, settings, user, clock):
    cache.clear()
    row, standin = mirror_one(make_standin, settings, user, balances=RESETS_SOON)
    settings.AUTUMN_TASK_MODE = "inline"
    standin.make_reset_due(row.autumn_id)  # by now Autumn would reset it on a get
    standin.clear_requests()
    clock(2)

    result = check_feature(user, CREDITS)
    check_feature(user, CREDITS)

    assert result.allowed and result.reset_due
    # One refresh: the customer, and its entities (whose balances reset too).
    assert [endpoint for endpoint, _ in standin.requests] == ["customers.get", "entities.list"]
    assert standin.requests[0] == ("customers.get", {"customer_id": row.autumn_id})
    assert standin.requests[1][1]["customer_id"] == row.autumn_id
    refreshed = Balance.objects.get(customer=row, feature_id=CREDITS)
    assert (refreshed.usage, refreshed.remaining) == (0, 100)
    assert check_feature(user, CREDITS) == FeatureCheck(CREDITS, Reason.BALANCE_REMAINING, 100)


def test_the_permission_and_the_tag_take_the_required_amount(customer, user):
    class FiveMessages(ExportView):
        permission_classes = [HasFeature("messages", required=5)]

    class ThirteenMessages(ExportView):
        permission_classes = [HasFeature("messages", 13)]

    assert call(FiveMessages, user).status_code == 200
    denied = call(ThirteenMessages, user)
    assert denied.status_code == 403 and denied.data["detail"] == "You have no messages left."
    assert HasFeature("messages", 13).__name__ == "HasFeature('messages', 13)"
    template = Template('{% load autumn %}{% has_feature "messages" required=n as ok %}{{ ok.allowed }}')
    assert template.render(Context({"user": user, "n": 12})) == "True"
    assert template.render(Context({"user": user, "n": 12.5})) == "False"
