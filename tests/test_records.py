"""Parsing one Autumn customer object into mirror values."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from autumn_django.sync.records import RecordError, parse_customer
from autumn_django.testing import make_customers


def customer(**fields) -> dict:
    base = {"id": "cus_1", "name": "Zoë", "email": "zoe@example.com", "created_at": 1_700_000_000_123,
            "subscriptions": [], "purchases": [], "balances": {}, "flags": {}}
    return {**base, **fields}


def test_times_keep_exact_milliseconds():
    record = parse_customer(customer())
    assert record.created_at == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=timezone.utc)


def test_fractional_balances_are_kept():
    record = parse_customer(customer(balances={"ai_credits": {"granted": 100, "remaining": 87.5,
                                                              "usage": 12.5, "unlimited": False}}))
    assert record.balances[0][:4] == ("ai_credits", 100.0, 87.5, 12.5)


def test_equal_objects_hash_equal_whatever_the_key_order():
    a = customer(metadata={"x": 1, "y": 2})
    b = dict(reversed(list(customer(metadata={"y": 2, "x": 1}).items())))
    assert parse_customer(a).raw_hash == parse_customer(b).raw_hash
    assert parse_customer(a).raw_hash != parse_customer(customer(name="Other")).raw_hash


@pytest.mark.parametrize(("fields", "problem"), [
    ({"created_at": "yesterday"}, "created_at: expected epoch milliseconds, got 'yesterday'"),
    ({"created_at": None}, "created_at: missing"),
    ({"name": 42}, "name: expected a string, got 42"),
    ({"subscriptions": [{"plan_id": "pro"}]}, "subscriptions[0].status: missing"),
    ({"subscriptions": {"plan_id": "pro"}}, "subscriptions: expected a list, got dict"),
    ({"balances": {"seats": {"usage": "3"}}}, "balances.seats.usage: expected a number, got '3'"),
    ({"balances": {"seats": {"unlimited": "yes"}}}, "balances.seats.unlimited: expected true or false"),
    ({"flags": {"sso": "on"}}, "flags.sso: expected an object, got str"),
    ({"purchases": [{"plan_id": "pack", "quantity": 1.5}]}, "purchases[0].quantity: expected a whole number"),
])
def test_a_bad_field_is_named(fields, problem):
    with pytest.raises(RecordError) as caught:
        parse_customer(customer(**fields))
    assert caught.value.problem.startswith(problem)
    assert caught.value.key == ("id", "cus_1")


def test_a_customer_without_id_or_email_cannot_be_keyed():
    with pytest.raises(RecordError, match="neither an id nor an email") as caught:
        parse_customer(customer(id=None, email=None))
    assert caught.value.key is None


def test_idless_customers_are_keyed_by_email():
    assert parse_customer(customer(id=None)).key == ("email", "zoe@example.com")


def test_every_generated_customer_parses():
    for data in make_customers(500, seed=11):
        record = parse_customer(data)
        assert len(record.subscriptions) == len(data["subscriptions"])
        assert len(record.balances) == len(data["balances"])
