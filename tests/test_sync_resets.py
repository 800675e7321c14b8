"""Balances due to reset: Autumn applies a due reset only when the customer is read through
customers.get; a list row shows last period's usage until its queued reset lands
(autumn-api.md, "Balance resets (lazy)"). The sync reads such customers again with get."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command

from autumn_django.client import AutumnClient
from autumn_django.models import Customer, SyncRun
from autumn_django.sync import sync_all_customers
from autumn_django.sync.pages import preparer
from autumn_django.sync.pages.records import LIST_PRODUCT_CAP

from .conftest import assert_mirror_matches, expected_children, mirrored_children

pytestmark = pytest.mark.django_db(transaction=True)


def _capped_ids(customers: list[dict]) -> set[str]:
    return {c["id"] for c in customers
            if c["id"] and len(c["subscriptions"]) + len(c["purchases"]) > LIST_PRODUCT_CAP}


def _earliest_reset(customer: dict) -> int | None:
    times = [b["next_reset_at"] for b in customer["balances"].values() if b.get("next_reset_at")]
    times += [e["reset"]["resets_at"] for b in customer["balances"].values()
              for e in b.get("breakdown") or [] if e.get("reset")]
    return min(times) if times else None


def _gets(server) -> list[str]:
    return sorted(body["customer_id"] for endpoint, body in server.requests if endpoint == "customers.get")


def test_a_customer_whose_list_row_is_due_to_reset_is_mirrored_as_get_answers_it(make_standin):
    server = make_standin(120, reset_lands_after_ms=None)  # only get resets it, as long as the test runs
    everyone = server.list_customers()
    capped = _capped_ids(everyone)
    due = next(c for c in everyone if c["id"] and c["id"] not in capped and _earliest_reset(c))
    listed = server.make_reset_due(due["id"])
    with AutumnClient() as client:
        row = next(r for page in client.customers.iter_pages(limit=1000) for r in page.customers
                   if r["id"] == due["id"])
    assert row == listed, "the list shows the reset due and not applied"
    server.clear_requests()

    run = sync_all_customers()

    assert _gets(server) == sorted(capped | {due["id"]})
    assert run.reread == SyncRun.objects.get(pk=run.pk).reread == len(capped) + 1
    answer = server.get_customer(due["id"])  # what get answered, stored by Autumn
    assert answer != listed
    assert all(b["usage"] == 0 and b["next_reset_at"] > listed["balances"][f]["next_reset_at"]
               for f, b in answer["balances"].items() if listed["balances"][f]["next_reset_at"])
    mirrored = Customer.objects.get(autumn_id=due["id"])
    assert mirrored.raw == answer
    assert mirrored_children(mirrored) == expected_children(answer)
    assert mirrored.read_via in ("get", "")  # read through get when the writer records it
    assert_mirror_matches(server)

    again = sync_all_customers()  # the list now shows the reset: nothing due any more

    assert (again.reread, again.updated) == (len(capped), 0)


def test_a_page_memo_is_not_trusted_once_a_reset_on_it_comes_due(make_standin, settings, monkeypatch):
    settings.AUTUMN_SYNC_PREFETCH_PROCESS = False  # the preparer's clock, moved below, is this process's
    server = make_standin(60, reset_lands_after_ms=None)
    everyone = server.list_customers()
    capped = _capped_ids(everyone)
    assert not any(c["id"] and (_earliest_reset(c) or 0) < 0 for c in everyone)
    sync_all_customers()
    assert sync_all_customers().reread == len(capped)  # every page's memo used again
    soonest = min(at for c in everyone if c["id"] and c["id"] not in capped and (at := _earliest_reset(c)))
    coming_due = {c["id"] for c in everyone
                  if c["id"] and c["id"] not in capped and (_earliest_reset(c) or soonest + 1) <= soonest}
    # The same bytes, later: the soonest reset on a page has come due since its memo.
    monkeypatch.setattr(preparer, "_now_ms", lambda: soonest)
    server.clear_requests()

    run = sync_all_customers()

    assert _gets(server) == sorted(capped | coming_due)
    assert run.reread == len(capped | coming_due)


def test_the_command_and_the_admin_show_the_customers_read_again(make_standin, admin_client):
    server = make_standin(120, reset_lands_after_ms=None)
    everyone = server.list_customers()
    capped = _capped_ids(everyone)
    due = next(c for c in everyone if c["id"] and c["id"] not in capped and _earliest_reset(c))
    server.make_reset_due(due["id"])
    out = StringIO()

    call_command("autumn_sync", verbosity=0, stdout=out, stderr=StringIO())

    summary = out.getvalue().strip().splitlines()[0]  # the customers' line; the entities' follows
    assert summary.endswith(f"skipped 0. Read again through customers.get: {len(capped) + 1}."), summary
    run = SyncRun.objects.latest()
    assert run.reread == len(capped) + 1
    listing = admin_client.get("/admin/autumn_django/syncrun/").content.decode()
    assert "Read again (get)</a>" in listing
    assert re.search(rf'<td class="field-read_again">{run.reread}</td>', listing)
    page = admin_client.get(f"/admin/autumn_django/syncrun/{run.pk}/change/").content.decode()
    assert re.search(rf'Read again \(get\):</label>\s*<div class="readonly">{run.reread}</div>', page)
