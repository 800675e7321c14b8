"""The raw JSON columns (``json`` on PostgreSQL, text elsewhere) behave as JSONField for
what the app and its users do with them through the ORM."""

import pytest
from django.db import connection

from autumn_django.models import Balance, Customer
from autumn_django.sync import sync_all_customers

pytestmark = pytest.mark.django_db(transaction=True)


def test_orm_reads_writes_and_filters_raw_json(make_standin):
    make_standin(5)
    sync_all_customers()
    row = Customer.objects.exclude(autumn_id=None).first()
    payload = {**row.raw, "metadata": {"tier": "gold", "seats": 3, "nested": {"ok": True}}}

    Customer.objects.filter(pk=row.pk).update(raw=payload)

    assert Customer.objects.get(pk=row.pk).raw == payload
    assert list(Customer.objects.filter(raw__metadata__tier="gold").values_list("pk", flat=True)) == [row.pk]
    balance = Balance.objects.create(customer=row, feature_id="test_only_feature")
    balance.breakdown = [{"id": "b1", "usage": 12.5, "reset": None}]
    balance.save()
    assert Balance.objects.get(pk=balance.pk).breakdown == [{"id": "b1", "usage": 12.5, "reset": None}]


def test_json_lookups_work_on_the_raw_columns(make_standin):
    make_standin(5)
    sync_all_customers()
    row = Customer.objects.exclude(autumn_id=None).first()
    Customer.objects.filter(pk=row.pk).update(raw={**row.raw, "metadata": {"tier": "gold", "n": 3}})
    gold = Customer.objects.filter(pk=row.pk)
    assert gold.filter(raw__has_key="metadata").exists()
    if connection.features.supports_json_field_contains:  # Django has no SQLite version of it
        assert gold.filter(raw__contains={"metadata": {"tier": "gold"}}).exists()
    assert gold.filter(raw__metadata__n__gte=3).exists()
    assert gold.filter(raw__metadata__tier__icontains="GOL").exists()
    assert not gold.filter(raw__metadata__tier="silver").exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL storage setting")
def test_raw_json_is_compressed_with_lz4_where_the_server_has_it():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                       "WHERE name = 'default_toast_compression'")
        (available,) = cursor.fetchone()
        cursor.execute("SELECT attcompression FROM pg_attribute "
                       "WHERE attrelid = %s::regclass AND attname = 'raw'", [Customer._meta.db_table])
        (method,) = cursor.fetchone()
    assert method == ("l" if available else "")
