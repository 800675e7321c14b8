"""Feature checks of entities and of credit-system members, as Autumn's ``check`` answers
them, from rows written with the ORM (what the sync writes for Autumn's answers:
autumn-api.md "Entities and seats", "Local feature checks").

Each case is one Autumn-shaped situation: the customer's and the entity's balances and
flags as Autumn's customer and entity answers show them (the entity's answer already
pools in what it inherits from its customer), their billing controls, and the org's
catalogue. The expected answer's source in Autumn's open-source server (useautumn/autumn,
read at 187c0a7) is given beside each case.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as tz
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.template import Context, Template
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from autumn_django.api.permissions import HasFeature
from autumn_django.features import FeatureCheck, Reason, check_feature, has_feature
from autumn_django.models import Balance, Customer, Entity, Feature, Flag

pytestmark = pytest.mark.django_db

HOUR_MS = 3_600_000
NOW_MS = int(time.time() * 1000)
CUSTOMER, ENTITY, ENTITY_ID = "customer", "entity", "entity_id"  # how the subject is given


def balance(feature_id: str, remaining: float, *, granted: float = 100, overage_allowed: bool = False,
            unlimited: bool = False, resets_in_hours: float | None = None) -> dict:
    """A balance as Autumn's answer shows it (one breakdown entry, from plan "pro")."""
    reset = None if resets_in_hours is None else {"interval": "month",
                                                  "resets_at": NOW_MS + int(resets_in_hours * HOUR_MS)}
    entry = {"id": f"ent_{feature_id}", "plan_id": "pro", "included_grant": granted, "prepaid_grant": 0,
             "remaining": remaining, "usage": granted - remaining, "unlimited": unlimited, "reset": reset,
             "price": None, "expires_at": None}
    return {"feature_id": feature_id, "granted": granted, "remaining": remaining,
            "usage": granted - remaining, "unlimited": unlimited, "overage_allowed": overage_allowed,
            "max_purchase": None, "next_reset_at": reset["resets_at"] if reset else None,
            "breakdown": [entry]}


def flag(feature_id: str, *, expires_in_hours: float | None = None) -> dict:
    expires = None if expires_in_hours is None else NOW_MS + int(expires_in_hours * HOUR_MS)
    return {"id": f"flag_{feature_id}", "plan_id": "pro", "feature_id": feature_id, "expires_at": expires}


def usage_limit(feature_id: str, limit: float, usage: float, **extra: Any) -> dict:
    return {"feature_id": feature_id, "limit": limit, "usage": usage, "enabled": True, "interval": "month",
            **extra}


def overage_control(feature_id: str, enabled: bool) -> dict:
    return {"feature_id": feature_id, "enabled": enabled}


def credit_system(feature_id: str, schema: dict[str, float], *, archived: bool = False,
                  deleted: bool = False) -> dict:
    """A credit system as features.list gives it: ``schema`` is {member: credit_cost}."""
    return {"id": feature_id, "type": "credit_system", "archived": archived, "deleted": deleted,
            "credit_schema": [{"metered_feature_id": m, "credit_cost": c} for m, c in schema.items()]}


def metered(feature_id: str) -> dict:
    return {"id": feature_id, "type": "metered", "archived": False, "deleted": False, "credit_schema": []}


def boolean(feature_id: str) -> dict:
    return {"id": feature_id, "type": "boolean", "archived": False, "deleted": False, "credit_schema": []}


@dataclass(frozen=True)
class Side:
    """A customer's or an entity's answer: balances and flags by feature, billing controls."""

    balances: tuple[dict, ...] = ()
    flags: tuple[dict, ...] = ()
    controls: dict = field(default_factory=dict)
    deleted: bool = False


@dataclass(frozen=True)
class Case:
    name: str
    source: str  # where Autumn's answer comes from
    expected: FeatureCheck
    subject: str = ENTITY
    customer: Side = Side()
    entity: Side | None = Side()
    catalogue: tuple[dict, ...] = ()
    required: float = 1
    properties: dict | None = None

    def __str__(self) -> str:
        return self.name


def expect(feature_id: str, reason: Reason, remaining: float | None = None, *,
           credit_system: str | None = None, credits: float | None = None) -> FeatureCheck:
    return FeatureCheck(feature_id, reason, remaining, credit_system=credit_system, credits_required=credits)


CREDITS = credit_system("credits", {"ai_messages": 5, "images": 0.2, "tenths": 0.1})
CATALOGUE = (metered("ai_messages"), metered("images"), metered("tenths"), boolean("sso"), CREDITS)
TEN_CREDITS = Side(balances=(balance("credits", 10),))
OVERLAP_FIRST = credit_system("credits_a", {"ai_messages": 10})
OVERLAP_SECOND = credit_system("credits_b", {"ai_messages": 1})

# Where the answers come from (files of the server):
CHECK_DATA = "server/src/internal/balances/check/getCheckDataV2.ts"  # the subject: the entity's answer
TO_ALLOWED = "shared/api/customers/cusFeatures/utils/convert/apiBalanceToAllowed.ts"
RESPONSE = "server/src/internal/balances/check/getCheckResponseV2.ts"  # flag first; credit conversion
MERGE = "shared/utils/fullSubjectUtils/mergeCustomerBillingControlsForCheck.ts"
FEATURE_TO_USE = "shared/api/customers/cusFeatures/utils/check/getFeatureToUseForCheck.ts"
HEADROOM = "shared/api/customers/utils/apiSubjectToUsageLimitHeadroom.ts"
CREDIT_UTILS = "server/src/internal/features/creditSystemUtils.ts"  # getCreditSystemsFromFeature

CASES = [
    # -- entities -------------------------------------------------------------------------
    Case("the entity's own balance", f"{CHECK_DATA}; {TO_ALLOWED} (remaining >= required); "
         "server/tests/balances/check/loose/entities/entity-loose-1.test.ts",
         expect("messages", Reason.BALANCE_REMAINING, 5),
         entity=Side(balances=(balance("messages", 5),)), required=5),
    Case("the entity's own balance, short", f"{TO_ALLOWED}; entity-loose-1.test.ts (required 999 of 500)",
         expect("messages", Reason.BALANCE_EXHAUSTED, 5),
         entity=Side(balances=(balance("messages", 5),)), required=6),
    Case("the entity's answer, not the customer's", f"{CHECK_DATA}: with an entity_id the subject is the "
         "entity, whose answer pools in the customer-level balance (autumn-api.md 'Entities and seats')",
         expect("messages", Reason.BALANCE_REMAINING, 40),
         customer=Side(balances=(balance("messages", 0),)), entity=Side(balances=(balance("messages", 40),))),
    Case("the customer's own answer for the customer", f"{CHECK_DATA}: no entity_id, the customer",
         expect("messages", Reason.BALANCE_EXHAUSTED, 0), subject=CUSTOMER,
         customer=Side(balances=(balance("messages", 0),)), entity=Side(balances=(balance("messages", 40),))),
    Case("a customer feature missing from the entity's answer", f"{RESPONSE}: no balance and no flag",
         expect("sso", Reason.NO_FEATURE), customer=Side(flags=(flag("sso"),))),
    Case("the entity's flag", f"{RESPONSE}: a flag allows outright",
         expect("sso", Reason.FLAG), entity=Side(flags=(flag("sso"),))),
    Case("the entity's flag, expired", "flag expiry (the mirror's copy is older than the flag)",
         expect("sso", Reason.FLAG_EXPIRED), entity=Side(flags=(flag("sso", expires_in_hours=-1),))),
    Case("the entity found by its id", f"{CHECK_DATA} (customer_id and entity_id)",
         expect("messages", Reason.BALANCE_REMAINING, 5), subject=ENTITY_ID,
         entity=Side(balances=(balance("messages", 5),))),
    Case("a deleted entity", "Autumn no longer has the entity: its check finds no entity",
         expect("messages", Reason.ENTITY_DELETED),
         entity=Side(balances=(balance("messages", 5),), deleted=True)),
    Case("a deleted entity, by its id", "as above", expect("messages", Reason.ENTITY_DELETED),
         subject=ENTITY_ID, entity=Side(balances=(balance("messages", 5),), deleted=True)),
    Case("an entity of a deleted customer", "deleting a customer deletes its entities: customer not found",
         expect("messages", Reason.CUSTOMER_DELETED), customer=Side(deleted=True),
         entity=Side(balances=(balance("messages", 5),))),
    Case("by id, of a deleted customer", "as above", expect("messages", Reason.CUSTOMER_DELETED),
         subject=ENTITY_ID, customer=Side(deleted=True), entity=Side(balances=(balance("messages", 5),))),
    Case("an entity id the customer does not have", "entity not found", expect("messages", Reason.NO_ENTITY),
         subject=ENTITY_ID, entity=None),
    # Billing controls: the entity's own entry per feature, then its customer's.
    Case("the customer's usage limit is inherited", f"{MERGE}; {HEADROOM}",
         expect("messages", Reason.USAGE_LIMIT, 50), entity=Side(balances=(balance("messages", 50),)),
         customer=Side(controls={"usage_limits": [usage_limit("messages", 10, 8)]}), required=3),
    Case("the entity's usage limit wins over the customer's", f"{MERGE}: entity's own entry wins per feature",
         expect("messages", Reason.BALANCE_REMAINING, 50),
         entity=Side(balances=(balance("messages", 50),),
                     controls={"usage_limits": [usage_limit("messages", 100, 8)]}),
         customer=Side(controls={"usage_limits": [usage_limit("messages", 10, 8)]}), required=3),
    Case("a filtered customer usage limit is a limit of its own", f"{MERGE}: usage limits per (feature, "
         "filter), usageLimitFilterKey", expect("messages", Reason.USAGE_LIMIT, 50),
         entity=Side(balances=(balance("messages", 50),),
                     controls={"usage_limits": [usage_limit("messages", 100, 8)]}),
         customer=Side(controls={"usage_limits": [usage_limit("messages", 10, 8,
                                                              filter={"properties": {"model": "big"}})]}),
         required=3, properties={"model": "big"}),
    Case("the customer's overage control is inherited", f"{MERGE}; {TO_ALLOWED} (control enabled: false)",
         expect("messages", Reason.BALANCE_EXHAUSTED, 0),
         entity=Side(balances=(balance("messages", 0, overage_allowed=True),)),
         customer=Side(controls={"overage_allowed": [overage_control("messages", False)]})),
    Case("the entity's overage control wins", MERGE, expect("messages", Reason.OVERAGE_ALLOWED, 0),
         entity=Side(balances=(balance("messages", 0),),
                     controls={"overage_allowed": [overage_control("messages", True)]}),
         customer=Side(controls={"overage_allowed": [overage_control("messages", False)]})),
    Case("the customer's spend limit is inherited", f"{MERGE}; apiBalanceV1ToAvailableOverage.ts",
         expect("messages", Reason.SPEND_LIMIT, 0),
         entity=Side(balances=(balance("messages", 0, overage_allowed=True),)),
         customer=Side(controls={"spend_limits": [{"feature_id": "messages", "enabled": True,
                                                   "overage_limit": 0}]})),
    # -- credit systems -----------------------------------------------------------------------
    Case("a member with enough credits at cost 5",
         f"{RESPONSE}: required x credit_cost (featureToCreditSystem)",
         expect("ai_messages", Reason.BALANCE_REMAINING, 10, credit_system="credits", credits=10),
         subject=CUSTOMER, customer=TEN_CREDITS, catalogue=CATALOGUE, required=2),
    Case("a member with too few credits at cost 5", f"{RESPONSE}; {TO_ALLOWED}",
         expect("ai_messages", Reason.BALANCE_EXHAUSTED, 10, credit_system="credits", credits=15),
         subject=CUSTOMER, customer=TEN_CREDITS, catalogue=CATALOGUE, required=3),
    Case("a fractional cost", f"{CREDIT_UTILS}: Decimal(credit_amount) x amount",
         expect("images", Reason.BALANCE_REMAINING, 0.6, credit_system="credits", credits=0.6),
         subject=CUSTOMER, customer=Side(balances=(balance("credits", 0.6),)), catalogue=CATALOGUE,
         required=3),
    Case("a fractional cost, short", CREDIT_UTILS,
         expect("images", Reason.BALANCE_EXHAUSTED, 0.5, credit_system="credits", credits=0.6),
         subject=CUSTOMER, customer=Side(balances=(balance("credits", 0.5),)), catalogue=CATALOGUE,
         required=3),
    Case("3 x 0.1 credits is 0.3, in decimals",
         f"{CREDIT_UTILS} (decimal.js: 0.1 x 3 = 0.3, not 0.30000000000000004)",
         expect("tenths", Reason.BALANCE_REMAINING, 0.3, credit_system="credits", credits=0.3),
         subject=CUSTOMER, customer=Side(balances=(balance("credits", 0.3),)), catalogue=CATALOGUE,
         required=3),
    Case("a member with its own balance that allows", f"{FEATURE_TO_USE}: the main balance first",
         expect("ai_messages", Reason.BALANCE_REMAINING, 3), subject=CUSTOMER,
         customer=Side(balances=(balance("ai_messages", 3), balance("credits", 10))), catalogue=CATALOGUE),
    Case("a member's own balance used up: the credits answer",
         f"{FEATURE_TO_USE}: then a credit system that allows",
         expect("ai_messages", Reason.BALANCE_REMAINING, 10, credit_system="credits", credits=5),
         subject=CUSTOMER, customer=Side(balances=(balance("ai_messages", 0), balance("credits", 10))),
         catalogue=CATALOGUE),
    Case("both used up: the credit system held answers",
         f"{FEATURE_TO_USE}: else the first credit system held",
         expect("ai_messages", Reason.BALANCE_EXHAUSTED, 2, credit_system="credits", credits=5),
         subject=CUSTOMER, customer=Side(balances=(balance("ai_messages", 0), balance("credits", 2))),
         catalogue=CATALOGUE),
    Case("an unlimited member balance", f"{FEATURE_TO_USE}; {TO_ALLOWED} (unlimited)",
         expect("ai_messages", Reason.UNLIMITED), subject=CUSTOMER,
         customer=Side(balances=(balance("ai_messages", 0, unlimited=True), balance("credits", 0))),
         catalogue=CATALOGUE, required=10**6),
    Case("neither the member nor its credits held", f"{FEATURE_TO_USE} falls back to creditSystems[0]: no "
         "balance, not allowed", expect("ai_messages", Reason.NO_FEATURE), subject=CUSTOMER,
         customer=Side(balances=(balance("messages", 10),)), catalogue=CATALOGUE),
    Case("the credit system the subject holds, not the first listed",
         "server/tests/integration/balances/check/check-overlapping-credit-systems.test.ts: resolves "
         "to the owned pool, at its own cost",
         expect("ai_messages", Reason.BALANCE_EXHAUSTED, 0, credit_system="credits_b", credits=1),
         subject=CUSTOMER, customer=Side(balances=(balance("credits_b", 0),)),
         catalogue=(metered("ai_messages"), OVERLAP_FIRST, OVERLAP_SECOND)),
    Case("two credit systems held: the first that allows in member units", f"{FEATURE_TO_USE}: each credit "
         "system is tried with the unconverted amount (5 >= 1), then judged at its cost (10 > 5)",
         expect("ai_messages", Reason.BALANCE_EXHAUSTED, 5, credit_system="credits_a", credits=10),
         subject=CUSTOMER, customer=Side(balances=(balance("credits_a", 5), balance("credits_b", 100))),
         catalogue=(metered("ai_messages"), OVERLAP_FIRST, OVERLAP_SECOND)),
    Case("the first does not allow even in member units: the next", FEATURE_TO_USE,
         expect("ai_messages", Reason.BALANCE_REMAINING, 100, credit_system="credits_b", credits=1),
         subject=CUSTOMER, customer=Side(balances=(balance("credits_a", 0.5), balance("credits_b", 100))),
         catalogue=(metered("ai_messages"), OVERLAP_FIRST, OVERLAP_SECOND)),
    Case("an archived credit system comes after the others", "shared/utils/featureUtils/sortFeatures.ts",
         expect("ai_messages", Reason.BALANCE_REMAINING, 100, credit_system="credits_b", credits=1),
         subject=CUSTOMER, customer=Side(balances=(balance("credits_a", 50), balance("credits_b", 100))),
         catalogue=(metered("ai_messages"), {**OVERLAP_FIRST, "archived": True}, OVERLAP_SECOND)),
    Case("a credit system Autumn no longer has", "gone from features.list: not in ctx.features",
         expect("ai_messages", Reason.NO_FEATURE), subject=CUSTOMER, customer=TEN_CREDITS,
         catalogue=(metered("ai_messages"), {**CREDITS, "deleted": True})),
    Case("the member's own usage limit, in credits",
         f"{HEADROOM}: the original feature's cap x credit_cost (2 left x 5 = 10 credits < 15)",
         expect("ai_messages", Reason.USAGE_LIMIT, 100, credit_system="credits", credits=15),
         subject=CUSTOMER, customer=Side(balances=(balance("credits", 100),),
                                         controls={"usage_limits": [usage_limit("ai_messages", 10, 8)]}),
         catalogue=CATALOGUE, required=3),
    Case("the credit system's own usage limit", HEADROOM,
         expect("ai_messages", Reason.USAGE_LIMIT, 100, credit_system="credits", credits=15),
         subject=CUSTOMER, customer=Side(balances=(balance("credits", 100),),
                                         controls={"usage_limits": [usage_limit("credits", 20, 8)]}),
         catalogue=CATALOGUE, required=3),
    Case("a credit system checked itself", f"{CREDIT_UTILS}: a credit system is no member of itself",
         expect("credits", Reason.BALANCE_REMAINING, 10), subject=CUSTOMER, customer=TEN_CREDITS,
         catalogue=CATALOGUE, required=10),
    Case("an entity's credits for a member", f"{CHECK_DATA}; {RESPONSE}",
         expect("ai_messages", Reason.BALANCE_EXHAUSTED, 10, credit_system="credits", credits=15),
         entity=TEN_CREDITS, catalogue=CATALOGUE, required=3),
    Case("an entity's credits, by its id", f"{CHECK_DATA}; {RESPONSE}",
         expect("ai_messages", Reason.BALANCE_REMAINING, 10, credit_system="credits", credits=10),
         subject=ENTITY_ID, entity=TEN_CREDITS, catalogue=CATALOGUE, required=2),
    # -- features Autumn does not have ------------------------------------------------------
    Case("a feature the catalogue does not list", f"{CHECK_DATA}: FeatureNotFoundError (404)",
         expect("nope", Reason.UNKNOWN_FEATURE), subject=CUSTOMER, customer=TEN_CREDITS, catalogue=CATALOGUE),
    Case("the same without a mirrored catalogue", "the mirror cannot tell: no balance, not allowed",
         expect("nope", Reason.NO_FEATURE), subject=CUSTOMER, customer=TEN_CREDITS),
    Case("a balance the catalogue does not list yet", "the catalogue syncs apart from the customer: the "
         "balance answers", expect("new_feature", Reason.BALANCE_REMAINING, 4), subject=CUSTOMER,
         customer=Side(balances=(balance("new_feature", 4),)), catalogue=CATALOGUE),
]


@pytest.fixture
def user():
    return get_user_model().objects.create_user("ada", password="pw")


def write_catalogue(features: tuple[dict, ...], env: str = "sandbox") -> None:
    """``Feature`` rows in features.list order, as the catalogue sync writes them."""
    now = timezone.now()
    for position, entry in enumerate(features):
        Feature.objects.create(env=env, feature_id=entry["id"], type=entry["type"], position=position,
                               archived=entry["archived"], credit_schema=entry["credit_schema"], raw=entry,
                               synced_at=now, deleted_at=now if entry["deleted"] else None)


def _at(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=tz.utc)


def write_children(side: Side, **owner: Any) -> None:
    for b in side.balances:
        Balance.objects.create(**owner, feature_id=b["feature_id"], granted=b["granted"],
                               remaining=b["remaining"], usage=b["usage"], unlimited=b["unlimited"],
                               overage_allowed=b["overage_allowed"], next_reset_at=_at(b["next_reset_at"]),
                               breakdown=b["breakdown"])
    for f in side.flags:
        Flag.objects.create(**owner, feature_id=f["feature_id"], flag_id=f["id"], plan_id=f["plan_id"],
                            expires_at=_at(f["expires_at"]))


def mirror(case: Case, owner: Any = None) -> tuple[Customer, Entity | None]:
    now = timezone.now()
    side = case.customer
    customer = Customer.objects.create(
        env="sandbox", autumn_id="cus_1", created_at=now, synced_at=now, raw_hash="0" * 32, owner=owner,
        raw={"id": "cus_1", "billing_controls": side.controls, "subscriptions": []},
        deleted_at=now if side.deleted else None)
    write_children(side, customer=customer)
    entity = None
    if case.entity is not None:
        entity = Entity.objects.create(
            env="sandbox", autumn_id="ws_1", customer=customer, created_at=now, synced_at=now,
            raw_hash="0" * 32, deleted_at=now if case.entity.deleted else None,
            raw={"id": "ws_1", "customer_id": "cus_1", "billing_controls": case.entity.controls,
                 "subscriptions": []})
        write_children(case.entity, entity=entity)
    write_catalogue(case.catalogue)
    return customer, entity


@pytest.mark.parametrize("case", CASES, ids=str)
def test_checks_answer_as_autumn(case, user, django_assert_num_queries):
    _, entity = mirror(case, owner=user)
    subject: Any = {CUSTOMER: user, ENTITY: entity, ENTITY_ID: user}[case.subject]
    entity_id = "ws_1" if case.subject == ENTITY_ID else None

    with django_assert_num_queries(1):
        result = check_feature(subject, case.expected.feature_id, case.required, properties=case.properties,
                               entity_id=entity_id)

    assert result == case.expected, case.source
    assert has_feature(subject, case.expected.feature_id, case.required, properties=case.properties,
                       entity_id=entity_id) is result.allowed is bool(result)
    assert bool(result.message) is not result.allowed


def test_the_catalogue_is_read_by_each_check(user):
    """A credit system added to the catalogue counts from the next check on, in every
    process: the check reads the catalogue in its own query, with nothing cached."""
    mirror(Case("", "", expect("x", Reason.FLAG), subject=CUSTOMER, customer=TEN_CREDITS, entity=None), user)
    assert check_feature(user, "ai_messages").reason == Reason.NO_FEATURE

    write_catalogue((CREDITS,))

    assert check_feature(user, "ai_messages", 2) == expect("ai_messages", Reason.BALANCE_REMAINING, 10,
                                                           credit_system="credits", credits=10)
    Feature.objects.filter(feature_id="credits").update(credit_schema=[{"metered_feature_id": "ai_messages",
                                                                        "credit_cost": 6}])
    assert check_feature(user, "ai_messages", 2).reason == Reason.BALANCE_EXHAUSTED


def test_another_envs_catalogue_does_not_count(user):
    mirror(Case("", "", expect("x", Reason.FLAG), subject=CUSTOMER, customer=TEN_CREDITS, entity=None), user)
    write_catalogue((CREDITS,), env="live")

    assert check_feature(user, "ai_messages").reason == Reason.NO_FEATURE


def test_a_customer_subject_and_a_customer_row_agree(user):
    case = Case("", "", expect("x", Reason.FLAG), customer=TEN_CREDITS, catalogue=CATALOGUE)
    customer, _ = mirror(case, user)

    assert check_feature(customer, "ai_messages", 2) == check_feature(user, "ai_messages", 2)
    assert check_feature(customer, "sso", entity_id="ws_1").reason == Reason.NO_FEATURE
    assert check_feature(customer, "ai_messages", entity_id="nope").reason == Reason.NO_ENTITY


def test_each_subject_gets_its_own_rows(user):
    """The check's SQL is compiled once and reused with each subject's key."""
    mirror(Case("", "", expect("x", Reason.FLAG), customer=Side(balances=(balance("messages", 5),)),
                entity=Side(flags=(flag("sso"),))), user)
    other = get_user_model().objects.create_user("bob")
    now = timezone.now()
    theirs = Customer.objects.create(env="sandbox", autumn_id="cus_2", created_at=now, synced_at=now,
                                     raw_hash="0" * 32, owner=other, raw={"id": "cus_2"})
    Balance.objects.create(customer=theirs, feature_id="messages", granted=10, remaining=0)
    mine = Entity.objects.get(autumn_id="ws_1")
    ours = Entity.objects.create(env="sandbox", autumn_id="ws_1", customer=theirs, created_at=now,
                                 synced_at=now, raw_hash="0" * 32, raw={"id": "ws_1"})

    for _ in range(2):
        assert check_feature(user, "messages") == expect("messages", Reason.BALANCE_REMAINING, 5)
        assert check_feature(other, "messages") == expect("messages", Reason.BALANCE_EXHAUSTED, 0)
        assert check_feature(user, "sso", entity_id="ws_1").reason == Reason.FLAG
        assert check_feature(other, "sso", entity_id="ws_1").reason == Reason.NO_FEATURE
        assert check_feature(mine, "sso").reason == Reason.FLAG
        assert check_feature(ours, "sso").reason == Reason.NO_FEATURE


def test_entity_of_a_user_without_a_customer(user, django_assert_num_queries):
    with django_assert_num_queries(1):
        assert check_feature(user, "messages", entity_id="ws_1").reason == Reason.NO_CUSTOMER


def test_an_entity_no_longer_in_the_mirror(user):
    _, entity = mirror(Case("", "", expect("x", Reason.FLAG), entity=Side(flags=(flag("sso"),))), user)
    assert has_feature(entity, "sso")
    Entity.objects.filter(pk=entity.pk).delete()

    assert check_feature(entity, "sso").reason == Reason.NO_ENTITY
    assert check_feature(Entity(env="sandbox"), "sso").reason == Reason.NO_ENTITY  # never saved


@pytest.mark.parametrize(("entity_id", "error"), [
    ("", "entity_id must be an entity's Autumn id"),
    (7, "entity_id must be an entity's Autumn id"),
])
def test_a_bad_entity_id_is_refused(user, entity_id, error):
    with pytest.raises(TypeError, match=error):
        check_feature(user, "sso", entity_id=entity_id)


def test_an_entity_and_an_entity_id_is_refused(user):
    _, entity = mirror(Case("", "", expect("x", Reason.FLAG)), user)
    with pytest.raises(TypeError, match="not both"):
        check_feature(entity, "sso", entity_id="ws_1")


def test_a_required_amount_that_is_no_number_is_refused(user):
    with pytest.raises(TypeError, match="expected a number"):
        check_feature(user, "sso", "5")


def test_an_entity_balance_past_its_reset_refreshes_its_customer(user, monkeypatch):
    cache.clear()
    due = Side(balances=(balance("messages", 0, resets_in_hours=-1),))
    _, entity = mirror(Case("", "", expect("x", Reason.FLAG), entity=due), user)
    queued = []
    monkeypatch.setattr("autumn_django.dispatch.dispatch",
                        lambda task, *args, **kw: queued.append((task, args)))

    first = check_feature(entity, "messages", 100)
    second = check_feature(user, "messages", 100, entity_id="ws_1")

    assert first == second == FeatureCheck("messages", Reason.BALANCE_REMAINING, 100, reset_due=True)
    assert [(task.name, args) for task, args in queued] == [
        ("autumn_django.sync_customer", ("cus_1", "sandbox"))]  # once, for the entity's customer


def test_credits_past_their_reset_count_as_reset(user, monkeypatch):
    cache.clear()
    monkeypatch.setattr("autumn_django.dispatch.dispatch", lambda *args, **kw: None)
    case = Case("", "", expect("x", Reason.FLAG), subject=CUSTOMER, entity=None, catalogue=CATALOGUE,
                customer=Side(balances=(balance("credits", 0, resets_in_hours=-1),)))
    mirror(case, user)

    assert check_feature(user, "ai_messages", 20) == FeatureCheck(
        "ai_messages", Reason.BALANCE_REMAINING, 100, reset_due=True, credit_system="credits",
        credits_required=100)


def test_messages_name_the_credit_system(user):
    mirror(Case("", "", expect("x", Reason.FLAG), customer=TEN_CREDITS, catalogue=CATALOGUE), user)

    assert check_feature(user, "ai_messages", 3).message == "You have no credits left."
    assert check_feature(user, "ai_messages", 1).message == ""


# -- the template tag and the permission ----------------------------------------------------


def test_template_tag_and_filter_take_an_entity(user):
    case = Case("", "", expect("x", Reason.FLAG), customer=Side(flags=(flag("sso"),)),
                entity=Side(flags=(flag("audit_log"),)))
    _, entity = mirror(case, user)
    tag = Template('{% load autumn %}{% has_feature feature owner=who entity_id=ws as ok %}{{ ok.allowed }}')

    assert tag.render(Context({"who": entity, "feature": "audit_log", "ws": None})) == "True"
    assert tag.render(Context({"who": user, "feature": "audit_log", "ws": "ws_1"})) == "True"
    assert tag.render(Context({"who": user, "feature": "audit_log", "ws": None})) == "False"  # the customer's
    assert tag.render(Context({"who": user, "feature": "sso", "ws": "ws_1"})) == "False"
    text = Template('{% load autumn %}{% if who|has_feature:"audit_log" %}yes{% else %}no{% endif %}')
    assert text.render(Context({"who": entity})) == "yes"


class WorkspaceExport(APIView):
    permission_classes = [HasFeature("exports", entity_kwarg="workspace")]

    def get(self, request, workspace):
        return Response({"ok": True})


def test_permission_checks_the_entity_the_url_names(user):
    case = Case("", "", expect("x", Reason.FLAG), customer=Side(balances=(balance("exports", 0),)),
                entity=Side(balances=(balance("exports", 3),)))
    mirror(case, user)

    def call(workspace: str):
        request = APIRequestFactory().get("/")
        force_authenticate(request, user=user)
        return WorkspaceExport.as_view()(request, workspace=workspace)

    assert call("ws_1").status_code == 200
    missing = call("ws_2")
    assert missing.status_code == 403 and missing.data["detail"] == "This has no billing plan yet."
    name = HasFeature("exports", entity_kwarg="workspace").__name__
    assert name == "HasFeature('exports', entity_kwarg='workspace')"
