"""Feature checks answered from the mirror, without calling Autumn.

``has_feature(request.user, "sso")`` reads the user's customer in the configured key's
environment: a metered feature is usable when its balance is unlimited, has some left, or
allows overage; a boolean feature when its flag is there and has not expired. One query.

The mirror is as fresh as its last sync or webhook, so use it to gate UI and cheap actions.
Before consuming a metered feature, ask Autumn (``check`` / ``track``): only Autumn knows
the balance at this instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from django.db.models import FilteredRelation, Q
from django.utils import timezone

from .conf import autumn_settings, env_for_key
from .models import Customer


class Reason(str, Enum):
    """Why a check came out the way it did."""

    UNLIMITED = "unlimited"
    BALANCE_REMAINING = "balance_remaining"
    OVERAGE_ALLOWED = "overage_allowed"
    FLAG = "flag"
    BALANCE_EXHAUSTED = "balance_exhausted"
    FLAG_EXPIRED = "flag_expired"
    NO_FEATURE = "no_feature"  # the customer has neither a balance nor a flag for it
    NO_CUSTOMER = "no_customer"  # anonymous, or no customer linked to the user in this env
    CUSTOMER_DELETED = "customer_deleted"  # Autumn no longer has the customer


ALLOWING = frozenset({Reason.UNLIMITED, Reason.BALANCE_REMAINING, Reason.OVERAGE_ALLOWED, Reason.FLAG})

MESSAGES = {
    Reason.BALANCE_EXHAUSTED: "You have no {feature} left.",
    Reason.FLAG_EXPIRED: "Your access to {feature} has expired.",
    Reason.NO_FEATURE: "Your plan does not include {feature}.",
    Reason.NO_CUSTOMER: "Your account has no billing plan yet.",
    Reason.CUSTOMER_DELETED: "Your account has no billing plan.",
}


@dataclass(frozen=True)
class FeatureCheck:
    """The answer to "may this user use ``feature_id``?"; true in a boolean context when
    allowed. ``remaining`` is the balance left for a metered feature (None otherwise)."""

    feature_id: str
    reason: Reason
    remaining: float | None = None

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
    """The environment this project reads: the configured secret key's (sandbox or live)."""
    return env_for_key(autumn_settings.SECRET_KEY or "")


def check_feature(user: Any, feature_id: str) -> FeatureCheck:
    """Whether ``user``'s Autumn customer may use ``feature_id``, and why, from the mirror.

    One query: the user's customer in the key's env, joined to its balance and flag for this
    feature (each unique per customer, so at most one row comes back).
    """
    if user is None or not getattr(user, "is_authenticated", False):
        return FeatureCheck(feature_id, Reason.NO_CUSTOMER)
    row = (
        Customer.objects.filter(env=mirror_env(), user=user)
        .annotate(
            balance=FilteredRelation("balances", condition=Q(balances__feature_id=feature_id)),
            flag=FilteredRelation("flags", condition=Q(flags__feature_id=feature_id)),
        )
        .values("deleted_at", "balance__pk", "balance__unlimited", "balance__remaining",
                "balance__overage_allowed", "flag__pk", "flag__expires_at")
        [:1]
    )
    found = next(iter(row), None)
    if found is None:
        return FeatureCheck(feature_id, Reason.NO_CUSTOMER)
    if found["deleted_at"] is not None:
        return FeatureCheck(feature_id, Reason.CUSTOMER_DELETED)
    if found["balance__pk"] is not None:
        return _from_balance(feature_id, found)
    if found["flag__pk"] is not None:
        expires_at = found["flag__expires_at"]
        if expires_at is not None and expires_at <= timezone.now():
            return FeatureCheck(feature_id, Reason.FLAG_EXPIRED)
        return FeatureCheck(feature_id, Reason.FLAG)
    return FeatureCheck(feature_id, Reason.NO_FEATURE)


def has_feature(user: Any, feature_id: str) -> bool:
    """True when ``user``'s customer may use ``feature_id``, per the mirror."""
    return check_feature(user, feature_id).allowed


def _from_balance(feature_id: str, row: dict[str, Any]) -> FeatureCheck:
    remaining = row["balance__remaining"]
    if row["balance__unlimited"]:
        # An unlimited balance's counts carry no meaning: do not report them.
        return FeatureCheck(feature_id, Reason.UNLIMITED)
    if remaining is not None and remaining > 0:
        return FeatureCheck(feature_id, Reason.BALANCE_REMAINING, remaining)
    if row["balance__overage_allowed"]:
        return FeatureCheck(feature_id, Reason.OVERAGE_ALLOWED, remaining)
    return FeatureCheck(feature_id, Reason.BALANCE_EXHAUSTED, remaining)
