"""Peak memory of a first sync, each in a fresh child process.

Linux keeps ru_maxrss across exec: a child started straight from the benchmark (fork or
vfork, then exec) begins with the benchmark's peak RSS as its own, hundreds of MiB after
a 100,000-customer sync. A small launcher in between starts the measured process from a
small address space, so its ru_maxrss is its own (floor: the launcher's ~10 MiB).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, mib, proc_field, say
from benchmarks.database import fresh_database
from benchmarks.floors import one_cursor
from benchmarks.standin import Data, standin
from benchmarks.steps import settle

LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def measure_memory(db: str, sizes: list[int], data: Data) -> list[dict[str, Any]]:
    """Peak RSS of a first sync into an empty mirror, each in a fresh child process, on
    a stand-in serving ``data`` (entities, skew, latency) at each size."""
    results = []
    for size in sizes:
        with standin(replace(data, customers=size)) as served:
            url = served.url
            fresh_database(db)
            one_cursor(url)  # warm the stand-in's row cache, as for the timed first sync
            say(f"  [peak RSS, {size:,}] first sync in a fresh process ...")
            result = {**_run_memory_child(db, url), "customers": size}
            _print_memory(result)
            results.append(result)
    return results


def _run_memory_child(db: str, api_url: str) -> dict[str, Any]:
    from django.db import connections

    connections.close_all()  # the child alone uses the database meanwhile
    cmd = [sys.executable, "-c", LAUNCHER,
           sys.executable, "-m", "benchmarks.sync_benchmark", "--db", db, "--memory-child"]
    done = subprocess.run(cmd, env={**os.environ, "AUTUMN_API_URL": api_url}, cwd=REPO_ROOT,  # noqa: S603
                          stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _print_memory(result: dict[str, Any]) -> None:
    helpers = ", ".join(f"{name} {mib(kib):.1f}" for name, kib in result["helpers_vmhwm_kib"].items())
    say(f"  [peak RSS, {result['customers']:,}] {mib(result['together_kib']):.1f} MiB at once "
        f"(sampled); each process's own peak added up: {mib(result['maxrss_total_kib']):.1f} MiB "
        f"(sync process {mib(result['maxrss_self_kib']):.1f} + helper processes "
        f"{mib(result['maxrss_children_kib']):.1f}; {mib(result['maxrss_before_sync_kib']):.1f} "
        f"before the sync; VmHWM {mib(result['vmhwm_kib']):.1f}; helpers' own VmHWM: "
        f"{helpers or 'no helper seen'}), sync {result['seconds']:.1f} s")


def memory_child() -> int:
    """The child side: a first sync, then its peak RSS as one JSON line on stdout.

    RUSAGE_CHILDREN covers helper processes the sync may start (waited-for ones only). A
    helper's ru_maxrss includes this process's RSS when it was spawned (see LAUNCHER), so
    their own peaks are also sampled from /proc while the sync runs.
    """
    from autumn_django.sync import sync_all_customers

    settle()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sampler = HelperSampler()
    sampler.start()
    started = time.perf_counter()
    try:
        run = sync_all_customers()
    finally:
        seconds = time.perf_counter() - started
        sampler.stop()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    helpers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"maxrss_self_kib": own, "maxrss_children_kib": helpers,
                      "maxrss_total_kib": own + helpers, "maxrss_before_sync_kib": before,
                      # The same peak read from the kernel's memory map: a cross-check.
                      "vmhwm_kib": _status_kib(os.getpid(), "VmHWM"),
                      "helpers_vmhwm_kib": sampler.peaks, "together_kib": sampler.together,
                      "seconds": seconds,
                      "created": run.created, "status": run.status}), flush=True)
    return 0


class HelperSampler(threading.Thread):
    """Every SAMPLE_EVERY seconds, the VmHWM (own peak RSS) of each descendant process,
    and the RSS of this process and its descendants added up at that moment.

    VmHWM only grows, so the last sample before a helper exits is (nearly) its peak. The
    per-process peaks need not coincide (the prefetch child has exited before the
    entities pass, the sync process's own peak), so their sum overstates what the machine
    held at once; ``together`` is that figure, from samples (a peak between two may be
    missed). A scan of /proc costs a few milliseconds; at this rate it barely touches the
    sync.
    """

    SAMPLE_EVERY = 0.2

    def __init__(self) -> None:
        super().__init__(name="helper-rss-sampler", daemon=True)
        self.peaks: dict[str, int] = {}  # "pid command" -> VmHWM KiB
        self.together = 0  # KiB: the largest sum of the process tree's RSS in one sample
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.SAMPLE_EVERY):
            self.sample()

    def stop(self) -> None:
        self._done.set()
        self.join()
        self.sample()

    def sample(self) -> None:
        now = _status_kib(os.getpid(), "VmRSS")
        for pid in _descendants(os.getpid()):
            name = f"{pid} {proc_field(f'/proc/{pid}/status', 'Name') or '?'}"
            self.peaks[name] = max(self.peaks.get(name, 0), _status_kib(pid, "VmHWM"))
            now += _status_kib(pid, "VmRSS")
        self.together = max(self.together, now)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parent = int(stat.rsplit(")", 1)[1].split()[1])  # the name may hold spaces
                children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _status_kib(pid: int, field: str) -> int:
    return int((proc_field(f"/proc/{pid}/status", field) or "0 kB").split()[0])
