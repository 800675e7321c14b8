"""Fetch-only floors: what a lean client takes to read everything, measured in the same run.

The floor is a lean client, not the app's own (issue 17): a plain ``requests.Session``
and the fastest decoder installed (``orjson``, else ``json``), no work on a page beyond
decoding it. Three floors:

- **one cursor**: ``customers.list`` ascending, ``limit`` = the sync's page size, page
  after page, as a one-cursor sync crawls;
- **windowed**: the ``created_at`` key space split into K windows (``created_at_range``,
  inclusive epoch ms) crawled at once by K threads, each with its own session. The split
  knows nothing of the distribution: two requests at once ask for the oldest and the
  newest customer, and [oldest, newest] is cut into K windows of equal *time* (the first open
  below, the last open above, as a sync's must be). With a skewed distribution (a launch
  day, an import hour) one window holds far more than its share, and that window is the
  floor's wall time: it is what a naive split achieves, which an adaptive one may beat
  (a sync faster than this floor shows a ratio below 1);
- **entities**: one cursor over ``entities.list`` (newest first; it has no sort order).

Both customers floors step past Autumn's null-cursor defect as the app's client does (a
full page ending in a customer without an id has no ``next_cursor``: go on from its
``created_at``, skipping the customers of that millisecond already counted); the entities
floor asks such a page again with the limit that ends it on an entity with an id. That
work happens a few times per crawl and costs nothing next to a page.
"""

from __future__ import annotations

import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

import requests

from benchmarks.common import PAGE_SIZE, SECRET_KEY, Step, say

try:
    import orjson

    loads, DECODER = orjson.loads, f"orjson {orjson.__version__}"
except ImportError:  # the speedups extra is not installed
    loads, DECODER = json.loads, "json (stdlib)"

HEADERS = {"Authorization": f"Bearer {SECRET_KEY}", "Content-Type": "application/json",
           "x-api-version": "2.3"}
FLOOR_NAMES = {"one_cursor": "one-cursor floor", "windowed": "windowed floor", "entities": "entities floor"}


def _session() -> requests.Session:
    session = requests.Session()
    session.headers.update(HEADERS)
    return session


def _post(session: requests.Session, url: str, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    response = session.post(f"{url}/v1/{endpoint}", data=json.dumps(body), timeout=300)
    if response.status_code != 200:
        raise RuntimeError(f"{endpoint} answered {response.status_code}: {response.text[:200]}")
    return loads(response.content)


def crawl_customers(session: requests.Session, url: str, start: int | None = None,
                    end: int | None = None) -> int:
    """Customers in [start, end] (None: open), ascending; returns how many."""
    cursor, count = "", 0
    stuck_at, counted_there = None, set()  # past the null-cursor defect: that ms's customers seen
    while True:
        body: dict[str, Any] = {"limit": PAGE_SIZE, "sort_order": "asc", "start_cursor": cursor}
        window = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
        if window:
            body["created_at_range"] = window
        rows = _post(session, url, "customers.list", body)
        listed = rows["list"]
        if stuck_at is None:
            count += len(listed)
        else:
            count += sum(1 for c in listed if _key(c) not in counted_there)
        if rows.get("next_cursor"):
            cursor = rows["next_cursor"]
            continue
        if len(listed) < PAGE_SIZE:
            return count
        last = listed[-1].get("created_at")
        keys = {_key(c) for c in listed if c.get("created_at") == last}
        if last == stuck_at and keys <= counted_there:
            return count  # a whole page of one millisecond, all seen: the app's client warns here
        counted_there = (counted_there if last == stuck_at else set()) | keys
        stuck_at, start, cursor = last, last, ""


def _key(customer: dict[str, Any]) -> tuple:
    return customer.get("created_at"), customer.get("id"), customer.get("email")


def one_cursor(url: str) -> int:
    return crawl_customers(_session(), url)


def windowed(url: str, windows: int) -> int:
    """K windows of equal time between the oldest and the newest customer, at once."""
    with ThreadPoolExecutor(max_workers=windows) as pool:
        # The two ends of the key space, asked at once: one round trip before the crawl.
        oldest, newest = pool.map(lambda order: _post(_session(), url, "customers.list",
                                                      {"limit": 1, "sort_order": order})["list"],
                                  ("asc", "desc"))
        if not oldest:
            return 0
        lo, hi = oldest[0]["created_at"], newest[0]["created_at"]
        edges = [lo + (hi + 1 - lo) * i // windows for i in range(windows + 1)]
        ranges = [(None if i == 0 else edges[i], None if i == windows - 1 else edges[i + 1] - 1)
                  for i in range(windows)]
        return sum(pool.map(lambda r: crawl_customers(_session(), url, *r), ranges))


def entities(url: str) -> int:
    session = _session()
    cursor, count, ask = "", 0, PAGE_SIZE
    while True:
        rows = _post(session, url, "entities.list", {"limit": ask, "start_cursor": cursor})
        listed, next_cursor = rows["list"], rows.get("next_cursor")
        if next_cursor is None and len(listed) >= ask and listed and listed[-1].get("id") is None:
            with_id = [i for i, e in enumerate(listed) if e.get("id") is not None]
            if not with_id:
                say("  WARNING: entities floor: a full page without ids; stopped there")
                return count + len(listed)
            ask = with_id[-1] + 1  # ask again, ending on an entity whose cursor goes on
            continue
        count += len(listed)
        if next_cursor is None:
            return count
        cursor, ask = next_cursor, PAGE_SIZE


class Floors:
    """The three floors, each measured several times through the run: twice before the
    syncs and once after each (the first pass also fills the stand-in's cache of
    serialized rows, for every later step, and is not counted). A floor is the median of
    its runs: on a shared machine one pass can be 15% off either way."""

    def __init__(self, url: str, windows: int, customers: int, entity_count: int) -> None:
        self.url, self.windows, self.customers, self.entity_count = url, windows, customers, entity_count
        self.runs: dict[str, list[Step]] = {key: [] for key in FLOOR_NAMES}
        if not entity_count:
            del self.runs["entities"]
        say(f"floors: lean client (requests + {DECODER}), page size {PAGE_SIZE}, {windows} windows")
        self._measure_all("(warm-up: fills the stand-in's row cache; not counted)", counted=False)

    def measure(self, note: str = "", *, deleted: int = 0, deleted_entities: int = 0) -> None:
        self._measure_all(note, deleted=deleted, deleted_entities=deleted_entities)

    def _measure_all(self, note: str, *, counted: bool = True, deleted: int = 0,
                     deleted_entities: int = 0) -> None:
        crawls = {"one_cursor": lambda: one_cursor(self.url), "entities": lambda: entities(self.url),
                  "windowed": lambda: windowed(self.url, self.windows)}
        for key in self.runs:
            started = time.perf_counter()
            found = crawls[key]()
            seconds = time.perf_counter() - started
            wanted = self.entity_count - deleted_entities if key == "entities" else self.customers - deleted
            step = Step(FLOOR_NAMES[key], seconds, 0 if key == "entities" else found,
                        entities=found if key == "entities" else 0)
            if counted:
                self.runs[key].append(step)
            rate = f"{found / seconds:9,.0f} {'entities' if key == 'entities' else 'customers'}/s"
            say(f"  [{step.name:<26}] {seconds:8.2f} s {rate}  {note}")
            if found != wanted:
                say(f"  WARNING: {step.name} read {found:,}, the stand-in has {wanted:,}")

    def seconds(self, key: str) -> float:
        return statistics.median(step.seconds for step in self.runs[key])

    def by_name(self) -> dict[str, float]:
        """Floor name -> median seconds, for print_step's ratios."""
        return {FLOOR_NAMES[key]: self.seconds(key) for key in self.runs if self.runs[key]}

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"decoder": DECODER, "windows": self.windows}
        for key, runs in self.runs.items():
            median = Step(FLOOR_NAMES[key], self.seconds(key), runs[0].customers, entities=runs[0].entities)
            out[key] = {**asdict(median), "runs": [round(step.seconds, 3) for step in runs]}
            say(f"  {FLOOR_NAMES[key]}: median of {len(runs)} runs {median.seconds:.2f} s "
                f"(min {min(s.seconds for s in runs):.2f}, max {max(s.seconds for s in runs):.2f})")
        return out
