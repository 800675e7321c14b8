"""Feature checks from the mirror: every branch, the DRF permission class and the template
tag, on rows written by the real sync from the stand-in."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.template import Context, Template
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from autumn_django.api.permissions import HasFeature
from autumn_django.features import FeatureCheck, Reason, check_feature, has_feature
from autumn_django.models import Customer
from autumn_django.sync import sync_customer

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
    Customer.objects.filter(pk=row.pk).update(user=user)
    return row


@pytest.mark.parametrize(("feature_id", "reason", "remaining"), [
    ("unlimited_seats", Reason.UNLIMITED, None),
    ("messages", Reason.BALANCE_REMAINING, 12),
    ("ai_tokens", Reason.BALANCE_REMAINING, 0.5),
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
    allowed = reason in {Reason.UNLIMITED, Reason.BALANCE_REMAINING, Reason.OVERAGE_ALLOWED, Reason.FLAG}
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
