"""Feature checks answered from the mirror, without calling Autumn.

``check_feature(request, "ai_tokens", required=5)`` reads the customer of the request's owner
(``AUTUMN_OWNER_FROM_REQUEST``; an owner, a ``Customer`` or an ``Entity`` may be given
instead, and ``entity_id=`` picks one of the customer's entities) in the project's
environment and answers as Autumn's ``check`` would for that customer or entity as the
mirror holds it (autumn-api.md, "Local feature checks: Autumn's rules"): a boolean feature
is usable when its flag is there and has not expired; a metered one by its balance, the
required amount (default 1), overage and its caps, and the billing controls. A feature
that draws on a credit system is judged on the credit system's balance at its credit cost
(the org's catalogue, ``Feature`` rows). One query.

Resets: Autumn resets balances lazily, so a balance whose reset time has passed still
shows last period's usage until someone reads the customer through ``customers.get``. A
check never denies because of such a balance: it counts as reset to its grant, and a
refresh of that customer (an entity's: its customer's) is queued, once per customer and
reset time.

The mirror is as fresh as its last sync or webhook, so use it to gate UI and cheap actions.
Before consuming a metered feature, ask Autumn (``check`` / ``track``): only Autumn knows
the balance at this instant.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.utils import timezone

from . import feature_rows
from .allowance import (
    ALLOWING,
    MESSAGES,
    BalanceState,
    Reason,
    controls_of,
    decoded_json,
    judge,
    merge_controls,
    number,
)
from .conf import project_env
from .models import Customer, Entity
from .owners import customer_lookup

__all__ = ["FeatureCheck", "Reason", "check_feature", "has_feature", "mirror_env"]

logger = logging.getLogger(__name__)

# How long the note "this customer's refresh for this reset is queued" is kept: the
# refresh lands in seconds; a failed one is left to the next full sync, not retried per check.
REFRESH_NOTE_SECONDS = 24 * 3600


@dataclass(frozen=True)
class FeatureCheck:
    """The answer to "may this user use ``feature_id``?"; true in a boolean context when
    allowed. ``remaining`` is the balance left for a metered feature (None otherwise),
    counting a balance whose reset time has passed as reset (``reset_due``).

    When a credit system's balance answered for ``feature_id`` (a member of it),
    ``credit_system`` names it, ``remaining`` is in its credits and ``credits_required``
    is the required amount times the member's credit cost."""

    feature_id: str
    reason: Reason
    remaining: float | None = None
    reset_due: bool = False
    credit_system: str | None = None
    credits_required: float | None = None

    @property
    def allowed(self) -> bool:
        return self.reason in ALLOWING

    @property
    def message(self) -> str:
        """A sentence for the user when not allowed (empty when allowed)."""
        return MESSAGES.get(self.reason, "").format(feature=self.credit_system or self.feature_id)

    def __bool__(self) -> bool:
        return self.allowed


def mirror_env() -> str:
    """The environment this project runs in and reads: ``AUTUMN_ENV`` (by default "live"
    when a live key is configured, else "sandbox")."""
    return project_env()


def check_feature(subject: Any, feature_id: str, required: float = 1, *,
                  properties: dict[str, Any] | None = None, entity_id: str | None = None) -> FeatureCheck:
    """Whether ``subject`` may use ``required`` of ``feature_id`` now, and why, from the
    mirror, as Autumn's ``check`` answers it.

    ``subject`` is a request (its owner: ``AUTUMN_OWNER_FROM_REQUEST``), an owner (an
    instance of ``AUTUMN_CUSTOMER_OWNER_MODEL``: by default a user, so ``request.user``
    works), a ``Customer``, or an ``Entity``. ``entity_id`` (not with an ``Entity``) checks
    the entity with that Autumn id of the subject's customer instead, as ``check`` with an
    ``entity_id``. ``properties`` are the event properties a filtered usage limit matches
    against (as ``check`` takes them).

    One query: the customer (or entity) joined to its balances for the feature and for the
    credit systems that list it (the catalogue is read inside the query), and to its flag
    for the feature, with the billing controls picked out of the JSON only when there is a
    balance to judge.
    """
    wanted = number(required)  # a TypeError for what is not a number, before any query
    if entity_id is not None and (not isinstance(entity_id, str) or not entity_id):
        raise TypeError(f"entity_id must be an entity's Autumn id (non-empty text), not {entity_id!r:.40}")
    if isinstance(subject, Entity):
        if entity_id is not None:
            raise TypeError("Pass an Entity or entity_id=, not both.")
        if subject.pk is None:
            return FeatureCheck(feature_id, Reason.NO_ENTITY)
        kind, env, lookup = feature_rows.ENTITY, subject.env, {"pk": subject.pk}
    else:
        lookup = customer_lookup(subject)
        if lookup is None:
            return FeatureCheck(feature_id, Reason.NO_CUSTOMER)
        env = subject.env if isinstance(subject, Customer) else mirror_env()
        kind = feature_rows.CUSTOMER if entity_id is None else feature_rows.CUSTOMER_ENTITY
    rows = feature_rows.fetch(kind, env, feature_id, entity_id, lookup)
    if not rows:
        missing = Reason.NO_ENTITY if kind is feature_rows.ENTITY else Reason.NO_CUSTOMER
        return FeatureCheck(feature_id, missing)
    found = rows[0]
    if found["c_deleted"] is not None:  # an entity of a deleted customer is gone with it
        return FeatureCheck(feature_id, Reason.CUSTOMER_DELETED)
    if kind is not feature_rows.CUSTOMER:
        if found["e_pk"] is None:
            return FeatureCheck(feature_id, Reason.NO_ENTITY)
        if found["e_deleted"] is not None:
            return FeatureCheck(feature_id, Reason.ENTITY_DELETED)
    now = timezone.now()
    result, due_at = _answer(feature_id, wanted, rows, properties, now)
    if due_at is not None and found["c_id"] and env == mirror_env():
        _queue_refresh(env, found["c_id"], due_at)
    return result


def has_feature(subject: Any, feature_id: str, required: float = 1, *,
                properties: dict[str, Any] | None = None, entity_id: str | None = None) -> bool:
    """True when ``subject`` (a request, an owner, a ``Customer`` or an ``Entity``; with
    ``entity_id``, that entity of its customer) may use ``required`` of ``feature_id``, per
    the mirror."""
    return check_feature(subject, feature_id, required, properties=properties, entity_id=entity_id).allowed


# -- which balance answers ------------------------------------------------------------------
# Followed from Autumn's open-source server (github.com/useautumn/autumn), read, not copied:
#   server/src/internal/balances/check/getCheckDataV2.ts (the feature and the credit systems
#   that list it, server/src/internal/features/creditSystemUtils.ts getCreditSystemsFromFeature:
#   type credit_system only, in catalogue order, not the feature itself; with an entity_id
#   the subject is the entity's answer)
#   shared/api/customers/cusFeatures/utils/check/getFeatureToUseForCheck.ts (which balance)
#   server/src/internal/balances/check/getCheckResponseV2.ts (the required amount times the
#   credit cost, featureToCreditSystem; a flag of the answering feature allows outright)
#   server/src/internal/balances/check/buildEvaluationSubject.ts (an entity's billing controls
#   merged with its customer's)


def _answer(feature_id: str, required: Decimal, rows: list[dict[str, Any]],
            properties: dict[str, Any] | None, now: datetime) -> tuple[FeatureCheck, int | None]:
    """The check from the subject's rows, and the epoch ms of the earliest reset that is
    due among its balances read (None: none is), which the caller has refreshed."""
    found = rows[0]
    balances = {row["b_feature"]: row for row in rows if row["b_feature"] is not None}
    states = {fid: BalanceState(_balance_columns(row), now) for fid, row in balances.items()}
    controls: dict[str, Any] = {}
    plans = None
    if balances:
        row = next(iter(balances.values()))
        controls = merge_controls(controls_of(row["controls"]), controls_of(row.get("parent_controls")))
        plans = row["plans"]
    systems = sorted(((row["cs_rank"], fid, _credit_cost(row["cs_schema"], feature_id))
                      for fid, row in balances.items() if fid != feature_id and row["cs_rank"] is not None),
                     key=lambda system: system[0])
    due_at = min((s.due_at for s in states.values() if s.due_at is not None), default=None)

    chosen, cost = feature_id, None
    main = states.get(feature_id)
    if systems and not (main and judge(main, feature_id, required, controls, plans) in ALLOWING):
        # The main balance does not allow it: the first credit system held that does, else the
        # first held (with none held, the main balance answers). The server tries each credit
        # system with the amount in the member's units, converting only for the answer
        # (getFeatureToUseForCheck.ts).
        held = [(fid, credit_cost) for _, fid, credit_cost in systems]
        allowing = (system for system in held
                    if judge(states[system[0]], system[0], required, controls, plans) in ALLOWING)
        chosen, cost = next(allowing, held[0])
    if chosen == feature_id:
        flag_expires = found["f_expires"]
        if found["f_pk"] is not None and (flag_expires is None or flag_expires > now):
            return FeatureCheck(feature_id, Reason.FLAG), due_at
        if main is None:
            if found["f_pk"] is not None:
                return FeatureCheck(feature_id, Reason.FLAG_EXPIRED), due_at
            unknown = found["catalogued"] and not found["known"]
            return FeatureCheck(feature_id, Reason.UNKNOWN_FEATURE if unknown else Reason.NO_FEATURE), due_at
        reason = judge(main, feature_id, required, controls, plans, properties)
        remaining = None if main.unlimited else main.remaining_shown
        return FeatureCheck(feature_id, reason, remaining, main.due_at is not None), due_at
    state = states[chosen]
    credits = required * cost
    reason = judge(state, chosen, credits, controls, plans, properties, member=(feature_id, cost))
    remaining = None if state.unlimited else state.remaining_shown
    return FeatureCheck(feature_id, reason, remaining, state.due_at is not None, credit_system=chosen,
                        credits_required=float(credits)), due_at


def _balance_columns(row: dict[str, Any]) -> dict[str, Any]:
    return {"unlimited": row["b_unlimited"], "granted": row["b_granted"], "remaining": row["b_remaining"],
            "overage_allowed": row["b_overage_allowed"], "next_reset_at": row["b_next_reset_at"],
            "breakdown": row["b_breakdown"]}


def _credit_cost(schema: Any, feature_id: str) -> Decimal:
    """The member's ``credit_cost`` in a credit system's ``credit_schema`` (1 if it gives
    none that is a number: featureToCreditSystem leaves the amount as it is then)."""
    for item in decoded_json(schema) or ():
        if isinstance(item, dict) and item.get("metered_feature_id") == feature_id:
            return number(item.get("credit_cost"), Decimal(1))
    return Decimal(1)


# -- refreshing a customer whose reset came due -----------------------------------------------


def _queue_refresh(env: str, customer_id: str, due_at: int) -> None:
    """Queue ``customers.get`` of the customer (which applies its due resets; a refresh of a
    customer reads its entities too) once per customer and reset time; never fails the
    check that asked."""
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
