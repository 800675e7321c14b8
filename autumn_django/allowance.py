"""Autumn's rules for whether a balance allows a check, applied to a balance as the mirror
holds it. ``autumn_django.features`` finds the balances (and the flag) of a customer or an
entity and picks the one that answers; this module judges it.

Followed from Autumn's open-source server (github.com/useautumn/autumn), read, not copied:
  shared/api/customers/cusFeatures/utils/convert/apiBalanceToAllowed.ts (the order of the rules)
  shared/api/customers/utils/apiSubjectToUsageLimitHeadroom.ts (usage limits, their filters, a
  credit-system member's own limits converted into credits)
  shared/models/cusModels/billingControls/usageLimit.ts (usageLimitFilterMatchesProperties,
  usageLimitFilterKey)
  shared/api/customers/utils/apiSubjectToOverageAllowed.ts (the overage_allowed control)
  shared/api/customers/cusFeatures/utils/convert/apiBalanceV1ToAvailableOverage.ts and
  apiBalanceV1ToOverage.ts (overage left under spend limits and max_purchase)
  shared/api/customers/utils/apiSubjectToSpendLimit.ts,
  shared/utils/cusEntUtils/convertCusEntUtils/resolveSpendLimitOverageLimit.ts (spend limits,
  a percentage one taken of the main plans' grant)
  shared/utils/fullSubjectUtils/mergeCustomerBillingControlsForCheck.ts (an entity's controls:
  its own entry per feature wins, its customer's fill the gaps)
Amounts compare as decimals, as the server's decimal.js does (0.1 + 0.2 is 0.3).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any

from . import jsonlib

_ZERO = Decimal(0)


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
    NO_FEATURE = "no_feature"  # the subject has neither a balance nor a flag for it
    # The catalogue (``Feature`` rows) is mirrored and does not list the feature: Autumn's
    # check answers 404 feature_not_found. Without a mirrored catalogue: no_feature.
    UNKNOWN_FEATURE = "unknown_feature"
    NO_CUSTOMER = "no_customer"  # no owner (anonymous), or no customer linked to it in this env
    CUSTOMER_DELETED = "customer_deleted"  # Autumn no longer has the customer (nor its entities)
    NO_ENTITY = "no_entity"  # the customer has no entity with that id in the mirror
    ENTITY_DELETED = "entity_deleted"  # Autumn no longer has the entity


ALLOWING = frozenset({Reason.UNLIMITED, Reason.BALANCE_REMAINING, Reason.OVERAGE_ALLOWED, Reason.FLAG,
                      Reason.NEGATIVE_REQUIRED})

MESSAGES = {
    Reason.BALANCE_EXHAUSTED: "You have no {feature} left.",
    Reason.MAX_PURCHASE: "You have used all the {feature} your plan allows.",
    Reason.SPEND_LIMIT: "You have reached your spending limit for {feature}.",
    Reason.USAGE_LIMIT: "You have reached your usage limit for {feature}.",
    Reason.FLAG_EXPIRED: "Your access to {feature} has expired.",
    Reason.NO_FEATURE: "Your plan does not include {feature}.",
    Reason.UNKNOWN_FEATURE: "Your plan does not include {feature}.",
    Reason.NO_CUSTOMER: "Your account has no billing plan yet.",
    Reason.CUSTOMER_DELETED: "Your account has no billing plan.",
    Reason.NO_ENTITY: "This has no billing plan yet.",
    Reason.ENTITY_DELETED: "This has no billing plan.",
}


class BalanceState:
    """A mirrored balance as a check sees it: with every reset whose time has passed
    counted as applied (usage back to 0, remaining back to the grant), as Autumn's
    ``customers.get`` would apply it before answering.

    ``row`` holds the ``Balance`` columns ``unlimited``, ``granted``, ``remaining``,
    ``next_reset_at`` and ``breakdown``."""

    def __init__(self, row: dict[str, Any], now: datetime) -> None:
        now_ms = int(now.timestamp() * 1000)
        self.unlimited = bool(row["unlimited"])
        self.overage_allowed = bool(row["overage_allowed"])
        self.entries = [e for e in row["breakdown"] or [] if isinstance(e, dict)]
        self.due_at: int | None = None  # epoch ms of the earliest reset that is due
        stored = amount(row["remaining"])
        self.remaining_shown = row["remaining"]
        self.overage = _ZERO
        gained = _ZERO
        any_entry_due = False
        for entry in self.entries:
            reset = entry.get("reset")
            at = reset.get("resets_at") if isinstance(reset, dict) else None
            if isinstance(at, (int, float)) and not isinstance(at, bool) and at <= now_ms:
                any_entry_due = True
                self._note_due(int(at))
                gained += _grants(entry) - amount(entry.get("remaining"))
            else:
                self.overage += _entry_overage(entry)
        next_reset = row["next_reset_at"]
        if next_reset is not None and next_reset <= now and not any_entry_due:
            # Due with no entry saying which part: the whole balance resets to its grant.
            self._note_due(int(next_reset.timestamp() * 1000))
            self.overage = _ZERO
            self.remaining = number(row["granted"], stored)
        else:
            self.remaining = stored + gained
        if self.due_at is not None:
            self.remaining_shown = float(self.remaining)

    def _note_due(self, at: int) -> None:
        self.due_at = at if self.due_at is None else min(self.due_at, at)


def judge(balance: BalanceState, feature_id: str, required: Decimal, controls: dict[str, Any],
          subscriptions: Any, properties: dict[str, Any] | None = None,
          member: tuple[str, Decimal] | None = None) -> Reason:
    """Whether ``balance`` (of ``feature_id``) allows ``required``, as apiBalanceToAllowed.ts.

    ``controls`` are the subject's billing controls (an entity's merged with its
    customer's: ``merge_controls``); ``subscriptions`` its ``subscriptions`` as JSON text
    (decoded only for a percentage spend limit). ``member`` is the checked feature and its
    credit cost when ``balance`` is a credit system's answering for it: the member's own
    usage limits then gate too, converted into credits."""
    if balance.unlimited:
        return Reason.UNLIMITED
    if required < 0:
        return Reason.NEGATIVE_REQUIRED
    headroom = _usage_limit_headroom(controls.get("usage_limits"), feature_id, properties, member)
    if headroom is not None and required > headroom:
        return Reason.USAGE_LIMIT
    have = max(_ZERO, balance.remaining)  # Autumn's remaining is never below zero
    enough = Reason.BALANCE_REMAINING if have >= required else None
    control = _first(controls.get("overage_allowed"), feature_id)
    if control is not None and control.get("enabled", False) is False:
        return enough or Reason.BALANCE_EXHAUSTED
    if balance.overage_allowed or (control is not None and control.get("enabled") is True):
        available, capped_by = _available_overage(balance, controls.get("spend_limits"), feature_id,
                                                  subscriptions)
        if available is None or available + have >= required:
            return enough or Reason.OVERAGE_ALLOWED
        return capped_by
    return enough or Reason.BALANCE_EXHAUSTED


def merge_controls(own: dict[str, Any], inherited: dict[str, Any]) -> dict[str, Any]:
    """An entity's billing controls for a check: its own entries, then its customer's for
    what it has none of (per feature; a usage limit per feature and filter), as
    mergeCustomerBillingControlsForCheck.ts. Plan-level controls the server adds last are
    not in the mirror's answers unless Autumn lists them there."""
    if not inherited:
        return own
    merged = dict(own)
    for key, identity in (("spend_limits", _feature_of), ("overage_allowed", _feature_of),
                          ("usage_limits", _usage_limit_identity)):
        ours = own.get(key)
        mine = [e for e in ours if isinstance(e, dict)] if isinstance(ours, list) else []
        theirs = inherited.get(key)
        if not isinstance(theirs, list):
            continue
        seen = {identity(e) for e in mine} - {None}
        for entry in theirs:
            entry_id = identity(entry) if isinstance(entry, dict) else None
            if entry_id is None or entry_id in seen:
                continue
            seen.add(entry_id)
            mine.append(entry)
        merged[key] = mine
    return merged


def _feature_of(entry: dict) -> str | None:
    return entry.get("feature_id") or None


def _usage_limit_identity(entry: dict) -> str | None:
    feature_id = entry.get("feature_id")
    if not feature_id:
        return None
    found = entry.get("filter")
    conditions = found.get("properties") if isinstance(found, dict) else None
    if not isinstance(conditions, dict):
        conditions = {}
    pairs = sorted((str(k), _js_str(v)) for k, v in conditions.items())
    return f"{feature_id}|{'&'.join(f'{k}={v}' for k, v in pairs)}"


def _entry_overage(entry: dict) -> Decimal:
    """What a breakdown entry has used past its grants. Autumn keeps this as the entry's
    ``overage`` (internal: not in the public answer); without it, usage beyond the grants."""
    if "overage" in entry:
        return amount(entry.get("overage"))
    return max(_ZERO, amount(entry.get("usage")) - _grants(entry))


def _grants(entry: dict) -> Decimal:
    return amount(entry.get("included_grant")) + amount(entry.get("prepaid_grant"))


def _available_overage(balance: BalanceState, spend_limits: Any, feature_id: str,
                       subscriptions: Any) -> tuple[Decimal | None, Reason]:
    """How much more than the balance the subject may use, and what caps it (None: no cap).

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
            caps.append(amount(price.get("max_purchase")))
    if not caps:
        return None, Reason.MAX_PURCHASE
    return max(_ZERO, sum(caps, _ZERO) - balance.overage), Reason.MAX_PURCHASE


def _spend_cap(limit: dict, balance: BalanceState, subscriptions: Any) -> Decimal | None:
    """A spend limit's overage cap in units: absolute, or a percentage of what the main
    (not add-on) plans of ``subscriptions`` (JSON text, decoded only here) grant; None
    when they grant nothing: no cap from it."""
    value = limit.get("overage_limit")
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if limit.get("limit_type") != "usage_percentage":
        return number(value)
    decoded = decoded_json(subscriptions)
    items = decoded if isinstance(decoded, list) else []
    plans = {item.get("plan_id") for item in items if isinstance(item, dict) and not item.get("add_on")}
    allowance = sum((amount(e.get("included_grant")) for e in balance.entries
                     if e.get("plan_id") in plans), _ZERO)
    if allowance == 0:
        return None
    return number(value) / 100 * allowance


def _usage_limit_headroom(usage_limits: Any, feature_id: str, properties: dict[str, Any] | None,
                          member: tuple[str, Decimal] | None) -> Decimal | None:
    """The least room left among the usage limits that apply (enabled, their filter
    matching ``properties``): those on ``feature_id``, and for a credit system answering
    for a member, those on the member times its credit cost; None when none does."""
    headroom = None
    for limit in usage_limits if isinstance(usage_limits, list) else ():
        if not (isinstance(limit, dict) and limit.get("enabled") is not False
                and _filter_matches(limit.get("filter"), properties)):
            continue
        if limit.get("feature_id") == feature_id:
            scale = Decimal(1)
        elif member is not None and limit.get("feature_id") == member[0]:
            scale = member[1]
        else:
            continue
        room = max(_ZERO, amount(limit.get("limit")) - amount(limit.get("usage"))) * scale
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


def controls_of(text: Any) -> dict[str, Any]:
    """Billing controls from their JSON text (as the check's query picks it out); {} when
    absent or not an object."""
    controls = decoded_json(text)
    return controls if isinstance(controls, dict) else {}


def decoded_json(text: Any) -> Any:
    if not isinstance(text, (str, bytes)):
        return text
    try:
        return jsonlib.loads(text)
    except ValueError:
        return None


def _first(entries: Any, feature_id: str) -> dict | None:
    """The subject's entry for the feature, else its plan's: Autumn lists them so."""
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, dict) and entry.get("feature_id") == feature_id:
            return entry
    return None


def amount(value: Any) -> Decimal:
    """A count from the JSON as a decimal; 0 when absent or not a number."""
    return number(value, _ZERO)


def number(value: Any, default: Decimal | None = None) -> Decimal:
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
