"""Fill the columns 0016 added from the customers' stored JSON: ``scope`` of subscriptions
and purchases, and ``License`` rows (seat pools).

Why a backfill: the sync rewrites a customer only when Autumn's JSON for it changed (the
stored hash), so customers mirrored before this release would keep ``scope="customer"``
on their entities' plans and no seat pools until Autumn next changed them. Everything
needed is in ``Customer.raw``, the JSON as received.

Customers are read in batches through ``.iterator()`` (100,000 of them never sit in memory
at once); only those whose JSON has an entity-level plan or a seat pool cost more queries.
Matching follows the sync's own columns: a subscription by its Autumn id, or by plan and
start where Autumn sent no id; a purchase by plan and start. A customer that already has
``License`` rows (written by a sync of this release) keeps them, so running it again
changes nothing. Entries the sync would refuse (no ``license_plan_id``, a bad number) are
left out here rather than failing the upgrade: the next sync of that customer reports them.
Going back to 0016 leaves the data: 0016's own reverse drops those columns and table.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from django.conf import settings
from django.db import migrations
from django.utils import timezone as django_timezone

BATCH = 1000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def backfill(apps, schema_editor) -> None:
    using = schema_editor.connection.alias
    customer_model = apps.get_model("autumn_django", "Customer")
    rows = customer_model.objects.using(using).order_by("pk").values_list("pk", "raw")
    batch: list[tuple[int, dict]] = []
    for pk, raw in rows.iterator(chunk_size=BATCH):
        if isinstance(raw, dict):
            batch.append((pk, raw))
        if len(batch) == BATCH:
            _backfill_batch(apps, using, batch)
            batch = []
    if batch:
        _backfill_batch(apps, using, batch)


def _backfill_batch(apps, using: str, batch: list[tuple[int, dict]]) -> None:
    _mark_entity_scope(apps, using, batch)
    _create_licenses(apps, using, batch)


def _mark_entity_scope(apps, using: str, batch: list[tuple[int, dict]]) -> None:
    for model_name, key in (("Subscription", "subscriptions"), ("Purchase", "purchases")):
        wanted: dict[int, list[dict]] = {}
        for pk, raw in batch:
            entries = raw.get(key)
            scoped = [e for e in entries if isinstance(e, dict) and e.get("scope") == "entity"] \
                if isinstance(entries, list) else []
            if scoped:
                wanted[pk] = scoped
        if not wanted:
            continue
        model = apps.get_model("autumn_django", model_name)
        manager = model.objects.using(using)
        with_ids = model_name == "Subscription"
        fields = ["pk", "customer_id", "plan_id", "started_at"] + (["subscription_id"] if with_ids else [])
        by_id: dict[tuple[int, str], list[int]] = {}
        by_start: dict[tuple[int, str, datetime | None], list[int]] = {}
        for pk, customer_id, plan_id, started_at, *autumn_id in manager.filter(
                customer_id__in=list(wanted)).values_list(*fields):
            if autumn_id and autumn_id[0] is not None:
                by_id.setdefault((customer_id, autumn_id[0]), []).append(pk)
            else:
                by_start.setdefault((customer_id, plan_id, _aware(started_at)), []).append(pk)
        marked: list[int] = []
        for customer_id, entries in wanted.items():
            for entry in entries:
                autumn_id = entry.get("id") if with_ids else None
                if isinstance(autumn_id, str):
                    marked += by_id.get((customer_id, autumn_id), [])
                else:
                    start = _time(entry.get("started_at"))
                    marked += by_start.get((customer_id, entry.get("plan_id"), start), [])
        for at in range(0, len(marked), BATCH):
            manager.filter(pk__in=marked[at:at + BATCH]).update(scope="entity")


def _create_licenses(apps, using: str, batch: list[tuple[int, dict]]) -> None:
    pools = {pk: raw["licenses"] for pk, raw in batch
             if isinstance(raw.get("licenses"), list) and raw["licenses"]}
    if not pools:
        return
    license_model = apps.get_model("autumn_django", "License")
    manager = license_model.objects.using(using)
    have = set(manager.filter(customer_id__in=list(pools)).values_list("customer_id", flat=True))
    new = []
    for customer_id, entries in pools.items():
        if customer_id in have:
            continue
        for entry in entries:
            plan_id = entry.get("license_plan_id") if isinstance(entry, dict) else None
            if not isinstance(plan_id, str) or len(plan_id) > 255:
                continue
            new.append(license_model(
                customer_id=customer_id, license_plan_id=plan_id,
                parent_plan_id=_text(entry.get("parent_plan_id"), 255),
                license_plan_name=_text(entry.get("license_plan_name")),
                granted=_number(entry.get("granted")), usage=_number(entry.get("usage")),
                remaining=_number(entry.get("remaining")), paid_quantity=_number(entry.get("paid_quantity")),
            ))
    manager.bulk_create(new, batch_size=500)


def _text(value, limit: int | None = None) -> str | None:
    if not isinstance(value, str) or (limit is not None and len(value) > limit):
        return None
    return value


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _time(value) -> datetime | None:
    """Autumn's epoch milliseconds as the sync stores them (fieldreaders._time)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return EPOCH + timedelta(milliseconds=value)
    except (OverflowError, ValueError):
        return None


def _aware(value: datetime | None) -> datetime | None:
    # Without USE_TZ the database gives naive times in the project's time zone.
    if value is not None and not settings.USE_TZ and django_timezone.is_naive(value):
        return django_timezone.make_aware(value)
    return value


class Migration(migrations.Migration):

    dependencies = [
        ("autumn_django", "0016_entities_licenses_catalogue"),
    ]

    operations = [
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True),
    ]
