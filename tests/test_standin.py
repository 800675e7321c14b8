"""The stand-in Autumn API pinned to the contract in autumn-api.md, over real HTTP.

No database and no mocking: every test talks to a started ``AutumnStandIn`` with plain
``requests`` calls, so what is pinned here is exactly what the app's client will see.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from autumn_django.testing import AutumnStandIn, make_customers

pytest_plugins = ["pytester"]

KEY = "am_sk_test_standin0000"
LIVE_KEY = "am_sk_live_standin0000"
REPO_ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000_000

# The 2.3 Customer object (autumn-api.md, "The Customer object"): every customer carries
# these; ``processors`` is optional (the real server omits it when there is none).
CUSTOMER_FIELDS = frozenset({
    "id", "name", "email", "created_at", "env", "fingerprint", "stripe_id", "metadata",
    "send_email_receipts", "billing_controls", "config", "subscriptions", "purchases", "balances",
    "flags", "licenses"})  # fmt: skip
OPTIONAL_FIELDS = frozenset({"processors"})
LICENSE_FIELDS = {"license_plan_id", "parent_plan_id", "license_plan_name", "granted", "usage",
                  "remaining", "paid_quantity"}  # fmt: skip
CONTROL_KEYS = {"auto_topups", "spend_limits", "usage_limits", "usage_alerts", "overage_allowed"}
SEAT_PLANS = {"team", "enterprise"}  # the generated plans that grant seat pools


def call(server, endpoint, body=None, *, key=KEY, version="2.3", session=None, timeout=10):
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    if version is not None:
        headers["x-api-version"] = version
    post = (session or requests).post
    return post(f"{server.url}/v1/{endpoint}", json=body, headers=headers, timeout=timeout)


def ok(server, endpoint, body=None, **kw):
    r = call(server, endpoint, body, **kw)
    assert r.status_code == 200, r.text
    return r.json()


def assert_error(r, status, code, env="sandbox"):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"message", "code", "env"}
    assert (body["code"], body["env"]) == (code, env)
    return body["message"]


def customer(cid, created_at, **extra):
    return {"id": cid, "name": f"Name {cid}", "email": f"{cid or 'x'}@example.com",
            "created_at": created_at, **extra}  # fmt: skip


def assert_2_3_shape(c):
    """``c`` has the fields of a 2.3 customer, each of the right kind."""
    keys = set(c)
    assert CUSTOMER_FIELDS <= keys <= CUSTOMER_FIELDS | OPTIONAL_FIELDS, (c["id"], keys ^ CUSTOMER_FIELDS)
    assert isinstance(c["licenses"], list) and isinstance(c["config"], dict)
    assert c.get("processors", True), "processors is omitted when empty, never {}"
    assert set(c["billing_controls"]) <= CONTROL_KEYS
    for key, entries in c["billing_controls"].items():
        assert all(e["source"] in ("customer", "plan") for e in entries), key
    for item in c["subscriptions"] + c["purchases"]:
        assert item["scope"] in ("customer", "entity")
    for pool in c["licenses"]:
        assert set(pool) == LICENSE_FIELDS


def crawl(server, limit, sort_order="asc", **filters):
    """All rows of a cursor crawl, stepping over the null-cursor defect (asc only).

    When a full page ends with an id-less customer the cursor is null; the crawl goes on
    from that customer's created_at (inclusive) and skips the rows of that millisecond it
    has already seen, relying on the stable order within one millisecond.
    """
    rows, cursor, skip, restarts = [], "", 0, set()
    while True:
        body = {"start_cursor": cursor, "limit": limit, "sort_order": sort_order, **filters}
        page = ok(server, "customers.list", body)
        batch = page["list"]
        rows += batch[skip:]
        skip = max(0, skip - len(batch))
        cursor = page["next_cursor"]
        if cursor is not None:
            continue
        if sort_order == "asc" and len(batch) == limit and batch[-1]["id"] is None:
            last = batch[-1]["created_at"]
            skip = sum(1 for r in rows if r["created_at"] == last)
            assert (last, skip) not in restarts, "crawl would loop"
            restarts.add((last, skip))
            filters["created_at_range"] = {**filters.get("created_at_range", {}), "start": last}
            cursor = ""
            continue
        return rows


@pytest.fixture(scope="module")
def shared():
    """A read-only server for tests that do not change data."""
    with AutumnStandIn(customers=make_customers(120, seed=5)) as server:
        yield server


@pytest.fixture
def server():
    with AutumnStandIn(customers=make_customers(30, seed=2)) as server:
        yield server


@pytest.fixture
def small():
    """Five customers with known times; the third is id-less."""
    rows = [customer("c1", T0), customer("c2", T0 + 1), customer(None, T0 + 2),
            customer("c4", T0 + 3), customer("c5", T0 + 4)]  # fmt: skip
    with AutumnStandIn(customers=rows) as server:
        yield server


# -- auth and versions ---------------------------------------------------------------
def test_auth_errors(shared):
    assert_error(call(shared, "customers.list", {}, key=None), 401, "no_secret_key")
    bad = "am_sk_test_bogus!!key1234"
    msg = assert_error(call(shared, "customers.list", {}, key=bad), 401, "invalid_secret_key")
    assert "am_sk_te...1234" in msg and bad not in msg
    assert_error(call(shared, "customers.list", {}, key="am_sk_test_short"), 401, "invalid_secret_key")
    assert_error(call(shared, "customers.list", {}, key="sk_live_whatever123"), 401, "invalid_secret_key")
    assert_error(call(shared, "customers.get", {}, key="am_sk_live_bad"), 401, "invalid_secret_key", "live")


def test_key_prefix_decides_env():
    with AutumnStandIn(customers=[customer("s1", T0)]) as server:
        server.add_customer(customer("l1", T0), env="live")
        assert [c["id"] for c in ok(server, "customers.list", {})["list"]] == ["s1"]
        live = ok(server, "customers.list", {}, key=LIVE_KEY)["list"]
        assert [(c["id"], c["env"]) for c in live] == [("l1", "live")]
        assert_error(call(server, "customers.get", {"customer_id": "s1"}, key=LIVE_KEY), 404,
                     "customer_not_found", "live")  # fmt: skip


def test_explicit_secret_keys():
    with AutumnStandIn(customers=[], secret_keys=["am_sk_test_only_this_one"]) as server:
        assert call(server, "customers.list", {}, key="am_sk_test_only_this_one").status_code == 200
        assert_error(call(server, "customers.list", {}, key=KEY), 401, "invalid_secret_key")


def test_api_versions(shared):
    assert set(ok(shared, "customers.list", {}, version=None)) == {"list", "next_cursor"}
    assert_error(call(shared, "customers.list", {}, version="2.0"), 400, "invalid_api_version")
    assert_error(call(shared, "customers.get", {"customer_id": "x"}, version="banana"), 400,
                 "invalid_api_version")  # fmt: skip


def test_offset_paging_before_2_3(shared):
    everyone = shared.list_customers()
    seen = []
    for offset in range(0, 200, 50):
        page = ok(shared, "customers.list", {"offset": offset, "limit": 50, "sort_order": "asc"},
                  version="2.2")  # fmt: skip
        assert (page["total_count"], page["offset"], page["limit"]) == (120, offset, 50)
        assert page["has_more"] == (offset + 50 < 120)
        assert "next_cursor" not in page
        seen += page["list"]
    assert [c["created_at"] for c in seen] == [c["created_at"] for c in everyone]
    assert len(ok(shared, "customers.list", {}, version="2.1")["list"]) == 10
    assert_error(call(shared, "customers.list", {"limit": 1001}, version="2.2"), 400, "invalid_inputs")


# -- customers.list ------------------------------------------------------------------
def test_paging_covers_every_customer_once_both_orders():
    people = [c for c in make_customers(150, seed=9) if c["id"] is not None]
    # a bulk import: several customers in the very same millisecond
    for i in range(6):
        people.append(customer(f"bulk_{i}", T0))
    with AutumnStandIn(customers=people) as server:
        expected = [c["id"] for c in server.list_customers()]
        assert len(expected) == len(set(expected)) == len(people)
        cas = [c["created_at"] for c in server.list_customers()]
        assert cas == sorted(cas)
        for limit in (1, 7, 1000):
            assert [c["id"] for c in crawl(server, limit, "asc")] == expected
            assert [c["id"] for c in crawl(server, limit, "desc")] == expected[::-1]
        # default sort order is desc
        assert ok(server, "customers.list", {"limit": 1})["list"][0]["id"] == expected[-1]
        assert len(ok(server, "customers.list", {})["list"]) == 50  # default limit


def test_limit_validation():
    with AutumnStandIn(customers=[], org_max_limit=100) as server:
        for bad in (0, -1, 5001, "10", 2.5, True):
            msg = assert_error(call(server, "customers.list", {"limit": bad}), 400, "invalid_inputs")
            assert msg.startswith("limit: ")
        msg = assert_error(call(server, "customers.list", {"limit": 101}), 400, "invalid_request")
        assert msg == "limit 101 exceeds max of 100 for this org"
        assert ok(server, "customers.list", {"limit": 100})["list"] == []
    with AutumnStandIn(customers=[]) as server:
        msg = assert_error(call(server, "customers.list", {"limit": 5000}), 400, "invalid_request")
        assert msg == "limit 5000 exceeds max of 1000 for this org"
        msg = assert_error(call(server, "customers.list", {"sort_order": "up"}), 400, "invalid_inputs")
        assert msg.startswith("sort_order: ")


def test_invalid_cursor(shared):
    not_list = base64.urlsafe_b64encode(b'{"a":1}').decode()
    for bad in ("garbage!!", "bm9wZQ", not_list, "=="):
        assert_error(call(shared, "customers.list", {"start_cursor": bad}), 400, "invalid_cursor")
    assert ok(shared, "customers.list", {"start_cursor": "", "limit": 2})["next_cursor"]


def test_null_cursor_defect_on_full_page_ending_id_less(small):
    page = ok(small, "customers.list", {"limit": 3, "sort_order": "asc"})
    assert [c["id"] for c in page["list"]] == ["c1", "c2", None]
    assert page["next_cursor"] is None  # the defect: more customers exist
    # the documented way on: created_at_range.start (inclusive) from the last created_at
    rest = ok(small, "customers.list",
              {"limit": 3, "sort_order": "asc", "created_at_range": {"start": T0 + 2}})  # fmt: skip
    assert [c["id"] for c in rest["list"]] == [None, "c4", "c5"]
    # a full page ending with an id'd customer has a cursor; the last page has none
    page = ok(small, "customers.list", {"limit": 2, "sort_order": "asc"})
    assert page["next_cursor"] is not None
    page = ok(small, "customers.list", {"limit": 2, "sort_order": "asc", "start_cursor": page["next_cursor"]})
    assert [c["id"] for c in page["list"]] == [None, "c4"] and page["next_cursor"] is not None
    page = ok(small, "customers.list", {"limit": 2, "sort_order": "asc", "start_cursor": page["next_cursor"]})
    assert [c["id"] for c in page["list"]] == ["c5"] and page["next_cursor"] is None
    # exactly full last page: still null
    assert ok(small, "customers.list", {"limit": 5})["next_cursor"] is None


def test_cursor_survives_deletion_of_its_customer(small):
    page = ok(small, "customers.list", {"limit": 2, "sort_order": "asc"})
    small.delete_customer("c2")
    page = ok(small, "customers.list", {"limit": 5, "sort_order": "asc", "start_cursor": page["next_cursor"]})
    assert [c["id"] for c in page["list"]] == [None, "c4", "c5"]


def test_list_rows_capped_at_15_items_but_get_has_all():
    heavy = [c for c in make_customers(200, seed=4) if len(c["subscriptions"]) + len(c["purchases"]) > 15]
    assert heavy
    full = heavy[0]
    with AutumnStandIn(customers=heavy) as server:
        row = ok(server, "customers.list", {"limit": 10})["list"][0]
        assert len(row["subscriptions"]) + len(row["purchases"]) == 15
        n_subs = min(15, len(full["subscriptions"]))
        assert row["subscriptions"] == full["subscriptions"][:n_subs]
        assert row["purchases"] == full["purchases"][: 15 - n_subs]
        got = ok(server, "customers.get", {"customer_id": full["id"]})
        assert got == full
        assert server.get_customer(full["id"]) == full


def test_filters(shared):
    everyone = shared.list_customers()

    def ids(**filters):
        return sorted(str(c["id"]) for c in crawl(shared, 1000, **filters))

    def want(pred):
        return sorted(str(c["id"]) for c in everyone if pred(c))

    someone = next(c for c in everyone if c["id"] and c["name"] and c["email"])
    needle = someone["name"][1:4].upper()
    assert str(someone["id"]) in ids(search=needle)
    assert ids(search=needle) == want(
        lambda c: any(needle.lower() in (c[f] or "").lower() for f in ("id", "name", "email"))
    )
    assert ids(search=someone["email"].upper()) == [someone["id"]]
    assert ids(plans=[{"id": "pro"}]) == want(
        lambda c: any(i["plan_id"] == "pro" for i in c["subscriptions"] + c["purchases"])
    )
    assert ids(plans=[{"id": "credits_100"}, {"id": "team", "versions": [1]}]) == want(
        lambda c: any(i["plan_id"] in ("credits_100", "team") for i in c["subscriptions"] + c["purchases"])
    )
    assert ids(subscription_status="scheduled") == want(
        lambda c: any(s["status"] == "scheduled" for s in c["subscriptions"])
    )
    assert ids(processors="stripe") == want(lambda c: "stripe" in c.get("processors", {}))
    assert ids(processors=["revenuecat"]) == want(lambda c: "revenuecat" in c.get("processors", {}))
    lo, hi = everyone[10]["created_at"], everyone[40]["created_at"]
    assert ids(created_at_range={"start": lo, "end": hi}) == want(lambda c: lo <= c["created_at"] <= hi)
    assert ids(created_at_range={"end": hi}, processors="stripe") == want(
        lambda c: c["created_at"] <= hi and "stripe" in c.get("processors", {})
    )
    # filtered crawl in small pages still covers each match once
    assert sorted(str(c["id"]) for c in crawl(shared, 3, processors="stripe")) == ids(processors="stripe")
    for bad in ({"processors": "paypal"}, {"subscription_status": "expired"}, {"plans": "pro"},
                {"created_at_range": {"start": "yesterday"}}):  # fmt: skip
        assert_error(call(shared, "customers.list", bad), 400, "invalid_inputs")


# -- customers.get -------------------------------------------------------------------
def test_get(shared):
    someone = next(c for c in shared.list_customers() if c["id"])
    assert ok(shared, "customers.get", {"customer_id": someone["id"]}) == someone
    assert ok(
        shared, "customers.get", {"customer_id": someone["id"], "expand": ["invoices", "balances.feature"]}
    )
    msg = assert_error(call(shared, "customers.get", {"customer_id": "nobody"}), 404, "customer_not_found")
    assert "nobody" in msg
    assert_error(call(shared, "customers.get", {"customer_id": someone["id"], "expand": ["bogus"]}), 400,
                 "invalid_inputs")  # fmt: skip
    msg = assert_error(call(shared, "customers.get", {}), 400, "invalid_inputs")
    assert msg.startswith("customer_id: ")


# -- customers.get_or_create ---------------------------------------------------------
def test_get_or_create_creates_then_is_idempotent(server):
    before = int(time.time() * 1000)
    made = ok(server, "customers.get_or_create",
              {"customer_id": "new_1", "name": "Zoë", "email": "zoe@example.com", "metadata": {"a": 1},
               "auto_enable_plan_id": "free"})  # fmt: skip
    assert made["id"] == "new_1" and made["name"] == "Zoë" and made["metadata"] == {"a": 1}
    assert before <= made["created_at"] <= int(time.time() * 1000)
    assert (made["purchases"], made["balances"], made["flags"]) == ([], {}, {})
    assert [(s["plan_id"], s["status"]) for s in made["subscriptions"]] == [("free", "active")]
    again = ok(server, "customers.get_or_create",
               {"customer_id": "new_1", "name": "Other", "email": "other@example.com"})  # fmt: skip
    assert again == made  # returned unchanged: name and email are not applied
    assert len(server.list_customers()) == 31
    plain = ok(server, "customers.get_or_create", {"customer_id": "new_2"})
    assert plain["subscriptions"] == [] and plain["metadata"] == {} and plain["email"] is None


def test_get_or_create_claims_id_less_customer(small):
    idless = next(c for c in small.list_customers() if c["id"] is None)
    claimed = ok(small, "customers.get_or_create", {"customer_id": "c3", "email": idless["email"]})
    assert claimed == {**idless, "id": "c3"}  # created_at and everything else kept
    assert [c["id"] for c in small.list_customers()] == ["c1", "c2", "c3", "c4", "c5"]


def test_get_or_create_null_id_is_keyed_by_email(small):
    idless = next(c for c in small.list_customers() if c["id"] is None)
    assert ok(small, "customers.get_or_create", {"customer_id": None, "email": idless["email"]}) == idless
    made = ok(small, "customers.get_or_create", {"customer_id": None, "email": "fresh@example.com"})
    assert made["id"] is None and made["email"] == "fresh@example.com"
    assert len(small.list_customers()) == 6
    msg = assert_error(call(small, "customers.get_or_create", {"customer_id": None}), 400, "invalid_inputs")
    assert msg.startswith("email: ")


def test_get_or_create_validation(server):
    for bad in ("a@b.com", "has space", "dot.ted", "", 42):
        msg = assert_error(
            call(server, "customers.get_or_create", {"customer_id": bad}), 400, "invalid_inputs"
        )
        assert msg.startswith("customer_id: ")
    ok(server, "customers.get_or_create", {"customer_id": "org:ok-1_A"})
    msg = assert_error(call(server, "customers.get_or_create", {}), 400, "invalid_inputs")
    assert msg == "customer_id: Required"
    for email in ("not-an-email", "a@b", "a b@c.com"):
        msg = assert_error(call(server, "customers.get_or_create", {"customer_id": "x1", "email": email}),
                           400, "invalid_inputs")  # fmt: skip
        assert msg.startswith("email: ")
    assert server.get_customer("x1") is None


# -- customers.update / delete -------------------------------------------------------
def test_update_merges_metadata_and_fields(server):
    server.add_customer(customer("u1", T0, metadata={"keep": 1, "drop": 2, "change": "a"}))
    out = ok(server, "customers.update",
             {"customer_id": "u1", "name": "李伟", "email": "li@example.com",
              "metadata": {"drop": None, "change": "b", "new": [1]}})  # fmt: skip
    assert out["metadata"] == {"keep": 1, "change": "b", "new": [1]}
    assert (out["name"], out["email"], out["created_at"]) == ("李伟", "li@example.com", T0)
    assert server.get_customer("u1") == out
    assert ok(server, "customers.update", {"customer_id": "u1", "name": None})["name"] is None
    assert_error(call(server, "customers.update", {"customer_id": "ghost", "name": "x"}), 404,
                 "customer_not_found")  # fmt: skip
    assert_error(call(server, "customers.update", {"customer_id": "u1", "email": "nope"}), 400,
                 "invalid_inputs")  # fmt: skip


def test_update_renames_and_409(server):
    server.add_customer(customer("r1", T0))
    server.add_customer(customer("r2", T0 + 1))
    assert_error(call(server, "customers.update", {"customer_id": "r1", "new_customer_id": "r2"}), 409,
                 "customer_already_exists")  # fmt: skip
    out = ok(server, "customers.update", {"customer_id": "r1", "new_customer_id": "r1_new"})
    assert out["id"] == "r1_new" and out["created_at"] == T0
    assert_error(call(server, "customers.get", {"customer_id": "r1"}), 404, "customer_not_found")
    ids = [c["id"] for c in crawl(server, 1000)]
    assert "r1_new" in ids and "r1" not in ids
    msg = assert_error(call(server, "customers.update", {"customer_id": "r2", "new_customer_id": "a b"}),
                       400, "invalid_inputs")  # fmt: skip
    assert msg.startswith("new_customer_id: ")


def test_delete(server):
    victim = server.list_customers()[0]["id"] or server.list_customers()[1]["id"]
    assert ok(server, "customers.delete", {"customer_id": victim}) == {"success": True}
    assert_error(call(server, "customers.get", {"customer_id": victim}), 404, "customer_not_found")
    assert victim not in [c["id"] for c in crawl(server, 1000)]
    assert_error(call(server, "customers.delete", {"customer_id": victim}), 404, "customer_not_found")


# -- transport -----------------------------------------------------------------------
def test_unknown_path_method_and_bad_body(shared):
    r = requests.post(
        f"{shared.url}/v1/customers.explode", json={}, headers={"Authorization": f"Bearer {KEY}"}, timeout=5
    )
    assert_error(r, 404, "not_found")
    assert_error(requests.get(f"{shared.url}/v1/customers.list", timeout=5), 404, "not_found")
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    r = requests.post(f"{shared.url}/v1/customers.list", data=b"{nope", headers=headers, timeout=5)
    assert_error(r, 400, "invalid_inputs")
    r = requests.post(f"{shared.url}/v1/customers.list", data=b"[1]", headers=headers, timeout=5)
    assert_error(r, 400, "invalid_inputs")


def test_keep_alive_and_stop_cuts_connections():
    server = AutumnStandIn(customers=[customer("k1", T0)]).start()
    session = requests.Session()
    try:
        r = call(server, "customers.get", {"customer_id": "k1"}, session=session)
        assert r.raw.version == 11 and r.headers.get("Connection", "").lower() != "close"
        assert int(r.headers["Content-Length"]) == len(r.content)
        call(server, "customers.get", {"customer_id": "k1"}, session=session)
        assert len(server._conns) == 1  # both requests went over one connection
        url = server.url
        server.stop()
        with pytest.raises(requests.ConnectionError):
            session.post(f"{url}/v1/customers.get", json={"customer_id": "k1"}, timeout=5)
        server.start()  # restarts on the same port
        assert server.url == url
        assert call(server, "customers.get", {"customer_id": "k1"}).status_code == 200
    finally:
        server.stop()
        session.close()


def test_requests_are_recorded(server):
    server.clear_requests()
    call(server, "customers.get", {"customer_id": "nope"})
    call(server, "customers.list", {"limit": 3}, key=None)
    assert server.requests == [("customers.get", {"customer_id": "nope"}), ("customers.list", {"limit": 3})]
    server.clear_requests()
    assert server.requests == []


# -- faults --------------------------------------------------------------------------
def test_fail_next_statuses(server):
    server.faults.fail_next(2)
    for _ in range(2):
        r = call(server, "customers.list", {})
        assert_error(r, 503, "service_unavailable")
        assert r.headers["Retry-After"] == "1"
    assert call(server, "customers.list", {}).status_code == 200
    server.faults.fail_next(1, status=500)
    assert_error(call(server, "customers.get", {"customer_id": "x"}), 500, "internal_error")
    for status in (502, 504):
        server.faults.fail_next(1, status=status)
        r = call(server, "customers.list", {})
        assert r.status_code == status and r.headers["Content-Type"].startswith("text/plain")
        with pytest.raises(ValueError):
            r.json()
    # endpoint-specific faults leave other endpoints alone
    server.faults.fail_next(1, endpoint="customers.get", retry_after=7)
    assert call(server, "customers.list", {}).status_code == 200
    r = call(server, "customers.get", {"customer_id": "x"})
    assert r.status_code == 503 and r.headers["Retry-After"] == "7"
    with pytest.raises(ValueError):
        server.faults.fail_next(1, endpoint="customers.nope")


def test_rate_limit_shapes(server):
    server.faults.rate_limit_next(1, retry_after=3)
    r = call(server, "customers.list", {})
    assert r.status_code == 429 and r.headers["Content-Type"].startswith("text/plain")
    assert r.text and not r.text.startswith("{")
    assert r.headers["retry-after"] == "3" and r.headers["ratelimit-reset"] == "3"
    assert r.headers["ratelimit-limit"] == "50" and r.headers["ratelimit-remaining"] == "0"
    server.faults.rate_limit_next(1, kind="json", endpoint="customers.get")
    r = call(server, "customers.get", {"customer_id": "x"})
    assert_error(r, 429, "rate_limit_exceeded")
    assert "retry-after" not in r.headers
    assert call(server, "customers.list", {}).status_code == 200


def test_real_list_rate_limit():
    with AutumnStandIn(customers=[], list_rate_limit=5) as server:
        codes = [call(server, "customers.list", {}).status_code for _ in range(6)]
        assert codes == [200] * 5 + [429]
        assert call(server, "customers.get", {"customer_id": "x"}).status_code == 404  # not limited
        assert call(server, "customers.list", {}, key=LIVE_KEY).status_code == 200  # per env
        time.sleep(1.05)
        assert call(server, "customers.list", {}).status_code == 200


def test_drop_and_malformed(server):
    server.faults.drop_next(1)
    with pytest.raises(requests.ConnectionError):
        call(server, "customers.list", {})
    assert call(server, "customers.list", {}).status_code == 200
    server.faults.malformed_next(1, endpoint="customers.list")
    r = call(server, "customers.list", {})
    assert (r.status_code, r.content, r.headers["Content-Type"]) == (200, b"<html>oops</html>", "text/html")
    server.faults.malformed_next(1, body=b'{"list": [', content_type="application/json", status=200)
    assert call(server, "customers.get", {"customer_id": "x"}).content == b'{"list": ['


def test_delay_and_clear(server):
    server.faults.delay(0.6, endpoint="customers.list")
    with pytest.raises(requests.Timeout):
        call(server, "customers.list", {}, timeout=0.2)
    assert call(server, "customers.get", {"customer_id": "x"}, timeout=0.5).status_code == 404
    server.faults.delay(0, endpoint="customers.list")
    assert call(server, "customers.list", {}, timeout=0.5).status_code == 200
    server.faults.fail_next(5)
    server.faults.delay(5)
    server.faults.clear()
    assert call(server, "customers.list", {}, timeout=1).status_code == 200


def test_corrupt_customer(small):
    small.faults.corrupt_customer("c2", {"created_at": "not a number", "extra": 1})
    rows = ok(small, "customers.list", {"sort_order": "asc"})["list"]
    assert rows[1]["created_at"] == "not a number" and rows[1]["extra"] == 1
    assert rows[0]["created_at"] == T0
    assert ok(small, "customers.get", {"customer_id": "c2"})["created_at"] == "not a number"
    assert small.get_customer("c2")["created_at"] == T0 + 1  # the store keeps the truth
    small.faults.clear()
    assert ok(small, "customers.get", {"customer_id": "c2"})["created_at"] == T0 + 1


# -- data access ---------------------------------------------------------------------
def test_data_access_helpers(small):
    got = small.get_customer("c1")
    got["name"] = "mutated"
    assert small.get_customer("c1")["name"] == "Name c1"  # deep copies
    added = small.add_customer({"id": "late", "email": "late@example.com"})
    assert added["created_at"] >= T0 and added["subscriptions"] == [] and added["env"] == "sandbox"
    small.modify_customer("c1", name="Renée", balances={"seats": {"usage": 2.5}})
    assert ok(small, "customers.get", {"customer_id": "c1"})["balances"] == {"seats": {"usage": 2.5}}
    small.modify_customer("c5", created_at=T0 - 1)  # re-sorts
    small.rename_customer("c4", "c4b")
    assert [c["id"] for c in small.list_customers()] == ["c5", "c1", "c2", None, "c4b", "late"]
    small.delete_customer("late")
    assert small.get_customer("late") is None
    with pytest.raises(KeyError):
        small.delete_customer("late")
    with pytest.raises(ValueError):
        small.rename_customer("c1", "c2")
    with pytest.raises(ValueError):
        small.add_customer(customer("c1", T0))
    assert small.list_customers(env="live") == []


# -- balance resets (lazy, as Autumn: autumn-api.md "Balance resets") -----------------
DAY = 86_400_000


def resetting(cid, *, resets_at, usage=40, interval="month", **extra):
    """A customer with a monthly-resetting ``messages`` balance (usage ``usage`` of 100,
    its reset at ``resets_at``) and a ``storage_gb`` balance that never resets."""
    entry = {"id": f"ent_{cid}", "plan_id": "pro", "included_grant": 100, "prepaid_grant": 0,
             "remaining": 100 - usage, "usage": usage, "unlimited": False,
             "reset": {"interval": interval, "resets_at": resets_at}, "price": None, "expires_at": None}
    storage = {"feature_id": "storage_gb", "granted": 10, "remaining": 7.5, "usage": 2.5,
               "unlimited": False, "overage_allowed": False, "max_purchase": None,
               "next_reset_at": None, "breakdown": []}
    balances = {"messages": {"feature_id": "messages", "granted": 100, "remaining": 100 - usage,
                             "usage": usage, "unlimited": False, "overage_allowed": False,
                             "max_purchase": None, "next_reset_at": resets_at, "breakdown": [entry]},
                "storage_gb": storage}
    return customer(cid, T0, balances=balances, **extra)


def listed(server, cid):
    return next(c for c in crawl(server, 1000) if c["id"] == cid)


def test_list_keeps_a_due_reset_unapplied_while_get_applies_it():
    due_at = int(time.time() * 1000) - 45 * DAY  # a month and a half ago: one whole interval late
    with AutumnStandIn(customers=[resetting("r1", resets_at=due_at), resetting("r2", resets_at=due_at)],
                       reset_lands_after_ms=None) as server:
        for _ in range(2):  # as stored, every time: the queued reset never lands here
            row = listed(server, "r1")
            assert row["balances"]["messages"]["usage"] == 40
            assert row["balances"]["messages"]["next_reset_at"] == due_at

        got = ok(server, "customers.get", {"customer_id": "r1"})
        now = int(time.time() * 1000)

        messages = got["balances"]["messages"]
        assert (messages["usage"], messages["remaining"], messages["granted"]) == (0, 100, 100)
        entry = messages["breakdown"][0]
        assert (entry["usage"], entry["remaining"]) == (0, 100)
        # Moved on by whole months (day of the month kept), to the first time after now.
        moved = datetime.fromtimestamp(entry["reset"]["resets_at"] / 1000, tz=timezone.utc)
        was = datetime.fromtimestamp(due_at / 1000, tz=timezone.utc)
        assert now < entry["reset"]["resets_at"] < now + 32 * DAY
        assert (moved.day, moved.time()) == (was.day, was.time()) or moved.day < was.day  # a shorter month
        assert messages["next_reset_at"] == entry["reset"]["resets_at"]
        assert got["balances"]["storage_gb"] == resetting("x", resets_at=0)["balances"]["storage_gb"]
        # Stored: the list shows it now, and get answers the same again.
        assert listed(server, "r1") == got == server.get_customer("r1")
        assert ok(server, "customers.get", {"customer_id": "r1"}) == got
        # get_or_create of an existing customer applies them too.
        made = ok(server, "customers.get_or_create", {"customer_id": "r2", "name": "ignored"})
        assert made["balances"]["messages"]["usage"] == 0 and made["name"] == "Name r2"


def test_the_reset_a_list_queued_lands_after_the_delay_or_never():
    now = int(time.time() * 1000)
    people = [resetting("q1", resets_at=now - DAY), resetting("q2", resets_at=now - DAY)]
    with AutumnStandIn(customers=people, reset_lands_after_ms=300) as server:
        page = ok(server, "customers.list", {"limit": 1, "sort_order": "asc"})["list"]
        assert [c["id"] for c in page] == ["q1"] and page[0]["balances"]["messages"]["usage"] == 40
        time.sleep(0.4)
        rows = {c["id"]: c for c in crawl(server, 1000)}
        assert rows["q1"]["balances"]["messages"]["usage"] == 0  # landed: the list shows it
        assert rows["q2"]["balances"]["messages"]["usage"] == 40  # listed just now: queued
        time.sleep(0.4)
        assert server.get_customer("q2")["balances"]["messages"]["usage"] == 0

        server.make_reset_due("q1")
        server.reset_lands_after_ms = None  # never
        listed(server, "q1")
        time.sleep(0.4)
        assert listed(server, "q1")["balances"]["messages"]["usage"] == 0  # nothing used since
        assert listed(server, "q1")["balances"]["messages"]["next_reset_at"] <= int(time.time() * 1000)


def test_lazy_resets_off_applies_due_resets_on_list_too():
    now = int(time.time() * 1000)
    with AutumnStandIn(customers=[resetting("e1", resets_at=now - 1)], lazy_resets=False) as server:
        row = listed(server, "e1")
        assert row["balances"]["messages"]["usage"] == 0
        assert row["balances"]["messages"]["next_reset_at"] > now
        server.lazy_resets = True
        server.make_reset_due("e1")
        assert listed(server, "e1")["balances"]["messages"]["next_reset_at"] < now + 1000


def test_make_reset_due_and_whole_intervals():
    now = int(time.time() * 1000)
    daily = resetting("d1", resets_at=now + 5 * DAY, interval="day", usage=70)
    with AutumnStandIn(customers=[daily]) as server:
        assert server.get_customer("d1")["balances"]["messages"]["usage"] == 70
        ok(server, "customers.get", {"customer_id": "d1"})  # nothing due: nothing changes
        assert server.get_customer("d1")["balances"]["messages"]["next_reset_at"] == now + 5 * DAY

        at = now - int(2.5 * DAY)
        stored = server.make_reset_due("d1", "messages", at=at)
        assert stored["balances"]["messages"]["next_reset_at"] == at
        assert stored["balances"]["messages"]["breakdown"][0]["reset"]["resets_at"] == at
        assert stored["balances"]["storage_gb"]["next_reset_at"] is None  # never resets: left alone
        assert listed(server, "d1")["balances"]["messages"]["usage"] == 70

        got = ok(server, "customers.get", {"customer_id": "d1"})["balances"]["messages"]
        assert got["usage"] == 0 and got["next_reset_at"] == at + 3 * DAY  # three whole days on
        with pytest.raises(KeyError):
            server.make_reset_due("nobody")


def test_generated_due_resets_are_deterministic_and_apply_on_get():
    people = make_customers(3000, seed=1)
    now = int(time.time() * 1000)
    tomorrow = (now // DAY + 1) * DAY

    def due(c):
        times = [b["next_reset_at"] for b in c["balances"].values() if b["next_reset_at"]]
        times += [e["reset"]["resets_at"] for b in c["balances"].values()
                  for e in b["breakdown"] if e["reset"]]
        return bool(times) and min(times) <= now

    overdue = [c["id"] for c in people if due(c)]
    assert 10 <= len(overdue) <= 60  # about 1%
    assert overdue == [c["id"] for c in make_customers(3000, seed=1) if due(c)]  # the same ones
    assert overdue != [c["id"] for c in make_customers(3000, seed=2) if due(c)]
    # The others reset after tomorrow's midnight, whatever the time of day.
    assert all(b["next_reset_at"] >= tomorrow for c in people if not due(c)
               for b in c["balances"].values() if b["next_reset_at"])
    with AutumnStandIn(customers=people[:600]) as server:
        victim = next(c for c in people[:600] if due(c) and c["id"])
        got = ok(server, "customers.get", {"customer_id": victim["id"]})
        assert not due(got) and got != victim
        assert all(b["usage"] == 0 for f, b in got["balances"].items() if b["next_reset_at"])


# -- control channel (/_standin/*) ---------------------------------------------------
CONTROL_ROUTES = [("GET", "customer"), ("POST", "modify"), ("POST", "modify_many"), ("POST", "add"),
                  ("POST", "delete")]  # fmt: skip
BALANCE = {"feature_id": "ai_tokens", "granted": 1000, "usage": 12.5, "remaining": 987.5,
           "unlimited": False, "overage_allowed": False, "max_purchase": None,
           "next_reset_at": None, "breakdown": []}  # fmt: skip
SUB = {"id": "sub_new", "plan_id": "pro", "status": "active", "auto_enable": False, "add_on": False,
       "past_due": False, "quantity": 1, "started_at": T0, "current_period_start": T0,
       "current_period_end": T0 + 30 * 86_400_000, "canceled_at": None, "expires_at": None,
       "trial_ends_at": None}  # fmt: skip


@pytest.fixture
def controlled():
    """``small`` with the control channel on."""
    rows = [customer("c1", T0), customer("c2", T0 + 1), customer(None, T0 + 2),
            customer("c4", T0 + 3), customer("c5", T0 + 4)]  # fmt: skip
    with AutumnStandIn(customers=rows, control=True) as server:
        yield server


def control(server, route, body=None, *, method="POST", params=None):
    url = f"{server.url}/_standin/{route}"
    if method == "GET":
        return requests.get(url, params=params, timeout=10)
    return requests.post(url, json=body, timeout=10)


def control_ok(server, route, body=None, **kw):
    r = control(server, route, body, **kw)
    assert r.status_code == 200, r.text
    return r.json()


def _send(server, method, route):
    url = f"{server.url}/_standin/{route}"
    return requests.request(method, url, json={"customer_id": "c1", "fields": {"name": "x"}}, timeout=5)


def test_control_is_off_by_default(small):
    before = small.list_customers()
    for method, route in CONTROL_ROUTES:
        r = _send(small, method, route)
        assert_error(r, 404, "not_found")  # the very reply of an unknown path
        assert r.json()["message"] == f"Cannot {method} /_standin/{route}"
    assert small.list_customers() == before


def test_control_unknown_route_or_method_is_404(controlled):
    for method, route in [("POST", "explode"), ("GET", "modify"), ("POST", "customer"), ("PUT", "add")]:
        r = _send(controlled, method, route)
        assert_error(r, 404, "not_found")
        assert r.json()["message"] == f"Cannot {method} /_standin/{route}"


def test_control_get_reads_the_full_customer(controlled):
    assert control_ok(controlled, "customer", method="GET", params={"customer_id": "c2"}) == (
        controlled.get_customer("c2")
    )
    idless = next(c for c in controlled.list_customers() if c["id"] is None)
    got = control_ok(controlled, "customer", method="GET", params={"email": idless["email"]})
    assert got == idless
    r = control(controlled, "customer", method="GET", params={"customer_id": "nobody"})
    assert "nobody" in assert_error(r, 404, "customer_not_found")
    r = control(controlled, "customer", method="GET", params={"customer_id": "c2", "env": "live"})
    assert_error(r, 404, "customer_not_found", "live")


def test_control_modify_shows_in_get_and_list(controlled):
    subs = [SUB]
    got = control_ok(controlled, "modify", {"customer_id": "c2", "env": "sandbox",
                                            "fields": {"balances": {"ai_tokens": BALANCE},
                                                       "subscriptions": subs, "name": "Zoë"}})  # fmt: skip
    assert got == controlled.get_customer("c2")
    assert got["balances"]["ai_tokens"]["usage"] == 12.5 and got["subscriptions"] == subs
    assert ok(controlled, "customers.get", {"customer_id": "c2"}) == got
    row = next(c for c in crawl(controlled, 2) if c["id"] == "c2")
    assert row == got and row["name"] == "Zoë"
    # Shallow: a top-level key replaces what was there; the rest is kept.
    got = control_ok(controlled, "modify", {"customer_id": "c2", "fields": {"balances": {}}})
    assert got["balances"] == {} and got["subscriptions"] == subs
    # An id-less customer: null id plus its email.
    idless = next(c for c in controlled.list_customers() if c["id"] is None)
    got = control_ok(controlled, "modify", {"customer_id": None, "email": idless["email"],
                                            "fields": {"metadata": {"k": 1}}})  # fmt: skip
    assert got == {**idless, "metadata": {"k": 1}}
    # A rename through "id", and the 409 for a taken one.
    control_ok(controlled, "modify", {"customer_id": "c4", "fields": {"id": "c4b"}})
    assert [c["id"] for c in crawl(controlled, 10)] == ["c1", "c2", None, "c4b", "c5"]
    r = control(controlled, "modify", {"customer_id": "c4b", "fields": {"id": "c1"}})
    assert_error(r, 409, "customer_already_exists")
    r = control(controlled, "modify", {"customer_id": "c4", "fields": {"name": "x"}})
    assert "c4" in assert_error(r, 404, "customer_not_found")


def test_control_is_keyless_unrecorded_and_fault_free(controlled):
    controlled.clear_requests()
    controlled.faults.fail_next(5)
    got = control_ok(controlled, "modify", {"customer_id": "c1", "fields": {"name": "N"}})
    assert got["name"] == "N" and controlled.requests == []
    assert_error(call(controlled, "customers.get", {"customer_id": "c1"}), 503, "service_unavailable")


def test_control_env(controlled):
    control_ok(controlled, "add", {"customer": customer("l1", T0), "env": "live"})
    got = control_ok(controlled, "modify", {"customer_id": "l1", "env": "live", "fields": {"name": "L"}})
    assert got["env"] == "live"
    assert ok(controlled, "customers.get", {"customer_id": "l1"}, key=LIVE_KEY)["name"] == "L"
    assert_error(call(controlled, "customers.get", {"customer_id": "l1"}), 404, "customer_not_found")
    r = control(controlled, "modify", {"customer_id": "c1", "env": "live", "fields": {}})
    assert_error(r, 404, "customer_not_found", "live")


def test_control_modify_many_is_all_or_nothing(controlled):
    changes = [{"customer_id": "c1", "fields": {"balances": {"ai_tokens": BALANCE}}},
               {"customer_id": "c2", "fields": {"subscriptions": [SUB]}},
               {"customer_id": "c5", "fields": {"name": "Five", "metadata": {"m": 2}}}]  # fmt: skip
    assert control_ok(controlled, "modify_many", {"env": "sandbox", "changes": changes}) == {"modified": 3}
    rows = {c["id"]: c for c in ok(controlled, "customers.list", {"limit": 10})["list"]}
    assert rows["c1"]["balances"] == {"ai_tokens": BALANCE}
    assert rows["c2"]["subscriptions"] == [SUB]
    assert (rows["c5"]["name"], rows["c5"]["metadata"]) == ("Five", {"m": 2})
    assert control_ok(controlled, "modify_many", {"changes": []}) == {"modified": 0}
    before = controlled.list_customers()
    for bad_tail, status, code in [({"customer_id": "nobody", "fields": {}}, 404, "customer_not_found"),
                                   ({"customer_id": "c2", "fields": {"id": "c1x"}}, 409,
                                    "customer_already_exists")]:  # fmt: skip
        head = [{"customer_id": "c1", "fields": {"id": "c1x", "name": "gone?"}},
                {"customer_id": "c1x", "fields": {"balances": {}}}]  # fmt: skip
        r = control(controlled, "modify_many", {"changes": [*head, bad_tail]})
        assert_error(r, status, code)
        assert controlled.list_customers() == before  # the first two were undone


def test_control_add_and_delete(controlled):
    added = control_ok(controlled, "add", {"customer": {"id": "n1", "name": "New", "created_at": T0 + 10,
                                                        "balances": {"ai_tokens": BALANCE}}})  # fmt: skip
    assert added == controlled.get_customer("n1") and added["subscriptions"] == []
    assert ok(controlled, "customers.get", {"customer_id": "n1"}) == added
    assert crawl(controlled, 10)[-1] == added
    r = control(controlled, "add", {"customer": customer("c1", T0)})
    assert_error(r, 409, "customer_already_exists")
    assert control_ok(controlled, "delete", {"customer_id": "n1", "env": "sandbox"}) == {"success": True}
    assert_error(call(controlled, "customers.get", {"customer_id": "n1"}), 404, "customer_not_found")
    assert "n1" not in [c["id"] for c in crawl(controlled, 10)]
    assert_error(control(controlled, "delete", {"customer_id": "n1"}), 404, "customer_not_found")
    idless = next(c for c in controlled.list_customers() if c["id"] is None)
    control_ok(controlled, "delete", {"customer_id": None, "email": idless["email"]})
    assert [c["id"] for c in crawl(controlled, 10)] == ["c1", "c2", "c4", "c5"]


@pytest.mark.parametrize(
    ("route", "body", "problem"),
    [
        ("modify", b"{nope", "body: Invalid JSON"),
        ("modify", b"[1]", "body: Expected object"),
        ("modify", {"fields": {}}, "customer_id: "),
        ("modify", {"customer_id": 7, "fields": {}}, "customer_id: "),
        ("modify", {"customer_id": "", "fields": {}}, "customer_id: "),
        ("modify", {"customer_id": None, "fields": {}}, "email: "),
        ("modify", {"customer_id": "c1"}, "fields: Expected object"),
        ("modify", {"customer_id": "c1", "fields": [1]}, "fields: Expected object"),
        ("modify", {"customer_id": "c1", "fields": {"env": "live"}}, "fields: 'env'"),
        ("modify", {"customer_id": "c1", "fields": {"id": 3}}, "fields.id: "),
        ("modify", {"customer_id": "c1", "env": "prod", "fields": {}}, "env: "),
        ("modify", {"customer_id": "c1", "env": ["live"], "fields": {}}, "env: "),
        ("modify_many", {}, "changes: Expected array"),
        ("modify_many", {"changes": {"customer_id": "c1"}}, "changes: Expected array"),
        ("modify_many", {"changes": [{"customer_id": "c1", "fields": {}}, 5]}, "changes[1]: Expected object"),
        ("modify_many", {"changes": [{"customer_id": "c1"}]}, "changes[0].fields: "),
        ("modify_many", {"changes": [{"fields": {}}]}, "changes[0].customer_id: "),
        ("add", {}, "customer: Expected object"),
        ("add", {"customer": {"name": "no id"}}, "customer.id: Required"),
        ("add", {"customer": {"id": 12}}, "customer.id: "),
        ("add", {"customer": {"id": "x"}, "env": "prod"}, "env: "),
        ("delete", {}, "customer_id: Required"),
        ("delete", {"customer_id": ["c1"]}, "customer_id: "),
    ],
)
def test_control_bad_input_is_400(controlled, route, body, problem):
    before = controlled.list_customers()
    if isinstance(body, bytes):
        r = requests.post(f"{controlled.url}/_standin/{route}", data=body, timeout=5,
                          headers={"Content-Type": "application/json"})  # fmt: skip
    else:
        r = control(controlled, route, body)
    assert assert_error(r, 400, "invalid_inputs").startswith(problem)
    assert controlled.list_customers() == before


def test_control_get_bad_input_is_400(controlled):
    for params, problem in [({}, "customer_id: Required"), ({"customer_id": ""}, "customer_id: "),
                            ({"customer_id": "c1", "env": "prod"}, "env: ")]:  # fmt: skip
        r = control(controlled, "customer", method="GET", params=params)
        assert assert_error(r, 400, "invalid_inputs").startswith(problem)


# -- generated data ------------------------------------------------------------------
def test_make_customers_shape():
    people = make_customers(3000, seed=1)
    assert people == make_customers(3000, seed=1)
    assert people != make_customers(3000, seed=2)
    assert all(set(c) - {"processors"} == CUSTOMER_FIELDS for c in people)
    ids = [c["id"] for c in people if c["id"] is not None]
    assert len(ids) == len(set(ids))
    idless = [c for c in people if c["id"] is None]
    assert 20 <= len(idless) <= 120 and all(c["email"] for c in idless)
    emails = [c["email"] for c in people if c["email"]]
    assert len(emails) == len(set(emails))
    assert any(c["email"] is None for c in people) and any(c["name"] is None for c in people)
    assert any(k in (c["name"] or "") for c in people for k in ("李", "محمد", "דוד", "🚀"))
    assert any(len(c["subscriptions"]) + len(c["purchases"]) > 15 for c in people)
    assert any(c["id"].startswith("org:") for c in people if c["id"])
    usages = [b["usage"] for c in people for b in c["balances"].values()]
    assert any(isinstance(u, float) and u != int(u) for u in usages)
    assert any(b["unlimited"] for c in people for b in c["balances"].values())
    stamps = [c["created_at"] for c in people]
    assert len(set(stamps)) < len(stamps)  # bulk imports share a millisecond
    assert max(stamps) - min(stamps) > 600 * 86_400_000
    assert max(stamps) <= time.time() * 1000
    statuses = {s["status"] for c in people for s in c["subscriptions"]}
    assert statuses == {"active", "scheduled"}
    assert any(s["past_due"] for c in people for s in c["subscriptions"])
    assert any(len(make_customers(n, seed=s)) == n for n, s in ((0, 0), (1, 3)))
    assert any(len(c["subscriptions"]) + len(c["purchases"]) > 15 for c in make_customers(50, seed=8))


# -- the 2.3 customer shape -----------------------------------------------------------
def test_generated_customers_carry_every_2_3_field():
    people = make_customers(3000, seed=1)
    for c in people:
        assert_2_3_shape(c)
    assert any("processors" in c for c in people) and any("processors" not in c for c in people)
    scopes = [i["scope"] for c in people for i in c["subscriptions"] + c["purchases"]]
    assert set(scopes) == {"customer", "entity"}
    assert all(p["scope"] == "customer" for c in people for p in c["purchases"])
    controls = [c["billing_controls"] for c in people]
    assert sum(1 for bc in controls if not bc) > len(people) / 2  # most customers have none
    entries = {key: [e for bc in controls for e in bc.get(key) or []] for key in CONTROL_KEYS}
    assert all(entries.values()), "each kind of control appears somewhere"
    assert {e["source"] for es in entries.values() for e in es} == {"customer", "plan"}
    assert all({"feature_id", "enabled", "threshold", "quantity"} <= set(e) for e in entries["auto_topups"])
    assert any("purchase_limit" in e for e in entries["auto_topups"])
    assert all(set(e) == {"feature_id", "enabled", "source"} for e in entries["overage_allowed"])
    assert {e["enabled"] for e in entries["overage_allowed"]} == {True, False}
    for e in entries["usage_limits"]:
        assert {"feature_id", "limit", "usage", "enabled", "interval"} <= set(e)
        assert 0 <= e["usage"] <= e["limit"] and e["interval"] in ("day", "week", "month", "year")
    assert any("filter" in e for e in entries["usage_limits"])
    assert all({"feature_id", "enabled", "overage_limit"} <= set(e) for e in entries["spend_limits"])
    alert_types = {"usage", "usage_percentage", "remaining", "remaining_percentage"}
    assert all({"feature_id", "enabled", "threshold"} <= set(e) and e["threshold_type"] in alert_types
               for e in entries["usage_alerts"])  # fmt: skip
    for bc in controls:  # one entry per feature (and filter) in each list
        for key, es in bc.items():
            ids = [(e["feature_id"], json.dumps(e.get("filter"), sort_keys=True)) for e in es]
            assert len(ids) == len(set(ids)), (key, es)
    configs = [c["config"] for c in people]
    assert all(set(cfg) <= {"disable_pooled_balance", "disable_overage_billing"} for cfg in configs)
    assert any(cfg for cfg in configs) and any(not cfg for cfg in configs)
    balance_fields = {"feature_id", "granted", "remaining", "usage", "unlimited", "overage_allowed",
                      "max_purchase", "next_reset_at", "breakdown"}  # fmt: skip
    entry_fields = {"id", "plan_id", "included_grant", "prepaid_grant", "remaining", "usage", "unlimited",
                    "reset", "price", "expires_at"}  # fmt: skip
    for c in people:
        for b in c["balances"].values():
            assert set(b) == balance_fields and all(set(e) == entry_fields for e in b["breakdown"])


def test_generated_seat_pools_are_consistent():
    people = make_customers(3000, seed=1)
    pooled = [c for c in people if c["licenses"]]
    assert 100 < len(pooled) < len(people) / 3
    assert any(len(c["licenses"]) > 1 for c in pooled)
    pools = [p for c in pooled for p in c["licenses"]]
    assert any(p["paid_quantity"] for p in pools) and any(not p["paid_quantity"] for p in pools)
    assert any(p["remaining"] == 0 for p in pools) and any(p["usage"] == 0 for p in pools)
    for c in people:
        subs = c["subscriptions"]
        parents = {s["plan_id"] for s in subs if s["status"] == "active" and s["scope"] == "customer"}
        assert bool(c["licenses"]) == bool(parents & SEAT_PLANS), c["id"]
        for pool in c["licenses"]:
            assert set(pool) == LICENSE_FIELDS
            assert pool["parent_plan_id"] in parents
            assert all(isinstance(pool[k], int) for k in ("granted", "usage", "remaining", "paid_quantity"))
            assert 0 <= pool["usage"] <= pool["granted"]
            assert pool["remaining"] == pool["granted"] - pool["usage"]
            assert 0 <= pool["paid_quantity"] <= pool["granted"]
            assert pool["license_plan_name"] and pool["license_plan_id"] not in parents
        order = [(p["parent_plan_id"], p["license_plan_id"]) for p in c["licenses"]]
        assert order == sorted(set(order))
        # A seat in use is a license plan attached to an entity: folded in as scope "entity".
        entity_plans = [s["plan_id"] for s in subs if s["scope"] == "entity"]
        assert sorted(entity_plans) == sorted(p["license_plan_id"] for p in c["licenses"] if p["usage"])


def test_list_and_get_answer_every_2_3_field(shared):
    rows = crawl(shared, 50)
    assert len(rows) == 120
    for row in rows:
        assert_2_3_shape(row)
    assert any(r["licenses"] for r in rows) and any(not r["licenses"] for r in rows)
    for row in ok(shared, "customers.list", {"limit": 120}, version="2.2")["list"]:
        assert_2_3_shape(row)
    for row in rows:
        if row["id"] is not None:
            got = ok(shared, "customers.get", {"customer_id": row["id"]})
            assert_2_3_shape(got)
            assert got["licenses"] == row["licenses"]


def test_created_and_rewritten_customers_have_the_generated_shape(server):
    generated = server.list_customers()
    without = next(c for c in generated if "processors" not in c)
    with_processor = next(c for c in generated if "processors" in c)
    plain = ok(server, "customers.get_or_create", {"customer_id": "shape_1"})
    assert set(plain) == set(without)
    assert (plain["licenses"], plain["billing_controls"], plain["config"]) == ([], {}, {})
    made = ok(server, "customers.get_or_create",
              {"customer_id": "shape_2", "email": "shape2@example.com", "create_in_stripe": True,
               "auto_enable_plan_id": "free",
               "billing_controls": {"usage_alerts": [{"feature_id": "messages", "threshold": 80,
                                                      "threshold_type": "usage_percentage"}]}})  # fmt: skip
    assert set(made) == set(with_processor)
    assert [s["scope"] for s in made["subscriptions"]] == ["customer"]
    assert made["billing_controls"] == {"usage_alerts": [
        {"feature_id": "messages", "threshold": 80, "threshold_type": "usage_percentage", "enabled": True,
         "source": "customer"}]}  # fmt: skip
    # update keeps the shape: dropping the Stripe id drops an emptied processors, adding one adds it
    out = ok(server, "customers.update", {"customer_id": "shape_2", "stripe_id": None, "name": "Two"})
    assert set(out) == set(without)
    out = ok(server, "customers.update", {"customer_id": "shape_1", "stripe_id": "cus_given"})
    assert set(out) == set(with_processor) and out["processors"] == {"stripe": {"id": "cus_given"}}
    # a customer added with fewer fields gets the 2.3 defaults
    added = server.add_customer({"id": "shape_3", "email": "shape3@example.com"})
    assert set(added) == set(without) and added["licenses"] == []
    for c in server.list_customers():
        assert_2_3_shape(c)


def test_update_merges_billing_controls_per_list(server):
    plan_alert = {"feature_id": "messages", "enabled": True, "threshold": 80,
                  "threshold_type": "usage_percentage", "source": "plan"}  # fmt: skip
    plan_overage = {"feature_id": "ai_tokens", "enabled": True, "source": "plan"}
    mine = {"feature_id": "exports", "enabled": False, "source": "customer"}
    topup = {"feature_id": "credits", "enabled": True, "threshold": 10, "quantity": 100, "source": "customer"}
    server.add_customer(customer("bc1", T0, billing_controls={
        "usage_alerts": [plan_alert], "overage_allowed": [mine, plan_overage], "auto_topups": [topup]}))
    out = ok(server, "customers.update", {"customer_id": "bc1", "billing_controls": {
        "usage_alerts": [{"feature_id": "messages", "threshold": 95, "threshold_type": "usage_percentage"}],
        "usage_limits": [{"feature_id": "api_calls", "limit": 1000, "interval": "day"}],
        "overage_allowed": None}})  # fmt: skip
    assert out["billing_controls"] == {
        # a customer alert on a feature shadows the plan's alerts on it
        "usage_alerts": [{"feature_id": "messages", "threshold": 95, "threshold_type": "usage_percentage",
                          "enabled": True, "source": "customer"}],
        "usage_limits": [{"feature_id": "api_calls", "limit": 1000, "interval": "day", "enabled": True,
                          "usage": 0, "source": "customer"}],
        "overage_allowed": [plan_overage],  # null clears the customer's entries, not the plan's
        "auto_topups": [topup],  # a list not sent is left alone
    }  # fmt: skip
    assert server.get_customer("bc1") == out
    for bad, problem in [({"auto_topups": {"feature_id": "x"}}, "billing_controls.auto_topups: "),
                         ({"usage_limits": [5]}, "billing_controls.usage_limits.0: "),
                         ({"usage_limits": [{"feature_id": "x", "interval": "day"}]},
                          "billing_controls.usage_limits.0.limit: Required")]:  # fmt: skip
        msg = assert_error(call(server, "customers.update", {"customer_id": "bc1", "billing_controls": bad}),
                           400, "invalid_inputs")  # fmt: skip
        assert msg.startswith(problem), msg
    assert server.get_customer("bc1") == out


# -- command line and pytest plugin ---------------------------------------------------
def test_cli_serve_and_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "autumn_django.testing", "serve", "--customers", "12", "--seed", "1",
         "--port", "0", "--key", KEY],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("Autumn stand-in listening on http://127.0.0.1:")
        assert line.endswith("(12 customers, sandbox)")
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        r = requests.post(f"{url}/v1/customers.list", json={"limit": 100},
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=5)  # fmt: skip
        assert len(r.json()["list"]) == 12
        r = requests.get(f"{url}/_standin/customer", params={"customer_id": "cus_1"}, timeout=5)
        assert r.status_code == 404  # no --control: unknown path
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_serve_control():
    proc = subprocess.Popen(
        [sys.executable, "-m", "autumn_django.testing", "serve", "--customers", "12", "--seed", "1",
         "--port", "0", "--control"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    try:
        line = proc.stdout.readline().strip()
        assert line.endswith("(12 customers, sandbox, control channel on /_standin/)")
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        r = requests.post(f"{url}/v1/customers.list", json={"limit": 100},
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=5)  # fmt: skip
        rows = r.json()["list"]
        cid = next(c["id"] for c in rows if c["id"])
        change = {"customer_id": cid, "fields": {"balances": {"ai_tokens": BALANCE}}}
        r = requests.post(f"{url}/_standin/modify_many", json={"changes": [change]}, timeout=5)
        assert r.json() == {"modified": 1}
        r = requests.get(f"{url}/_standin/customer", params={"customer_id": cid}, timeout=5)
        assert r.json()["balances"] == {"ai_tokens": BALANCE}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_pytest_plugin_fixture(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    pytester.makeconftest(
        textwrap.dedent("""
            from django.conf import settings
            settings.configure(AUTUMN_API_URL="http://127.0.0.1:9", AUTUMN_SECRET_KEY="before")
            pytest_plugins = ["autumn_django.testing.pytest_plugin"]
        """)
    )
    pytester.makepyfile(
        textwrap.dedent("""
            import pytest, requests
            from django.conf import settings

            def test_default(autumn_standin):
                assert settings.AUTUMN_API_URL == autumn_standin.url
                assert settings.AUTUMN_SECRET_KEY == "am_sk_test_standin_fixture_key"
                r = requests.post(settings.AUTUMN_API_URL + "/v1/customers.list", json={"limit": 100},
                                  headers={"Authorization": "Bearer " + settings.AUTUMN_SECRET_KEY})
                assert len(r.json()["list"]) == 25

            @pytest.mark.autumn_standin(customers=3, seed=4, org_max_limit=2)
            def test_marker(autumn_standin):
                assert len(autumn_standin.list_customers()) == 3
                assert autumn_standin.org_max_limit == 2

            def test_restored():
                assert settings.AUTUMN_API_URL == "http://127.0.0.1:9"
        """)
    )
    result = pytester.runpytest_subprocess("-p", "no:django", "-p", "no:cacheprovider", "--strict-markers",
                                           "-q")  # fmt: skip
    result.assert_outcomes(passed=3)
