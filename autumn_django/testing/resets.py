"""Balance resets the way Autumn applies them: lazily (autumn-api.md, "Balance resets").

A balance with a reset interval carries ``next_reset_at`` and each breakdown entry
``reset.resets_at``. When that time has passed, the real server does not reset the balance
on the spot: ``customers.get`` (and ``get_or_create`` of an existing customer) applies
every due reset before it answers, while ``customers.list`` answers the customer as stored
and only queues a background job, which lands a little later. Until it lands, a list row
shows last period's usage and a reset time in the past.

These are the pure functions the stand-in's store uses; the switches are on
``AutumnStandIn`` (``lazy_resets``, ``reset_lands_after_ms``).
"""

from __future__ import annotations

import calendar
from datetime import datetime, timezone
from typing import Any

DAY_MS = 86_400_000
FIXED_MS = {"day": DAY_MS, "week": 7 * DAY_MS}
MONTHS = {"month": 1, "quarter": 3, "semi_annual": 6, "year": 12}
# A balance that says when it resets but not how often (no breakdown entry with an
# interval): the stand-in moves it on by a month.
DEFAULT_INTERVAL = "month"


def _is_time(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def earliest_reset(data: Any) -> int | float | None:
    """The earliest reset time (epoch ms) among the customer's balances and their
    breakdown entries, or None when nothing of it resets."""
    balances = data.get("balances") if isinstance(data, dict) else None
    if not isinstance(balances, dict):
        return None
    earliest = None
    for balance in balances.values():
        if not isinstance(balance, dict):
            continue
        at = balance.get("next_reset_at")
        if _is_time(at) and (earliest is None or at < earliest):
            earliest = at
        for entry in balance.get("breakdown") or ():
            reset = entry.get("reset") if isinstance(entry, dict) else None
            at = reset.get("resets_at") if isinstance(reset, dict) else None
            if _is_time(at) and (earliest is None or at < earliest):
                earliest = at
    return earliest


def next_reset_after(resets_at: int | float, interval: Any, now_ms: int) -> int | float:
    """``resets_at`` moved on by whole intervals until it is after ``now_ms``."""
    if interval in FIXED_MS:
        step = FIXED_MS[interval]
        return resets_at + ((now_ms - resets_at) // step + 1) * step
    months = MONTHS.get(interval, MONTHS[DEFAULT_INTERVAL])
    start = datetime.fromtimestamp(resets_at / 1000, tz=timezone.utc)
    now = datetime.fromtimestamp(now_ms / 1000, tz=timezone.utc)
    # Whole intervals, the day of the month kept where the month has it (Jan 31 -> Feb 28).
    k = max(1, ((now.year - start.year) * 12 + now.month - start.month) // months)
    while True:
        moved = _add_months(start, k * months)
        if moved.timestamp() * 1000 > now_ms:
            return round(moved.timestamp() * 1000)
        k += 1


def _add_months(moment: datetime, months: int) -> datetime:
    month0 = moment.month - 1 + months
    year, month = moment.year + month0 // 12, month0 % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _grant(entry: dict) -> float:
    granted = [entry.get(k) for k in ("included_grant", "prepaid_grant") if _is_time(entry.get(k))]
    if granted:
        return sum(granted)
    # An entry without its grants: what it had before any use.
    return (entry.get("remaining") or 0) + (entry.get("usage") or 0)


def _reset_entry(entry: Any, now_ms: int) -> Any:
    """The breakdown entry with its reset applied, if due; the same object otherwise."""
    if not isinstance(entry, dict):
        return entry
    reset = entry.get("reset")
    at = reset.get("resets_at") if isinstance(reset, dict) else None
    if not _is_time(at) or at > now_ms:
        return entry
    return {**entry, "usage": 0, "remaining": _grant(entry),
            "reset": {**reset, "resets_at": next_reset_after(at, reset.get("interval"), now_ms)}}


def reset_balance(balance: Any, now_ms: int) -> Any:
    """The balance with every due reset applied (usage back to 0, remaining back to the
    grant, reset times moved on by whole intervals, breakdown entries too); the same
    object when nothing of it is due."""
    if not isinstance(balance, dict):
        return balance
    entries = balance.get("breakdown") if isinstance(balance.get("breakdown"), list) else []
    new_entries = [_reset_entry(entry, now_ms) for entry in entries]
    entries_changed = any(new is not old for new, old in zip(new_entries, entries, strict=True))
    at = balance.get("next_reset_at")
    balance_due = _is_time(at) and at <= now_ms
    if not entries_changed and not balance_due:
        return balance
    out = dict(balance)
    timed = [e["reset"]["resets_at"] for e in new_entries if isinstance(e, dict)
             and isinstance(e.get("reset"), dict) and _is_time(e["reset"].get("resets_at"))]
    if entries_changed and timed:
        # Totals follow the entries, as the server sums them.
        out["breakdown"] = new_entries
        out["usage"] = sum(e.get("usage") or 0 for e in new_entries if isinstance(e, dict))
        out["next_reset_at"] = min(timed)
        if not out.get("unlimited") and _is_time(out.get("granted")):
            out["remaining"] = out["granted"] - out["usage"]
    else:
        # Due at the balance level with no entry saying how often: reset it whole.
        out["breakdown"] = [{**e, "usage": 0, "remaining": _grant(e)} if isinstance(e, dict) else e
                            for e in new_entries]
        out["usage"] = 0
        if not out.get("unlimited") and _is_time(out.get("granted")):
            out["remaining"] = out["granted"]
    at = out.get("next_reset_at")
    if _is_time(at) and at <= now_ms:
        out["next_reset_at"] = next_reset_after(at, DEFAULT_INTERVAL, now_ms)
    return out


def apply_due_resets(data: dict, now_ms: int) -> dict | None:
    """A new customer dict with every due reset applied, or None when none is due. The
    stored objects are not touched (the store never mutates them in place)."""
    balances = data.get("balances")
    if not isinstance(balances, dict):
        return None
    changed = {}
    for feature, balance in balances.items():
        new = reset_balance(balance, now_ms)
        if new is not balance:
            changed[feature] = new
    if not changed:
        return None
    return {**data, "balances": {**balances, **changed}}


def make_due(data: dict, at: int, feature_id: str | None = None) -> dict:
    """A new customer dict whose resetting balances (or ``feature_id``'s, whether it reset
    before or not) are due to reset at ``at``: every breakdown entry that resets, and the
    balance's ``next_reset_at``."""
    balances = data.get("balances")
    if not isinstance(balances, dict):
        raise ValueError("the customer has no balances")
    if feature_id is not None and feature_id not in balances:
        raise KeyError(feature_id)
    out = dict(balances)
    for feature, balance in balances.items():
        if (feature_id is not None and feature != feature_id) or not isinstance(balance, dict):
            continue
        if feature_id is None and earliest_reset({"balances": {feature: balance}}) is None:
            continue  # a balance that never resets stays so
        entries = [
            {**e, "reset": {**e["reset"], "resets_at": at}}
            if isinstance(e, dict) and isinstance(e.get("reset"), dict) else e
            for e in balance.get("breakdown") or []
        ]
        out[feature] = {**balance, "breakdown": entries, "next_reset_at": at}
    return {**data, "balances": out}
