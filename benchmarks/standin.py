"""The Autumn stand-in in a child process, and its control channel.

A separate process: the stand-in's handler threads would otherwise hold the benchmark's
GIL while the sync runs, and the figures would measure both. The latency (``serve
--latency-ms``) is slept in each request's own handler thread, so requests in flight
together wait together, as across a network.
"""

from __future__ import annotations

import contextlib
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from benchmarks.common import PAGE_SIZE, REPO_ROOT, SEED, say

# Generating 100,000 customers takes ~5 s on a quiet machine; leave room for a busy one.
START_TIMEOUT = 600.0

# The stand-in's process ids while they run, for their share of the CPU (steps.py).
STANDIN_PIDS: list[int] = []


@dataclass(frozen=True)
class StandIn:
    url: str
    customers: int
    entities: int  # as the stand-in counted them when it started (0 without --entities)
    latency_ms: float


@dataclass(frozen=True)
class Data:
    """What the stand-in serves: the dataset options of one benchmark run."""

    customers: int
    entities: bool = True
    skew: bool = True
    latency_ms: float = 0.0


@contextlib.contextmanager
def standin(data: Data) -> Iterator[StandIn]:
    """Run ``python -m autumn_django.testing serve`` with ``data``; yields where it listens."""
    what = (f"{data.customers:,} customers" + (" with entities" if data.entities else "")
            + (", skewed created_at" if data.skew else "") + f", {data.latency_ms:g} ms latency")
    say(f"stand-in: generating {what} (seed {SEED}) in a child process ...")
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "autumn_django.testing", "serve", "--customers", str(data.customers),
           "--seed", str(SEED), "--port", "0", "--org-max-limit", str(PAGE_SIZE), "--control",
           "--latency-ms", str(data.latency_ms)]
    cmd += ["--entities"] if data.entities else []
    cmd += ["--skew"] if data.skew else []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)  # noqa: S603
    STANDIN_PIDS.append(proc.pid)
    try:
        line = _read_listening_line(proc)
        url = re.search(r"listening on (http://\S+)", line).group(1)  # type: ignore[union-attr]
        entities = re.search(r", (\d+) entities", line)
        say(f"stand-in: listening on {url} (pid {proc.pid}, ready in {time.perf_counter() - started:.1f} s)")
        yield StandIn(url, data.customers, int(entities.group(1)) if entities else 0, data.latency_ms)
    finally:
        _stop(proc)
        STANDIN_PIDS.remove(proc.pid)


def _read_listening_line(proc: subprocess.Popen) -> str:
    """Wait for the stand-in's one "listening on URL (...)" line."""
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            if "listening on http://" in line:
                return line
            if not line:  # EOF: it exited
                break
        elif proc.poll() is not None:
            break
    raise RuntimeError(f"the stand-in did not start (exit code {proc.poll()}); see its output above")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM (the stand-in exits 0 on it), then SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


def control(session: Any, method: str, url: str, **kwargs: Any) -> Any:
    """One request to the stand-in's control channel (``/_standin/*``: no latency, no key)."""
    response = session.request(method, url, timeout=60, **kwargs)
    if response.status_code == 404 and '"not_found"' in response.text:
        raise RuntimeError(f"{url} is unknown: the stand-in was not started with --control")
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")
    return response.json()
