"""Feature checks answered from the mirror, without calling Autumn.

``check_feature(request, "ai_tokens", required=5)`` reads the customer of the request's owner
(``AUTUMN_OWNER_FROM_REQUEST``; an owner or a ``Customer`` may be given instead) in the
project's environment and answers as Autumn's ``check`` would for that customer as
the mirror holds it (autumn-api.md, "Local feature checks: Autumn's rules"): a boolean
feature is usable when its flag is there and has not expired; a metered one by its
balance, the required amount (default 1), overage and its caps, and the customer's billing
controls. One query.

Resets: Autumn resets balances lazily, so a balance whose reset time has passed still
shows last period's usage until someone reads the customer through ``customers.get``. A
check never denies because of such a balance: it counts as reset to its grant, and a
refresh of that customer is queued (once per customer and reset time).

The mirror is as fresh as its last sync or webhook, so use it to gate UI and cheap actions.
Before consuming a metered feature, ask Autumn (``check`` / ``track``): only Autumn knows
the balance at this instant.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any

from django.core.cache import cache
from django.db import models
from django.db.models import Case, F, FilteredRelation, Func, Q, QuerySet, When
from django.utils import timezone

from . import jsonlib
from .conf import project_env
from .models import Customer
from .owners import customer_lookup

logger = logging.getLogger(__name__)


class Reason(str, Enum):
    """Why a check came out the way it did. The denials past ``balance_exhausted`` are the
    limit types Autumn's ``check`` tells apart (``limitType``)."""

    UNLIMITED = "unlimited"
    BALANCE_REMAINING = "balance_remaining"
    OVERAGE_ALLOWED = "overage_allowed"
    FLAG = "flag"
    NEGATIVE_REQUIRED = "negative_required"  # a negative amount (giving back) is always allowed
    BALANCE_EXHAUSTED = "balance_exhausted"  # Autumn's "included": the balance is short of it
    MAX_PURCHASE = "max_purchase"  # overage allowed, but capped by the plans' max_purchase
    SPEND_LIMIT = "spend_limit"  # overage allowed, but capped by a spend limit
    USAGE_LIMIT = "usage_limit"  # a usage limit's window has no room left for it
    FLAG_EXPIRED = "flag_expired"
    NO_FEATURE = "no_feature"  # the customer has neither a balance nor a flag for it
    NO_CUSTOMER = "no_customer"  # no owner (anonymous), or no customer linked to it in this env
    CUSTOMER_DELETED = "customer_deleted"  # Autumn no longer has the customer


ALLOWING = frozenset({Reason.UNLIMITED, Reason.BALANCE_REMAINING, Reason.OVERAGE_ALLOWED, Reason.FLAG,
                      Reason.NEGATIVE_REQUIRED})

MESSAGES = {
    Reason.BALANCE_EXHAUSTED: "You have no {feature} left.",
    Reason.MAX_PURCHASE: "You have used all the {feature} your plan allows.",
    Reason.SPEND_LIMIT: "You have reached your spending limit for {feature}.",
    Reason.USAGE_LIMIT: "You have reached your usage limit for {feature}.",
    Reason.FLAG_EXPIRED: "Your access to {feature} has expired.",
    Reason.NO_FEATURE: "Your plan does not include {feature}.",
    Reason.NO_CUSTOMER: "Your account has no billing plan yet.",
    Reason.CUSTOMER_DELETED: "Your account has no billing plan.",
}

# How long the note "this customer's refresh for this reset is queued" is kept: the
# refresh lands in seconds; a failed one is left to the next full sync, not retried per check.
REFRESH_NOTE_SECONDS = 24 * 3600
_ZERO = Decimal(0)


@dataclass(frozen=True)
class FeatureCheck:
    """The answer to "may this user use ``feature_id``?"; true in a boolean context when
    allowed. ``remaining`` is the balance left for a metered feature (None otherwise),
    counting a balance whose reset time has passed as reset (``reset_due``)."""

    feature_id: str
    reason: Reason
    remaining: float | None = None
    reset_due: bool = False

    @property
    def allowed(self) -> bool:
        return self.reason in ALLOWING

    @property
    def message(self) -> str:
        """A sentence for the user when not allowed (empty when allowed)."""
        return MESSAGES.get(self.reason, "").format(feature=self.feature_id)

    def __bool__(self) -> bool:
        return self.allowed


def mirror_env() -> str:
    """The environment this project runs in and reads: ``AUTUMN_ENV`` (by default "live"
    when a live key is configured, else "sandbox")."""
    return project_env()


class _RawMember(Func):
    """One top-level member of ``Customer.raw`` as JSON text: the database picks it out of
    the stored customer, so only that member crosses the wire and is decoded here."""

    output_field = models.TextField()

    def __init__(self, member: str) -> None:
        super().__init__(F("raw"))
        self.member = member

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list]:
        raw, params = compiler.compile(self.source_expressions[0])
        if connection.vendor == "postgresql":  # raw is json there: no cast to jsonb needed
            return f"(({raw}) -> %s)::text", [*params, self.member]
        return f"JSON_EXTRACT({raw}, %s)", [*params, f"$.{self.member}"]


def check_feature(subject: Any, feature_id: str, required: float = 1, *,
                  properties: dict[str, Any] | None = None) -> FeatureCheck:
    """Whether ``subject``'s Autumn customer may use ``required`` of ``feature_id`` now, and
    why, from the mirror, as Autumn's ``check`` answers it. ``subject`` is a request (its
    owner: ``AUTUMN_OWNER_FROM_REQUEST``), an owner (an instance of
    ``AUTUMN_CUSTOMER_OWNER_MODEL``: by default a user, so ``request.user`` works) or a
    ``Customer``. ``properties`` are the event properties a filtered usage limit matches
    against (as ``check`` takes them).

    One query: the owner's customer in the project's env (a ``Customer`` given: that one),
    joined to its balance and flag for this feature (each unique per customer, so at most
    one row comes back), with the customer's billing controls picked out of its JSON only
    when there is a balance to judge.
    """
    lookup = customer_lookup(subject)
    if lookup is None:
        return FeatureCheck(feature_id, Reason.NO_CUSTOMER)
    env = subject.env if isinstance(subject, Customer) else mirror_env()
    found = next(iter(_feature_rows(env, feature_id).filter(**lookup)[:1]), None)
    if found is None:
        return FeatureCheck(feature_id, Reason.NO_CUSTOMER)
    if found["deleted_at"] is not None:
        return FeatureCheck(feature_id, Reason.CUSTOMER_DELETED)
    now = timezone.now()
    flag_expires = found["flag__expires_at"]
    if found["flag__pk"] is not None and (flag_expires is None or flag_expires > now):
        # A flag present: allowed (Autumn's check answers a flag before any balance).
        return FeatureCheck(feature_id, Reason.FLAG)
    if found["balance__pk"] is None:
        reason = Reason.FLAG_EXPIRED if found["flag__pk"] is not None else Reason.NO_FEATURE
        return FeatureCheck(feature_id, reason)
    result, due_at = _from_balance(feature_id, found, _number(required), properties, now)
    if due_at is not None and found["autumn_id"] and env == mirror_env():
        _queue_refresh(env, found["autumn_id"], due_at)
    return result


@functools.lru_cache(maxsize=256)
def _feature_rows(env: str, feature_id: str) -> QuerySet:
    """The check's query but for the customer, built once per env and feature: building it
    (the joins, the annotations) costs the ORM more than running it."""
    has_balance = Q(balance__isnull=False)
    return (
        Customer.objects.filter(env=env)
        .annotate(
            balance=FilteredRelation("balances", condition=Q(balances__feature_id=feature_id)),
            flag=FilteredRelation("flags", condition=Q(flags__feature_id=feature_id)),
            controls=Case(When(has_balance, then=_RawMember("billing_controls")), default=None),
            plans=Case(When(has_balance, then=_RawMember("subscriptions")), default=None),
        )
        .values("autumn_id", "deleted_at", "balance__pk", "balance__unlimited", "balance__granted",
                "balance__remaining", "balance__overage_allowed", "balance__next_reset_at",
                "balance__breakdown", "flag__pk", "flag__expires_at", "controls", "plans")
    )


def has_feature(subject: Any, feature_id: str, required: float = 1, *,
                properties: dict[str, Any] | None = None) -> bool:
    """True when ``subject``'s customer (of a request, an owner, or a ``Customer``) may use
    ``required`` of ``feature_id``, per the mirror."""
    return check_feature(subject, feature_id, required, properties=properties).allowed


# -- Autumn's rules -------------------------------------------------------------------------
# Followed from Autumn's open-source server (github.com/useautumn/autumn), read, not copied:
#   shared/api/customers/cusFeatures/utils/convert/apiBalanceToAllowed.ts (the order of the rules)
#   shared/api/customers/utils/apiSubjectToUsageLimitHeadroom.ts (usage limits, their filters)
#   shared/models/cusModels/billingControls/usageLimit.ts (usageLimitFilterMatchesProperties)
#   shared/api/customers/utils/apiSubjectToOverageAllowed.ts (the overage_allowed control)
#   shared/api/customers/cusFeatures/utils/convert/apiBalanceV1ToAvailableOverage.ts and
#   apiBalanceV1ToOverage.ts (overage left under spend limits and max_purchase)
#   shared/api/customers/utils/apiSubjectToSpendLimit.ts,
#   shared/utils/cusEntUtils/convertCusEntUtils/resolveSpendLimitOverageLimit.ts (spend limits,
#   a percentage one taken of the main plans' grant)
#   server/src/internal/balances/check/getCheckResponseV2.ts (a flag is allowed outright)
# Amounts compare as decimals, as the server's decimal.js does (0.1 + 0.2 is 0.3).


def _from_balance(feature_id: str, row: dict[str, Any], required: Decimal,
                  properties: dict[str, Any] | None, now: datetime) -> tuple[FeatureCheck, int | None]:
    """The check of a balance, and the epoch ms of its earliest reset that is due (None:
    none is), which the caller has refreshed."""
    balance = _Balance(row, now)
    if row["balance__unlimited"]:
        # An unlimited balance's counts carry no meaning: do not report them.
        due = balance.due_at
        return FeatureCheck(feature_id, Reason.UNLIMITED, None, due is not None), due
    if required < 0:
        return balance.answer(feature_id, Reason.NEGATIVE_REQUIRED)
    controls = _controls(row["controls"])
    headroom = _usage_limit_headroom(controls.get("usage_limits"), feature_id, properties)
    if headroom is not None and required > headroom:
        return balance.answer(feature_id, Reason.USAGE_LIMIT)
    have = max(_ZERO, balance.remaining)  # Autumn's remaining is never below zero
    enough = Reason.BALANCE_REMAINING if have >= required else None
    control = _first(controls.get("overage_allowed"), feature_id)
    if control is not None and control.get("enabled", False) is False:
        return balance.answer(feature_id, enough or Reason.BALANCE_EXHAUSTED)
    if row["balance__overage_allowed"] or (control is not None and control.get("enabled") is True):
        available, capped_by = _available_overage(balance, controls.get("spend_limits"), feature_id,
                                                  row["plans"])
        if available is None or available + have >= required:
            return balance.answer(feature_id, enough or Reason.OVERAGE_ALLOWED)
        return balance.answer(feature_id, capped_by)
    return balance.answer(feature_id, enough or Reason.BALANCE_EXHAUSTED)


class _Balance:
    """A mirrored balance as the check sees it: with every reset whose time has passed
    counted as applied (usage back to 0, remaining back to the grant), as Autumn's
    ``customers.get`` would apply it before answering."""

    def __init__(self, row: dict[str, Any], now: datetime) -> None:
        now_ms = int(now.timestamp() * 1000)
        self.entries = [e for e in row["balance__breakdown"] or [] if isinstance(e, dict)]
        self.due_at: int | None = None
        stored = _amount(row["balance__remaining"])
        self.remaining_shown = row["balance__remaining"]
        self.overage = _ZERO
        gained = _ZERO
        any_entry_due = False
        for entry in self.entries:
            reset = entry.get("reset")
            at = reset.get("resets_at") if isinstance(reset, dict) else None
            if isinstance(at, (int, float)) and not isinstance(at, bool) and at <= now_ms:
                any_entry_due = True
                self._note_due(int(at))
                grant = _grants(entry)
                gained += grant - _amount(entry.get("remaining"))
            else:
                self.overage += _entry_overage(entry)
        next_reset = row["balance__next_reset_at"]
        if next_reset is not None and next_reset <= now and not any_entry_due:
            # Due with no entry saying which part: the whole balance resets to its grant.
            self._note_due(int(next_reset.timestamp() * 1000))
            self.overage = _ZERO
            self.remaining = _number(row["balance__granted"], stored)
        else:
            self.remaining = stored + gained
        if self.due_at is not None:
            self.remaining_shown = float(self.remaining)

    def _note_due(self, at: int) -> None:
        self.due_at = at if self.due_at is None else min(self.due_at, at)

    def answer(self, feature_id: str, reason: Reason) -> tuple[FeatureCheck, int | None]:
        return FeatureCheck(feature_id, reason, self.remaining_shown, self.due_at is not None), self.due_at


def _entry_overage(entry: dict) -> Decimal:
    """What a breakdown entry has used past its grants. Autumn keeps this as the entry's
    ``overage`` (internal: not in the public answer); without it, usage beyond the grants."""
    if "overage" in entry:
        return _amount(entry.get("overage"))
    return max(_ZERO, _amount(entry.get("usage")) - _grants(entry))


def _grants(entry: dict) -> Decimal:
    return _amount(entry.get("included_grant")) + _amount(entry.get("prepaid_grant"))


def _available_overage(balance: _Balance, spend_limits: Any, feature_id: str,
                       subscriptions: Any) -> tuple[Decimal | None, Reason]:
    """How much more than the balance the customer may use, and what caps it (None: no cap).

    A spend limit for the feature (enabled, with an ``overage_limit``) caps it first;
    otherwise the usage-based entries' ``price.max_purchase``, summed, unless one has none."""
    for limit in spend_limits if isinstance(spend_limits, list) else ():
        if not isinstance(limit, dict) or limit.get("feature_id") != feature_id:
            continue
        if limit.get("enabled") is not True:  # a spend limit is off unless enabled
            continue
        cap = _spend_cap(limit, balance, subscriptions)
        if cap is not None:
            return max(_ZERO, cap - balance.overage), Reason.SPEND_LIMIT
    caps = []
    for entry in balance.entries:
        price = entry.get("price")
        if isinstance(price, dict) and price.get("billing_method") == "usage_based":
            if price.get("max_purchase") is None:
                return None, Reason.MAX_PURCHASE
            caps.append(_amount(price.get("max_purchase")))
    if not caps:
        return None, Reason.MAX_PURCHASE
    return max(_ZERO, sum(caps, _ZERO) - balance.overage), Reason.MAX_PURCHASE


def _spend_cap(limit: dict, balance: _Balance, subscriptions: Any) -> Decimal | None:
    """A spend limit's overage cap in units: absolute, or a percentage of what the main
    (not add-on) plans of ``subscriptions`` (JSON text, decoded only here) grant; None
    when they grant nothing: no cap from it."""
    value = limit.get("overage_limit")
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if limit.get("limit_type") != "usage_percentage":
        return _number(value)
    decoded = _decoded(subscriptions)
    items = decoded if isinstance(decoded, list) else []
    plans = {item.get("plan_id") for item in items if isinstance(item, dict) and not item.get("add_on")}
    allowance = sum((_amount(e.get("included_grant")) for e in balance.entries
                     if e.get("plan_id") in plans), _ZERO)
    if allowance == 0:
        return None
    return _number(value) / 100 * allowance


def _usage_limit_headroom(usage_limits: Any, feature_id: str,
                          properties: dict[str, Any] | None) -> Decimal | None:
    """The least room left among the usage limits on the feature that apply (enabled, and
    their filter matching ``properties``); None when none does."""
    headroom = None
    for limit in usage_limits if isinstance(usage_limits, list) else ():
        if not (isinstance(limit, dict) and limit.get("feature_id") == feature_id
                and limit.get("enabled") is not False and _filter_matches(limit.get("filter"), properties)):
            continue
        room = max(_ZERO, _amount(limit.get("limit")) - _amount(limit.get("usage")))
        headroom = room if headroom is None else min(headroom, room)
    return headroom


def _filter_matches(limit_filter: Any, properties: dict[str, Any] | None) -> bool:
    """No filter matches every check; a filter never matches a check without properties;
    otherwise every condition must hold, values compared as (JavaScript) strings."""
    conditions = limit_filter.get("properties") if isinstance(limit_filter, dict) else None
    if not conditions:
        return True
    if not properties:
        return False
    for key, value in conditions.items():
        given = properties.get(key)
        if given is None or isinstance(given, (dict, list, tuple, set)) or _js_str(given) != _js_str(value):
            return False
    return True


def _js_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _controls(text: Any) -> dict[str, Any]:
    controls = _decoded(text)
    return controls if isinstance(controls, dict) else {}


def _decoded(text: Any) -> Any:
    if not isinstance(text, (str, bytes)):
        return text
    try:
        return jsonlib.loads(text)
    except ValueError:
        return None


def _first(entries: Any, feature_id: str) -> dict | None:
    """The customer's entry for the feature, else its plan's: Autumn lists them so."""
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, dict) and entry.get("feature_id") == feature_id:
            return entry
    return None


def _amount(value: Any) -> Decimal:
    """A count from the JSON as a decimal; 0 when absent or not a number."""
    return _number(value, _ZERO)


def _number(value: Any, default: Decimal | None = None) -> Decimal:
    """A count as a decimal, from the shortest text of the float (as decimal.js reads a
    JavaScript number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        if default is None:
            raise TypeError(f"expected a number, got {value!r:.40}")
        return default
    try:
        return value if isinstance(value, Decimal) else Decimal(repr(value))
    except InvalidOperation:
        if default is None:
            raise
        return default


# -- refreshing a customer whose reset came due -----------------------------------------------


def _queue_refresh(env: str, customer_id: str, due_at: int) -> None:
    """Queue ``customers.get`` of the customer (which applies its due resets) once per
    customer and reset time; never fails the check that asked."""
    try:
        if not cache.add(f"autumn_django:reset-refresh:{env}:{customer_id}:{due_at}", True,
                         REFRESH_NOTE_SECONDS):
            return
        from .dispatch import dispatch
        from .tasks import sync_customer_task

        dispatch(sync_customer_task, customer_id, env)
    except Exception as exc:  # a cache or broker problem must not fail a feature check
        logger.warning("Could not queue the refresh of customer %s after its balance reset: %s",
                       customer_id, exc)
