"""The typed reader gives the field readers' rows, or leaves the object to them.

``typedrows`` builds a customer's rows through msgspec structs; ``records`` falls back to
its field-by-field readers whenever the typed reader answers None. Both must agree on
every object the typed reader accepts, and every bad object must still be named by the
field readers: each test compares the two on the same object.
"""

from __future__ import annotations

import copy
import itertools

import pytest

from autumn_django.sync.pages import records
from autumn_django.sync.pages.records import RecordError, child_rows, parse_customer
from autumn_django.sync.pages.timeforms import DATETIMES, TIME_FORMS
from autumn_django.sync.pages.typedrows import customer_rows, owner_rows
from autumn_django.testing import make_customers, make_entities
from autumn_django.testing.entities import compose

FORMS = {"datetimes": DATETIMES, **TIME_FORMS}

# Values a JSON field can hold that some field reader refuses or reads its own way.
ODD_VALUES = [None, "", "x" * 400, 0, 2, 2.0, 2.5, -1, True, False, [], {}, [1], {"a": 1},
              10**20, 1.5e300, "customer", "entity", "2024-01-01", float("inf")]


def _by_field_readers(data: dict, to_time) -> tuple:
    return records._read_customer(data, ("id", "x"), to_time)


def _agree(data: dict, to_time) -> str:
    """'typed' when the typed reader vouched for ``data`` (and equals the field readers),
    'fallback' when it left it to them. Fails if the typed reader accepted an object the
    field readers refuse or read differently."""
    typed = customer_rows(data, to_time)
    if typed is None:
        return "fallback"
    assert typed == _by_field_readers(data, to_time)
    return "typed"


@pytest.mark.parametrize("form", FORMS)
def test_every_generated_customer_is_read_alike_by_both(form):
    to_time = FORMS[form].from_ms
    outcomes = {_agree(data, to_time) for data in make_customers(1500, seed=3)}
    assert outcomes == {"typed"}  # well-formed customers never need the slow path


def _places(data: dict):
    """(container, key) of every field of a customer and of each of its rows."""
    for name in data:
        yield data, name
    for kind in ("subscriptions", "purchases", "licenses"):
        for item in data.get(kind) or ():
            for name in item:
                yield item, name
    for kind in ("balances", "flags"):
        for item in (data.get(kind) or {}).values():
            for name in item:
                yield item, name


def test_each_odd_value_in_each_field_is_read_alike_or_left_to_the_field_readers():
    base = next(c for c in make_customers(400, seed=9)
                if c["subscriptions"] and c["purchases"] and c["licenses"] and c["flags"] and c["balances"])
    to_time = TIME_FORMS["sqlite-utc"].from_ms
    places = list(_places(base))
    outcomes = {"typed": 0, "fallback": 0}
    for n, value in itertools.product(range(len(places)), ODD_VALUES):
        data = copy.deepcopy(base)
        container, name = list(_places(data))[n]
        container[name] = value
        try:
            expected = _by_field_readers(data, to_time)
        except RecordError:
            assert customer_rows(data, to_time) is None, (name, value)  # never vouches for a bad object
            outcomes["fallback"] += 1
            continue
        typed = customer_rows(data, to_time)
        if typed is None:
            outcomes["fallback"] += 1
        else:
            assert typed == expected, (name, value)
            outcomes["typed"] += 1
    # Both ways were taken: the typed reader is neither always refusing nor always accepting.
    assert outcomes["typed"] > 100 and outcomes["fallback"] > 100, outcomes


@pytest.mark.parametrize(("fields", "problem"), [
    ({"subscriptions": [{"plan_id": "pro", "status": "active", "quantity": "2"}]},
     "subscriptions[0].quantity: expected a whole number"),
    ({"balances": {"seats": {"granted": True}}}, "balances.seats.granted: expected a number"),
    ({"licenses": [{"license_plan_id": "x" * 256}]}, "licenses[0].license_plan_id: longer than 255"),
    ({"created_at": 10**20}, "created_at: .* is not a usable time"),
    ({"flags": {"beta": {"expires_at": "soon"}}}, "flags.beta.expires_at: expected epoch milliseconds"),
])
def test_a_bad_field_is_still_named_by_the_field_readers(fields, problem):
    data = {"id": "cus_1", "email": "a@example.com", "created_at": 1_700_000_000_000, **fields}
    with pytest.raises(RecordError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        parse_customer(data, time_style="iso")


def test_a_whole_quantity_sent_as_a_float_is_read_by_the_field_readers():
    data = {"id": "cus_1", "created_at": 1_700_000_000_000,
            "purchases": [{"plan_id": "pack", "quantity": 3.0}]}
    assert customer_rows(data, DATETIMES.from_ms) is None
    assert parse_customer(data).purchases[0][1] == 3


@pytest.mark.parametrize("form", FORMS)
def test_every_generated_entity_is_read_alike_by_both(form):
    customers = make_customers(300, seed=4)
    by_id = {c["id"]: c for c in customers}
    entities = [compose(e, by_id[e["customer_id"]]) for e in make_entities(customers, seed=4)]
    assert len(entities) > 50
    to_time = FORMS[form].from_ms
    for entity in entities:
        typed = owner_rows(entity, to_time)
        assert typed is not None
        assert typed == records._child_rows(entity, to_time)
        assert child_rows(entity, ("id", entity["id"]), None if form == "datetimes" else form) == typed


def test_a_rows_head_is_the_same_read_from_its_bytes_or_from_the_decoded_object():
    """The crawl reads a list row's head (key, created_at, products, earliest reset) from
    its bytes through a struct, and from the decoded object when the bytes are not the
    shape expected: both ways must agree, or the crawl and the re-reads would depend on
    which way a row was read."""
    import msgspec

    from autumn_django.sync.pages.rawpages import read_row, row_of

    customers = make_customers(800, seed=12)
    assert any(c["balances"] for c in customers) and any(c["id"] is None for c in customers)
    heads = []
    for n, data in enumerate(customers):
        raw = msgspec.json.encode(data)
        by_bytes, by_object = read_row(raw, n), row_of(data, n, raw)
        head = (by_bytes.crawl_key, by_bytes.key, by_bytes.created_at, by_bytes.products,
                by_bytes.earliest_reset)
        assert head == (by_object.crawl_key, by_object.key, by_object.created_at, by_object.products,
                        by_object.earliest_reset)
        heads.append(head)
    assert any(head[4] is not None for head in heads), "some rows should have a reset time"
