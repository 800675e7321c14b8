"""The stand-in's entities, features and plans, pinned to autumn-api.md ("Entities and
seats", "Local feature checks") over real HTTP. No database: plain ``requests`` calls to a
started ``AutumnStandIn``, as in ``test_standin.py``."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from autumn_django.testing import AutumnStandIn, make_catalogue, make_customers, make_entities

from .test_standin import KEY, LIVE_KEY, REPO_ROOT, assert_error, call, ok

pytest_plugins = ["pytester"]

T0 = 1_700_000_000_000
ENTITY_FIELDS = {"id", "name", "customer_id", "feature_id", "created_at", "env", "subscriptions", "purchases",
                 "balances", "flags", "billing_controls"}  # fmt: skip


def sub(plan_id, scope, sub_id=None):
    return {"id": sub_id or f"sub_{plan_id}_{scope}", "plan_id": plan_id, "status": "active", "scope": scope}


def balance(feature, granted, usage, *, reset=None, entry_id=None):
    return {"feature_id": feature, "granted": granted, "remaining": granted - usage, "usage": usage,
            "unlimited": False, "overage_allowed": False, "max_purchase": None, "next_reset_at": reset,
            "breakdown": [{"id": entry_id or f"e_{feature}_{granted}", "usage": usage}]}  # fmt: skip


def entity(eid, customer_id, created_at, **extra):
    return {"id": eid, "name": f"Seat {eid}", "customer_id": customer_id, "feature_id": "seats",
            "created_at": created_at, **extra}  # fmt: skip


def owner(cid="acme", created_at=T0 - 1000, **extra):
    return {"id": cid, "email": f"{cid}@example.com", "created_at": created_at,
            "subscriptions": [sub("pro", "customer"), sub("team_member", "entity")],
            "purchases": [{"plan_id": "credits_100", "quantity": 1, "scope": "customer"}],
            "balances": {"messages": balance("messages", 1000, 100, reset=T0 + 5),
                         "api_calls": balance("api_calls", 50, 5)},
            "flags": {"analytics": {"id": "f1", "plan_id": "pro", "feature_id": "analytics",
                                    "expires_at": None}}, **extra}  # fmt: skip


def nine(defect_at=(2,), customer_id="acme"):
    """Nine entities created at T0 + 0..8 ms; those at the ``defect_at`` positions from the
    newest (0 = newest) have no id. Newest first, three a page: a page ending at position 2
    is full and ends id-less."""
    return [entity(None if 8 - i in defect_at else f"ent_{i}", customer_id, T0 + i) for i in range(9)]


def crawl(server, limit, **filters):
    rows, cursor = [], ""
    while True:
        page = ok(server, "entities.list", {"start_cursor": cursor, "limit": limit, **filters})
        rows += page["list"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


@pytest.fixture(scope="module")
def generated():
    customers = make_customers(400, seed=4)
    with AutumnStandIn(customers=customers, entities=make_entities(customers, seed=4)) as server:
        yield server


@pytest.fixture
def small():
    with AutumnStandIn(customers=[owner(), owner("beta", T0 - 500, subscriptions=[], purchases=[],
                                                balances={}, flags={})],
                       entities=nine(defect_at=())) as server:  # fmt: skip
        yield server


# -- paging --------------------------------------------------------------------------
def test_list_pages_newest_first_with_cursors_covering_every_entity_once(generated):
    everything = generated.list_entities()
    assert len(everything) > 100
    keys = [(e["created_at"], e["id"] is None, e["id"] or "") for e in everything]
    assert keys == sorted(keys, reverse=True)  # newest first; id-less first within a millisecond
    whole = 0
    for limit in (7, 50, 1000):
        rows = crawl(generated, limit)
        if len(rows) < len(everything):  # a page ended id-less: the defect stopped the crawl
            assert rows[-1]["id"] is None and rows == everything[: len(rows)]
            continue
        assert rows == everything
        whole += 1
    assert whole
    first = ok(generated, "entities.list", {"limit": 10})
    assert len(first["list"]) == 10 and isinstance(first["next_cursor"], str)
    assert ok(generated, "entities.list", {})["list"] == everything[:50]  # default limit 50


def test_cursor_is_keyset_and_survives_deletion_of_its_entity(small):
    page = ok(small, "entities.list", {"limit": 3})
    assert [e["id"] for e in page["list"]] == ["ent_8", "ent_7", "ent_6"]
    small.delete_entity("acme", "ent_6")
    small.add_entity(entity("ent_new", "acme", T0 + 100))  # newer: ahead of the cursor, unseen
    rest = ok(small, "entities.list", {"limit": 10, "start_cursor": page["next_cursor"]})
    assert [e["id"] for e in rest["list"]] == [f"ent_{i}" for i in range(5, -1, -1)]
    assert rest["next_cursor"] is None
    assert_error(call(small, "entities.list", {"start_cursor": "not-a-cursor"}), 400, "invalid_cursor")


def test_org_maximum_and_limit_validation(small):
    with AutumnStandIn(customers=[owner()], entities=nine(), org_max_limit=4) as server:
        message = assert_error(call(server, "entities.list", {"limit": 5}), 400, "invalid_request")
        assert message == "limit 5 exceeds max of 4 for this org"
        assert len(ok(server, "entities.list", {"limit": 4})["list"]) == 4
    for bad in (0, "3", 5001, 1.5):
        assert_error(call(small, "entities.list", {"limit": bad}), 400, "invalid_inputs")


def test_null_cursor_defect_after_a_full_page_ending_id_less():
    with AutumnStandIn(customers=[owner()], entities=nine(defect_at=(2,))) as server:
        page = ok(server, "entities.list", {"limit": 3})
        assert [e["id"] for e in page["list"]] == ["ent_8", "ent_7", None]
        assert page["next_cursor"] is None  # although six more follow
        shorter = ok(server, "entities.list", {"limit": 2})
        assert shorter["next_cursor"] is not None
        rest = ok(server, "entities.list", {"limit": 10, "start_cursor": shorter["next_cursor"]})
        assert [e["id"] for e in rest["list"]] == [None] + [f"ent_{i}" for i in range(5, -1, -1)]
        # A short last page ending id-less is simply the end.
        assert ok(server, "entities.list", {"limit": 9})["next_cursor"] is None


def test_filters_customer_id_and_search(small):
    small.add_entity(entity("ent_b1", "beta", T0 + 50, name="Marketing workspace"))
    assert [e["id"] for e in crawl(small, 2, customer_id="beta")] == ["ent_b1"]
    assert len(crawl(small, 2, customer_id="acme")) == 9
    assert crawl(small, 2, customer_id="nobody") == []
    assert [e["id"] for e in crawl(small, 5, search="MARKET")] == ["ent_b1"]  # name, any case
    assert [e["id"] for e in crawl(small, 5, search="ent_3")] == ["ent_3"]  # id
    assert [e["id"] for e in crawl(small, 5, search="workspace", customer_id="acme")] == []
    acme_pro = crawl(small, 4, plans=[{"id": "pro"}])  # inherited from the customer
    assert len(acme_pro) == 9 and {e["customer_id"] for e in acme_pro} == {"acme"}
    assert_error(call(small, "entities.list", {"customer_id": " "}), 400, "invalid_inputs")
    assert_error(call(small, "entities.list", {"search": 3}), 400, "invalid_inputs")
    assert_error(call(small, "entities.list", {"subscription_status": "gone"}), 400, "invalid_inputs")


# -- the entity's answer -------------------------------------------------------------
def test_answer_composes_the_entity_with_what_it_inherits(small):
    own = {"subscriptions": [sub("seat_plus", "entity", "sub_own")],
           "purchases": [{"plan_id": "credits_100", "quantity": 2, "scope": "entity"}],
           "balances": {"messages": balance("messages", 500, 20, reset=T0 + 2, entry_id="mine"),
                        "credits": balance("credits", 100, 1)},
           "flags": {"sso": {"id": "f2", "plan_id": "seat_plus", "feature_id": "sso", "expires_at": None}}}
    small.add_entity(entity("ent_x", "acme", T0 + 20, **own))
    got = ok(small, "entities.get", {"entity_id": "ent_x", "customer_id": "acme"})
    assert set(got) == ENTITY_FIELDS and got["customer_id"] == "acme" and got["env"] == "sandbox"
    # Its own plans first, then the customer's customer-level ones (not another entity's).
    assert [(s["plan_id"], s["scope"]) for s in got["subscriptions"]] == [("seat_plus", "entity"),
                                                                           ("pro", "customer")]
    assert [(p["plan_id"], p["scope"]) for p in got["purchases"]] == [("credits_100", "entity"),
                                                                       ("credits_100", "customer")]
    messages = got["balances"]["messages"]  # in both: pooled
    assert (messages["granted"], messages["usage"], messages["remaining"]) == (1500, 120, 1380)
    assert [e["id"] for e in messages["breakdown"]] == ["mine", "e_messages_1000"]
    assert messages["next_reset_at"] == T0 + 2
    assert got["balances"]["api_calls"] == owner()["balances"]["api_calls"]  # the customer's only
    assert got["balances"]["credits"] == own["balances"]["credits"]  # its own only
    assert set(got["flags"]) == {"analytics", "sso"}
    assert ok(small, "entities.get", {"entity_id": "ent_x"}) == got  # customer_id is optional
    assert small.get_entity("acme", "ent_x") == got
    listed = next(e for e in crawl(small, 50) if e["id"] == "ent_x")
    assert listed == got


def test_get_unknown_entity_is_404_and_validates(small):
    assert_error(call(small, "entities.get", {"entity_id": "nope"}), 404, "entity_not_found")
    assert_error(call(small, "entities.get", {"entity_id": "ent_1", "customer_id": "beta"}), 404,
                 "entity_not_found")  # fmt: skip
    assert_error(call(small, "entities.get", {}), 400, "invalid_inputs")
    assert_error(call(small, "entities.get", {"entity_id": 7}), 400, "invalid_inputs")
    live = call(small, "entities.get", {"entity_id": "x"}, key=LIVE_KEY)
    assert_error(live, 404, "entity_not_found", "live")


def test_entities_follow_their_customer_renamed_changed_and_deleted(small):
    small.modify_customer("acme", flags={})
    assert ok(small, "entities.get", {"entity_id": "ent_1"})["flags"] == {}  # composed when served
    small.rename_customer("acme", "acme2")
    assert ok(small, "entities.get", {"entity_id": "ent_1"})["customer_id"] == "acme2"
    assert len(crawl(small, 4, customer_id="acme2")) == 9
    ok(small, "customers.delete", {"customer_id": "acme2"})
    assert crawl(small, 4) == [] and small.list_entities() == []
    assert_error(call(small, "entities.get", {"entity_id": "ent_1"}), 404, "entity_not_found")
    small.add_customer(owner("acme2"))  # a new customer of that id does not get them back
    assert crawl(small, 4) == []


# -- in-process mutations and the catalogue switches ---------------------------------
def test_in_process_entity_mutations(small):
    added = small.add_entity({"id": "ent_z", "customer_id": "beta"})
    assert added["created_at"] >= T0 and added["customer_id"] == "beta"
    assert "feature_id" not in added  # none given: left out, as the server does
    assert small.get_entity("beta", "ent_z") == added
    changed = small.modify_entity("beta", "ent_z", name="Renamed", id="ent_zz")
    assert (changed["id"], changed["name"]) == ("ent_zz", "Renamed")
    assert small.get_entity("beta", "ent_z") is None
    assert ok(small, "entities.get", {"entity_id": "ent_zz"})["name"] == "Renamed"
    small.delete_entity("beta", "ent_zz")
    assert small.get_entity("beta", "ent_zz") is None
    with pytest.raises(KeyError):
        small.delete_entity("beta", "ent_zz")
    with pytest.raises(KeyError):
        small.add_entity({"id": "e", "customer_id": "nobody"})
    with pytest.raises(ValueError):
        small.add_entity({"id": "ent_1", "customer_id": "acme"})  # taken
    with pytest.raises(ValueError):
        small.modify_entity("acme", "ent_1", customer_id="beta")
    small.add_entity({"id": None, "customer_id": "beta", "name": "id-less"})
    assert small.get_entity("beta", None)["name"] == "id-less"
    small.add_entity({"id": None, "customer_id": "beta"})
    with pytest.raises(ValueError):
        small.get_entity("beta", None)  # two id-less entities: which one?
    assert len(small.list_entities(env="live")) == 0


def test_set_features_and_plans(small):
    features, plans = make_catalogue()
    assert ok(small, "features.list", {}) == {"list": features}
    assert ok(small, "plans.list", {}) == {"list": plans}
    small.set_features([{"id": "only", "name": "Only", "type": "boolean"}])
    small.set_plans([], env="live")
    assert [f["id"] for f in ok(small, "features.list", {})["list"]] == ["only"]
    assert ok(small, "plans.list", {}, key=LIVE_KEY) == {"list": []}
    assert ok(small, "plans.list", {}) == {"list": plans}
    with pytest.raises(ValueError):
        small.set_plans([{"name": "no id"}])
    custom = AutumnStandIn(customers=[], features=[], plans=plans[:1])
    with custom:
        assert ok(custom, "features.list", {}) == {"list": []}
        assert ok(custom, "plans.list", {})["list"] == plans[:1]


# -- control channel -----------------------------------------------------------------
def control(server, route, body=None, *, method="POST", params=None):
    url = f"{server.url}/_standin/{route}"
    if method == "GET":
        return requests.get(url, params=params, timeout=10)
    return requests.post(url, json=body, timeout=10)


def test_control_entity_routes():
    with AutumnStandIn(customers=[owner()], entities=nine(defect_at=()), control=True) as server:
        r = control(server, "entity/add", {"entity": entity("ent_c", "acme", T0 + 30)})
        assert r.status_code == 200 and r.json()["subscriptions"][-1]["plan_id"] == "pro"
        assert_error(control(server, "entity/add", {"entity": entity("ent_c", "acme", T0)}), 409,
                     "entity_already_exists")  # fmt: skip
        assert_error(control(server, "entity/add", {"entity": entity("e", "nobody", T0)}), 404,
                     "customer_not_found")  # fmt: skip
        r = control(server, "entity/modify", {"customer_id": "acme", "entity_id": "ent_c",
                                              "fields": {"name": "Changed"}})  # fmt: skip
        assert r.status_code == 200 and r.json()["name"] == "Changed"
        assert ok(server, "entities.get", {"entity_id": "ent_c"})["name"] == "Changed"
        r = control(server, "entity", method="GET", params={"customer_id": "acme", "entity_id": "ent_c"})
        assert r.json() == server.get_entity("acme", "ent_c")
        listed = control(server, "entity", method="GET", params={"env": "sandbox"}).json()["list"]
        assert listed == server.list_entities() and len(listed) == 10
        assert control(server, "entity/delete", {"customer_id": "acme", "entity_id": "ent_c"}).json() == {
            "success": True}
        assert_error(control(server, "entity/delete", {"customer_id": "acme", "entity_id": "ent_c"}), 404,
                     "entity_not_found")  # fmt: skip
        for body, problem in [({"entity_id": "x"}, "customer_id: "), ({"customer_id": "acme"}, "entity_id: "),
                              ({"customer_id": "acme", "entity_id": "ent_1", "fields": {"env": "live"}},
                               "fields: ")]:  # fmt: skip
            message = assert_error(control(server, "entity/modify", body), 400, "invalid_inputs")
            assert message.startswith(problem)
        assert len(server.requests) == 1  # the one entities.get: control calls are not recorded
    with AutumnStandIn(customers=[owner()]) as closed:
        assert control(closed, "entity", method="GET", params={}).status_code == 404  # control off


# -- faults and the rate limit -------------------------------------------------------
def test_faults_target_the_new_endpoints_by_name(small):
    small.faults.fail_next(1, status=500, endpoint="entities.list")
    assert call(small, "customers.list", {}).status_code == 200  # another endpoint: untouched
    assert_error(call(small, "entities.list", {}), 500, "internal_error")
    small.faults.fail_next(1, status=404, endpoint="entities.get")
    assert_error(call(small, "entities.get", {"entity_id": "ent_1"}), 404, "entity_not_found")
    small.faults.malformed_next(1, endpoint="features.list")
    r = call(small, "features.list", {})
    assert r.status_code == 200 and r.text == "<html>oops</html>"
    small.faults.rate_limit_next(1, endpoint="plans.list", retry_after=2)
    r = call(small, "plans.list", {})
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    small.faults.drop_next(1, endpoint="entities.get")
    with pytest.raises(requests.ConnectionError):
        call(small, "entities.get", {"entity_id": "ent_1"})
    small.faults.delay(0.3, endpoint="entities.get")
    started = time.monotonic()
    ok(small, "entities.get", {"entity_id": "ent_1"})
    assert time.monotonic() - started >= 0.3
    small.faults.clear()
    with pytest.raises(ValueError):
        small.faults.fail_next(1, endpoint="entities.nothing")


def test_corrupt_entity_shows_in_list_and_get_only(small):
    truth = small.get_entity("acme", "ent_4")
    small.faults.corrupt_entity("acme", "ent_4", {"created_at": "not a number"})
    assert ok(small, "entities.get", {"entity_id": "ent_4"})["created_at"] == "not a number"
    assert next(e for e in crawl(small, 3) if e["id"] == "ent_4")["created_at"] == "not a number"
    assert small.get_entity("acme", "ent_4") == truth  # the store keeps the true entity
    small.faults.corrupt_entity("acme", "ent_4", {})
    assert ok(small, "entities.get", {"entity_id": "ent_4"}) == truth


def test_customers_list_and_entities_list_share_one_rate_bucket():
    with AutumnStandIn(customers=[owner()], entities=nine(), list_rate_limit=4) as server:
        assert [call(server, "customers.list", {}).status_code for _ in range(4)] == [200] * 4
        r = call(server, "entities.list", {})
        assert r.status_code == 429 and r.headers["Content-Type"].startswith("text/plain")
        assert r.headers["ratelimit-limit"] == "50"
        assert call(server, "entities.get", {"entity_id": "ent_1"}).status_code == 200  # not limited
        time.sleep(1.05)
        assert [call(server, "entities.list", {}).status_code for _ in range(4)] == [200] * 4
        assert call(server, "customers.list", {}).status_code == 429


# -- generated data and the catalogue ------------------------------------------------
def test_make_entities_is_deterministic_and_realistic():
    customers = make_customers(3000, seed=1)
    entities = make_entities(customers, seed=1)
    assert entities == make_entities(copy.deepcopy(customers), seed=1)
    assert entities != make_entities(customers, seed=2)
    by_customer = {c["id"]: c for c in customers}
    owners = {e["customer_id"] for e in entities}
    with_id = sum(1 for c in customers if c["id"] is not None)
    assert 0.07 * with_id < len(owners) < 0.13 * with_id  # about 10% of the customers with an id
    counts = [sum(1 for e in entities if e["customer_id"] == o) for o in owners]
    assert min(counts) >= 1 and max(counts) <= 20 and max(counts) > 10
    idless = sum(1 for e in entities if e["id"] is None)
    assert 0.005 * len(entities) < idless < 0.05 * len(entities)
    ids = [(e["customer_id"], e["id"]) for e in entities if e["id"]]
    assert len(ids) == len(set(ids)) and all(e["id"].startswith("ent_") for e in entities if e["id"])
    for e in entities:
        assert set(e) == ENTITY_FIELDS, set(e) ^ ENTITY_FIELDS
        customer = by_customer[e["customer_id"]]
        assert customer["id"] is not None and e["created_at"] >= customer["created_at"]
        assert e["env"] == "sandbox" and e["feature_id"] == "seats"
        assert all(i["scope"] == "entity" for i in e["subscriptions"] + e["purchases"])
        pools = {p["license_plan_id"] for p in customer["licenses"]}
        assert all(s["plan_id"] in pools for s in e["subscriptions"]) or not pools
    assert any(e["balances"] for e in entities) and any(e["flags"] for e in entities)
    assert any(e["billing_controls"] for e in entities) and any(e["purchases"] for e in entities)
    stamps = [(e["customer_id"], e["created_at"]) for e in entities]
    assert len(set(stamps)) < len(stamps)  # some customers create entities in one millisecond


def test_catalogue_describes_everything_the_generated_data_uses():
    features, plans = make_catalogue()
    assert (features, plans) == make_catalogue()
    assert [p["env"] for p in make_catalogue("live")[1]] == ["live"] * len(plans)
    with pytest.raises(ValueError):
        make_catalogue("prod")
    by_id = {f["id"]: f for f in features}
    assert len(by_id) == len(features)
    for f in features:
        assert {"id", "name", "type", "consumable", "event_names", "archived", "display"} <= set(f)
        assert f["type"] in ("boolean", "metered", "credit_system")
    systems = [f for f in features if f["type"] == "credit_system"]
    assert [s["id"] for s in systems] == ["credits"]
    schema = systems[0]["credit_schema"]
    assert schema and all(set(m) == {"metered_feature_id", "credit_cost"} for m in schema)
    members = {m["metered_feature_id"] for m in schema}
    assert all(by_id[m]["type"] == "metered" for m in members)  # members exist as metered features
    plan_ids = {p["id"] for p in plans}
    for p in plans:
        assert {"id", "name", "group", "version", "add_on", "auto_enable", "price", "items"} <= set(p)
        assert all(i["feature_id"] in by_id for i in p["items"])
    customers = make_customers(2000, seed=3)
    entities = make_entities(customers, seed=3)
    used_features, used_plans = set(), set()
    for holder in customers + entities:
        used_features |= set(holder["balances"]) | set(holder["flags"])
        used_plans |= {i["plan_id"] for i in holder["subscriptions"] + holder["purchases"]}
        used_plans |= {e["plan_id"] for b in holder["balances"].values() for e in b["breakdown"]}
        used_plans |= {f["plan_id"] for f in holder["flags"].values()}
    assert used_features <= set(by_id) and used_plans <= plan_ids
    assert not used_features & members  # customers hold the credit system's balance, not its members'
    granted = [c for c in customers if any(e["plan_id"] in ("pro", "team", "enterprise")
                                           for e in c["balances"].get("credits", {}).get("breakdown", []))]
    assert len(granted) > 100  # plans grant credits too, not only packs


def test_fixture_marker_entities(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    pytester.makeconftest('pytest_plugins = ["autumn_django.testing.pytest_plugin"]')
    pytester.makepyfile("""
        import pytest
        from autumn_django.testing import make_customers, make_entities

        def test_default_has_none(autumn_standin):
            assert autumn_standin.list_entities() == []

        @pytest.mark.autumn_standin(customers=300, seed=2, entities=True)
        def test_generated(autumn_standin):
            expected = make_entities(make_customers(300, seed=2), seed=2)
            assert len(autumn_standin.list_entities()) == len(expected) > 0

        @pytest.mark.autumn_standin(customers=5, entities=[{"id": "e1", "customer_id": "cus_2"}])
        def test_explicit(autumn_standin):
            assert [e["id"] for e in autumn_standin.list_entities()] == ["e1"]
    """)
    result = pytester.runpytest_subprocess("-p", "no:django", "-p", "no:cacheprovider", "--strict-markers",
                                           "-q")  # fmt: skip
    result.assert_outcomes(passed=3)


def test_cli_serve_entities():
    proc = subprocess.Popen(
        [sys.executable, "-m", "autumn_django.testing", "serve", "--customers", "300", "--seed", "2",
         "--port", "0", "--entities"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    try:
        line = proc.stdout.readline().strip()
        expected = len(make_entities(make_customers(300, seed=2), seed=2))
        assert line.endswith(f"(300 customers, sandbox, {expected} entities)"), line
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        r = requests.post(f"{url}/v1/entities.list", json={"limit": 5},
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=5)  # fmt: skip
        assert len(r.json()["list"]) == 5
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
