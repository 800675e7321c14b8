"""The mirror's lookups by owner use the owners' partial indexes (models.children._owner_indexes,
_owner_feature_uniques), on both databases: a row's index entries are only its owner's,
and finding a customer's or an entity's rows must not turn into a scan."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from autumn_django.models import Balance, Flag, Purchase, Subscription

pytestmark = pytest.mark.django_db

OWNER_INDEXES = {
    (Subscription, "customer"): "autumn_sub_customer_idx",
    (Subscription, "entity"): "autumn_sub_entity_idx",
    (Purchase, "customer"): "autumn_purchase_customer_idx",
    (Purchase, "entity"): "autumn_purchase_entity_idx",
    (Balance, "customer"): "autumn_balance_feature_uniq",
    (Balance, "entity"): "autumn_balance_entity_feature_uniq",
    (Flag, "customer"): "autumn_flag_feature_uniq",
    (Flag, "entity"): "autumn_flag_entity_feature_uniq",
}


@pytest.mark.parametrize(("model", "owner"), list(OWNER_INDEXES), ids=lambda v: getattr(v, "__name__", v))
@pytest.mark.parametrize("lookup", ["exact", "in"])
def test_rows_are_found_by_owner_through_its_partial_index(model, owner, lookup):
    value = 7 if lookup == "exact" else [7, 8, 9]
    rows = model.objects.filter(**{f"{owner}_id__{lookup}": value})
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:  # an empty table is cheaper to scan: forbid it
                cursor.execute("SET LOCAL enable_seqscan = off")
        plan = rows.explain()
    assert OWNER_INDEXES[model, owner] in plan, plan


def test_a_row_is_in_its_owners_index_only():
    if connection.vendor == "postgresql":
        query = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s"
    else:
        query = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s"
    with connection.cursor() as cursor:
        for (model, owner), name in OWNER_INDEXES.items():
            cursor.execute(query, [model._meta.db_table])
            definition = dict(cursor.fetchall())[name]
            _, where, condition = definition.partition(" WHERE ")
            assert where and f"{owner}_id" in condition and "IS NOT NULL" in condition, definition
