"""``serve --latency-ms`` and ``--skew``: the options the sync benchmark starts its stand-in with.

Latency must be per request and concurrent (a windowed crawl has several pages in flight;
a stand-in that answered them one after another would measure its own queue), and the
skew must bunch customers as documented while ``make_customers`` stays as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from autumn_django.testing import make_customers
from autumn_django.testing.skew import HOUR_MS, skew_created_at

REPO_ROOT = Path(__file__).resolve().parent.parent
KEY = "am_sk_test_latency000000000000000"
LATENCY = 0.4


def _serve(*options: str) -> Iterator[tuple[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "autumn_django.testing", "serve", "--customers", "40", "--seed", "3",
         "--port", "0", *options],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    try:
        line = proc.stdout.readline().strip()
        yield line.split(" on ", 1)[1].split(" ", 1)[0], line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def slow_standin() -> Iterator[tuple[str, str]]:
    yield from _serve("--latency-ms", str(int(LATENCY * 1000)), "--control")


def test_latency_is_added_to_every_request_and_concurrent_requests_wait_side_by_side(slow_standin):
    url, line = slow_standin
    assert line.endswith(f"(40 customers, sandbox, {LATENCY * 1000:g} ms latency, "
                         "control channel on /_standin/)")
    took: list[float] = []

    def one() -> None:
        with requests.Session() as session:  # a connection of its own, as a crawler thread has
            started = time.perf_counter()
            r = session.post(f"{url}/v1/customers.list", json={"limit": 10},
                             headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
            took.append(time.perf_counter() - started)
            assert r.status_code == 200 and len(r.json()["list"]) == 10

    threads = [threading.Thread(target=one) for _ in range(6)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    assert len(took) == 6 and min(took) >= LATENCY
    # In series six requests take 2.4 s; side by side about one delay.
    assert elapsed < 2 * LATENCY, f"six concurrent requests took {elapsed:.2f} s"
    # The control channel is not the API: no delay (the benchmark's changes go through it).
    started = time.perf_counter()
    r = requests.get(f"{url}/_standin/entity", params={"env": "sandbox"}, timeout=30)
    assert r.status_code == 200 and time.perf_counter() - started < LATENCY


def test_latency_option_refuses_nonsense():
    for bad in ("-1", "fast", "nan"):
        done = subprocess.run([sys.executable, "-m", "autumn_django.testing", "serve", "--latency-ms", bad],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        assert done.returncode == 2
        assert "--latency-ms: a number of milliseconds >= 0" in done.stderr


def test_skew_bunches_customers_on_a_launch_day_and_an_import_hour():
    plain = make_customers(2000, seed=5)
    skewed = skew_created_at(plain, seed=5)
    assert make_customers(2000, seed=5) == plain  # the input is not touched
    assert skewed == skew_created_at(plain, seed=5)  # deterministic
    assert [c["id"] for c in skewed] == [c["id"] for c in plain]
    moved = [s["created_at"] for s, p in zip(skewed, plain, strict=True)
             if s["created_at"] != p["created_at"]]
    days = Counter(t // 86_400_000 for t in moved)
    hours = Counter(t // HOUR_MS for t in moved)
    (_, on_launch_day), = days.most_common(1)
    (_, in_import_hour), = hours.most_common(1)
    # 30% of 2000 on the launch day (a UTC day), 20% in the import hour (a clock hour).
    assert on_launch_day == 600 and in_import_hour == 400
    span = (min(p["created_at"] for p in plain), max(p["created_at"] for p in plain))
    assert all(span[0] <= t <= span[1] + 86_400_000 for t in moved)
    with pytest.raises(ValueError, match="add up to at most 1"):
        skew_created_at(plain, launch_share=0.7, import_share=0.5)


def test_cli_skew_serves_the_skewed_customers():
    for url, line in _serve("--skew"):
        assert line.endswith("(40 customers, sandbox, skewed created_at)")
        r = requests.post(f"{url}/v1/customers.list", json={"limit": 100, "sort_order": "asc"},
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
        served = sorted(c["created_at"] for c in r.json()["list"])
        assert served == sorted(c["created_at"] for c in skew_created_at(make_customers(40, seed=3), seed=3))
        assert served != sorted(c["created_at"] for c in make_customers(40, seed=3))
