"""The 1% change between the re-syncs, through the stand-in's control channel.

What billing does to customers (balance usage, subscriptions) plus profile edits, made
through ``/_standin/*`` (the only way to change balances and subscriptions of a stand-in
running in another process): 1% of the customers changed, a few deleted; 1% of the
entities changed (a new name, or an add-on subscription of their own), a few deleted.

Entity counts to expect are read, not assumed: an entity's answer holds its customer's
customer-level plans, balances and flags (``testing/entities.py``, ``compose``), so a
changed customer changes its entities' answers too, and a deleted customer takes its
entities with it. The answers of every entity of the customers touched are read before
and after the changes; the re-sync must update exactly those that differ and delete
exactly those that are gone. (The stand-in's customers do not fold their entities in, so
entity changes leave the customers' counts as they are.)
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from benchmarks.common import SEED, say
from benchmarks.standin import control

CHANGE_SHARE = 0.01
DELETE_SHARE = 0.0005  # "a few deleted": 50 of 100,000
ENTITY_ADD_ON = "bench_entity_addon"


def change_data(api_url: str, customers: int) -> dict[str, Any]:
    """Change 1% of the customers and of the entities, delete a few of each; returns the
    counts the re-sync must report and a summary."""
    import requests

    from autumn_django.models import Customer, Entity

    rng = random.Random(SEED)
    ids = list(Customer.objects.filter(autumn_id__isnull=False).order_by("pk")
               .values_list("autumn_id", flat=True))
    n_change = max(1, round(customers * CHANGE_SHARE))
    n_delete = max(1, round(customers * DELETE_SHARE))
    picked = rng.sample(ids, n_change + n_delete)
    changed, deleted = picked[:n_change], picked[n_change:]
    gone = set(deleted)
    entities = [pair for pair in Entity.objects.filter(autumn_id__isnull=False, deleted_at__isnull=True)
                .order_by("pk").values_list("customer__autumn_id", "autumn_id") if pair[0] not in gone]
    n_entities = Entity.objects.filter(deleted_at__isnull=True).count()
    picked_entities = rng.sample(entities, min(len(entities), (max(1, round(n_entities * CHANGE_SHARE))
                                                               + max(1, round(n_entities * DELETE_SHARE)))))
    n_entity_delete = min(len(picked_entities), max(1, round(n_entities * DELETE_SHARE))) if entities else 0
    entity_changes = picked_entities[n_entity_delete:]
    entity_deletes = picked_entities[:n_entity_delete]
    now = int(time.time() * 1000)
    started = time.perf_counter()
    touched = sorted(set(picked) | {customer_id for customer_id, _ in picked_entities})
    with requests.Session() as session:
        before = _entity_answers(session, api_url, touched) if n_entities else {}
        kinds = _change_customers(session, api_url, changed, rng, now)
        entity_kinds = _change_entities(session, api_url, entity_changes, now)
        for customer_id, entity_id in entity_deletes:
            control(session, "POST", f"{api_url}/_standin/entity/delete",
                    json={"customer_id": customer_id, "entity_id": entity_id})
        for customer_id in deleted:
            control(session, "POST", f"{api_url}/_standin/delete", json={"customer_id": customer_id})
        after = _entity_answers(session, api_url, touched) if n_entities else {}
    entities_updated = sum(1 for key, answer in before.items() if key in after and after[key] != answer)
    entities_deleted = sum(1 for key in before if key not in after)
    summary = (f"{n_change:,} customers changed: " + ", ".join(f"{k} {v:,}" for k, v in kinds.items() if v)
               + f"; {n_delete:,} deleted")
    if n_entities:
        summary += (f"; {len(entity_changes):,} entities changed (" + ", ".join(
            f"{k} {v:,}" for k, v in entity_kinds.items() if v) + f"), {len(entity_deletes):,} deleted: "
            f"{entities_updated:,} entity answers differ, {entities_deleted:,} entities gone")
    say(f"  {summary} (through the stand-in's control channel, {time.perf_counter() - started:.1f} s)")
    return {"changed": n_change, "deleted": n_delete, "via": "stand-in control channel", "summary": summary,
            **{f"changed_{_slug(k)}": v for k, v in kinds.items()},
            "entities_changed": len(entity_changes), "entities_deleted_directly": len(entity_deletes),
            **{f"entities_changed_{_slug(k)}": v for k, v in entity_kinds.items()},
            "expect_entities_updated": entities_updated, "expect_entities_deleted": entities_deleted}


def _entity_answers(session: Any, api_url: str, customer_ids: list[str]) -> dict[tuple, str]:
    """Every entity of these customers as the API answers it, canonical JSON by key (an
    entity without an id is keyed by its place among its customer's id-less ones)."""
    out = {}
    for customer_id in customer_ids:
        listed = control(session, "GET", f"{api_url}/_standin/entity",
                         params={"customer_id": customer_id, "env": "sandbox"})["list"]
        nameless = 0
        for entity in listed:
            key = entity.get("id")
            if key is None:
                key, nameless = f"<no id #{nameless}>", nameless + 1
            out[(customer_id, key)] = json.dumps(entity, sort_keys=True)
    return out


def _change_customers(session: Any, api_url: str, changed: list[str], rng: random.Random,
                      now: int) -> dict[str, int]:
    """Each customer read whole, changed, and written back in one batched ``modify_many``."""
    kinds: dict[str, int] = dict.fromkeys(CHANGE_KINDS, 0)
    changes = []
    for i, customer_id in enumerate(changed):
        current = control(session, "GET", f"{api_url}/_standin/customer", params={"customer_id": customer_id})
        kind, fields = _change_for(i, current, rng, now)
        kinds[kind] += 1
        changes.append({"customer_id": customer_id, "fields": fields})
    control(session, "POST", f"{api_url}/_standin/modify_many", json={"changes": changes})
    return kinds


def _change_entities(session: Any, api_url: str, picked: list[tuple[str, str]], now: int) -> dict[str, int]:
    """Half get a new name, half an add-on subscription of their own (``scope: "entity"``:
    the answer's own subscriptions are those; the customer's are composed in when served)."""
    kinds = {"name": 0, "subscription added": 0}
    for i, (customer_id, entity_id) in enumerate(picked):
        address = {"customer_id": customer_id, "entity_id": entity_id}
        if i % 2 == 0:
            fields: dict[str, Any] = {"name": f"Renamed entity {i}"}
            kinds["name"] += 1
        else:
            current = control(session, "GET", f"{api_url}/_standin/entity", params=address)
            own = [s for s in current.get("subscriptions") or [] if s.get("scope") == "entity"]
            fields = {"subscriptions": [*own, {
                "id": f"sub_bench_entity_{i:06d}", "plan_id": ENTITY_ADD_ON, "status": "active",
                "auto_enable": False, "add_on": True, "past_due": False, "quantity": 1, "started_at": now,
                "current_period_start": now, "current_period_end": now + PERIOD_MS, "canceled_at": None,
                "expires_at": None, "trial_ends_at": None, "scope": "entity"}]}
            kinds["subscription added"] += 1
        control(session, "POST", f"{api_url}/_standin/entity/modify", json={**address, "fields": fields})
    return kinds


# What a change does, by kind; each always alters the customer's JSON (the re-sync must
# count exactly n_change updated).
CHANGE_KINDS = ("balance usage", "subscription added", "subscription status", "subscription period",
                "name", "metadata")
BENCH_ADD_ONS = ("bench_addon_seats", "bench_addon_storage", "bench_addon_support")
PERIOD_MS = 30 * 86_400_000


def _slug(kind: str) -> str:
    return kind.replace(" ", "_")


def _change_for(i: int, current: dict[str, Any], rng: random.Random, now: int) -> tuple[str, dict[str, Any]]:
    """The ``(kind, fields)`` of the i-th change: top-level fields replaced whole."""
    third, turn = i % 3, i // 3
    if third == 0:
        return "balance usage", {"balances": _record_usage(current.get("balances") or {}, rng)}
    if third == 1:
        kind, subs = _change_subscriptions(current.get("subscriptions") or [], turn, now)
        return kind, {"subscriptions": subs}
    if turn % 2 == 0:
        return "name", {"name": f"Renamed customer {i}"}
    return "metadata", {"metadata": {**(current.get("metadata") or {}), "bench_last_seen": now // 1000 + i}}


def _record_usage(balances: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Usage of one metered balance grows by a fractional amount (and its first breakdown
    entry with it), as a ``track`` call would; a customer without one gets a new balance."""
    delta = rng.randint(0, 49) + rng.choice((0.25, 0.5, 0.75))
    metered = sorted(f for f, b in balances.items() if isinstance(b, dict) and not b.get("unlimited"))
    if not metered:
        return {**balances, "bench_credits": {
            "feature_id": "bench_credits", "granted": 100, "remaining": 100 - delta, "usage": delta,
            "unlimited": False, "overage_allowed": False, "max_purchase": None, "next_reset_at": None,
            "breakdown": []}}
    feature = rng.choice(metered)
    balance = dict(balances[feature])
    balance["usage"] = (balance.get("usage") or 0) + delta
    balance["remaining"] = (balance.get("remaining") or 0) - delta
    entries = [dict(e) for e in balance.get("breakdown") or []]
    if entries:
        entries[0]["usage"] = (entries[0].get("usage") or 0) + delta
        entries[0]["remaining"] = (entries[0].get("remaining") or 0) - delta
        balance["breakdown"] = entries
    return {**balances, feature: balance}


def _change_subscriptions(subs: list[dict[str, Any]], turn: int, now: int) -> tuple[str, list[dict]]:
    """Half the time an add-on is attached; a quarter, a status change (a scheduled plan
    starts and the base plan it replaces ends, or else a payment fails: past due); a
    quarter, the first subscription renews into its next period."""
    subs = [dict(s) for s in subs]
    if turn % 2 == 0 or not subs:
        plan = BENCH_ADD_ONS[turn % len(BENCH_ADD_ONS)]
        subs.append({"id": f"sub_bench_{turn:06d}", "plan_id": plan, "status": "active",
                     "auto_enable": False, "add_on": True, "past_due": False, "quantity": 1,
                     "started_at": now, "current_period_start": now,
                     "current_period_end": now + PERIOD_MS, "canceled_at": None, "expires_at": None,
                     "trial_ends_at": None})
        return "subscription added", subs
    if turn % 4 == 1:
        scheduled = next((s for s in subs if s.get("status") == "scheduled"), None)
        if scheduled is None:
            subs[0]["past_due"] = not subs[0].get("past_due")
            return "subscription status", subs
        start = scheduled.get("started_at") or now
        scheduled.update(status="active", current_period_start=start, current_period_end=start + PERIOD_MS)
        ended = next((s for s in subs if s.get("status") == "active" and not s.get("add_on")), None)
        return "subscription status", [s for s in subs if s is not ended]  # ended ones are not returned
    start = subs[0].get("current_period_end") or now
    subs[0].update(current_period_start=start, current_period_end=start + PERIOD_MS)
    return "subscription period", subs
