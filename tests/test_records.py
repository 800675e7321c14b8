"""Parsing one Autumn customer object into mirror values."""

from __future__ import annotations

import pickle
import random
from datetime import datetime, timedelta, timezone

import pytest

from autumn_django.sync.pages.copytext import copy_line, copy_value, in_pieces
from autumn_django.sync.pages.records import (
    CHILD_FIELDS,
    LICENSE_FIELDS,
    RecordError,
    as_copy_text,
    child_rows,
    convert_times,
    parse_customer,
)
from autumn_django.sync.pages.timeforms import TIME_FORMS
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
    ({"subscriptions": [{"plan_id": "pro", "status": "active", "scope": "seat"}]},
     'subscriptions[0].scope: expected "customer" or "entity", got \'seat\''),
    ({"purchases": [{"plan_id": "pack", "scope": 1}]}, 'purchases[0].scope: expected "customer" or "entity"'),
    ({"purchases": [{"plan_id": "pack", "scope": ["entity"]}]}, "purchases[0].scope: expected"),
    ({"licenses": [{"granted": 3}]}, "licenses[0].license_plan_id: missing"),
    ({"licenses": {"seats": {}}}, "licenses: expected a list, got dict"),
    ({"licenses": [{"license_plan_id": "seat", "usage": "2"}]},
     "licenses[0].usage: expected a number, got '2'"),
    ({"licenses": ["seat"]}, "licenses[0]: expected an object, got str"),
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


@pytest.mark.parametrize("style", ["sqlite-utc", "iso"])
def test_times_parsed_straight_into_a_database_form_equal_the_converted_datetimes(style):
    data = customer(subscriptions=[{"plan_id": "pro", "status": "active", "started_at": 1_700_000_000_000,
                                    "current_period_end": 1_700_000_000_001.0}],
                    flags={"beta": {"expires_at": -86_400_000}})
    as_datetimes, direct = parse_customer(data), parse_customer(data, time_style=style)
    convert_times(as_datetimes, TIME_FORMS[style].from_datetime, style)

    assert direct.time_style == as_datetimes.time_style == style
    assert (direct.values, direct.subscriptions, direct.flags) == (
        as_datetimes.values, as_datetimes.subscriptions, as_datetimes.flags)


# Whole and fractional seconds, before the epoch and after, at the ends of a day and of
# what a datetime holds, and milliseconds sent as floats.
EDGE_MS = [0, 1, 999, 1000, -1, -999, -1000, 86_399_999, 86_400_000, -86_400_000, -86_400_001,
           1_700_000_000_000, 1_700_000_000_123, 1_709_164_800_000 - 1, 253_402_300_799_999,
           -62_135_596_800_000, 1_700_000_000_001.0, 1_700_000_000_000.5, -0.25]


@pytest.mark.parametrize("style", ["sqlite-utc", "iso"])
def test_times_as_text_equal_the_datetimes_own_text(style):
    form = TIME_FORMS[style]
    rng = random.Random(5)
    many = [rng.randrange(-10**13, 10**13) for _ in range(20_000)]
    for ms in EDGE_MS + many:
        as_datetime = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)
        assert form.from_ms(ms) == form.from_datetime(as_datetime), ms


@pytest.mark.parametrize("style", ["sqlite-utc", "iso"])
def test_a_time_no_datetime_holds_is_named(style):
    for ms in (253_402_300_800_000, -62_135_596_800_001, 10**20, float("inf"), float("nan")):
        with pytest.raises(RecordError, match=r"created_at: .* is not a usable time"):
            parse_customer(customer(created_at=ms), time_style=style)


def test_copy_text_escapes_the_formats_specials_and_writes_each_type_as_postgresql_reads_it():
    assert copy_value("a\tb\nc\rd\\e") == "a\\tb\\nc\\rd\\\\e"
    assert copy_value("plain") == "plain"
    assert [copy_value(v) for v in (None, True, False, 3, 2.5, 0.1)] == ["\\N", "t", "f", "3", "2.5", "0.1"]
    assert copy_line(("x\ty", None, False, 12.0)) == "x\\ty\t\\N\tf\t12.0"
    with pytest.raises(TypeError, match="datetime"):
        copy_value(datetime(2024, 1, 1))


def test_copy_text_goes_in_pieces_of_whole_lines_in_order():
    lines = [f"{n}\tline {n}\n" for n in range(7)]

    pieces = list(in_pieces(iter(lines), lines_per_piece=3))

    assert pieces == ["".join(lines[0:3]), "".join(lines[3:6]), lines[6]]
    assert list(in_pieces(iter([]))) == []


def test_child_rows_as_copy_text_keep_their_order_and_values():
    record = parse_customer(customer(balances={"ai": {"granted": 5, "breakdown": [{"note": "tab\there"}]}},
                                     flags={"beta": {"id": "f\\1"}}), time_style="iso")
    rows = list(record.balances), list(record.flags)

    as_copy_text(record)

    assert record.child_text
    assert record.balances == [copy_line(row) for row in rows[0]]
    assert record.flags == ["f\\\\1\tbeta\t\\N\t\\N"]


def test_scope_absent_or_null_is_the_customers_own():
    record = parse_customer(customer(
        subscriptions=[{"plan_id": "pro", "status": "active"},
                       {"plan_id": "seat", "status": "active", "scope": "entity"},
                       {"plan_id": "team", "status": "active", "scope": None}],
        purchases=[{"plan_id": "pack"}, {"plan_id": "seat_pack", "scope": "entity"},
                   {"plan_id": "topup", "scope": "customer"}]))
    assert [row[-1] for row in record.subscriptions] == ["customer", "entity", "customer"]
    assert [row[-1] for row in record.purchases] == ["customer", "entity", "customer"]


def test_licenses_are_parsed_with_fractional_numbers_and_none_when_absent():
    pool = {"license_plan_id": "seat", "parent_plan_id": "team", "license_plan_name": "Seats",
            "granted": 10, "usage": 2.5, "remaining": 7.5, "paid_quantity": None, "extra": "ignored"}
    record = parse_customer(customer(licenses=[pool]))
    assert record.licenses == [("seat", "team", "Seats", 10.0, 2.5, 7.5, None)]
    assert dict(zip(LICENSE_FIELDS, record.licenses[0], strict=True))["usage"] == 2.5
    assert parse_customer(customer()).licenses == []
    assert parse_customer(customer(licenses=None)).licenses == []


def test_child_rows_keeps_its_four_kinds_with_the_scope_and_no_licenses():
    """Entities parse their children with child_rows: scope is there; licenses are not an
    entity's, and the function still answers four lists in CHILD_FIELDS order."""
    data = customer(subscriptions=[{"plan_id": "pro", "status": "active", "scope": "entity"}],
                    purchases=[{"plan_id": "pack"}], licenses=[{"license_plan_id": "seat"}])
    rows = child_rows(data)
    assert len(rows) == 4
    for attribute, kind in zip(list(CHILD_FIELDS)[:4], rows, strict=True):
        assert all(len(row) == len(CHILD_FIELDS[attribute]) for row in kind)
    assert dict(zip(CHILD_FIELDS["subscriptions"], rows[0][0], strict=True))["scope"] == "entity"
    assert dict(zip(CHILD_FIELDS["purchases"], rows[1][0], strict=True))["scope"] == "customer"
    with pytest.raises(RecordError, match=r"subscriptions\[0\]\.scope") as caught:
        child_rows(customer(subscriptions=[{"plan_id": "pro", "status": "active", "scope": "x"}]), ("c", "e"))
    assert caught.value.key == ("c", "e")


def test_licenses_cross_the_prefetch_pipe_and_become_copy_text():
    record = parse_customer(customer(licenses=[{"license_plan_id": "seat\tA", "granted": 2.5}]),
                            time_style="iso")
    assert pickle.loads(pickle.dumps(record)).licenses == record.licenses  # noqa: S301 (our own bytes)

    as_copy_text(record)

    assert record.licenses == ["seat\\tA\t\\N\t\\N\t2.5\t\\N\t\\N\t\\N"]
    assert pickle.loads(pickle.dumps(record)).licenses == record.licenses  # noqa: S301
