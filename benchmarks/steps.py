"""Timed syncs: wall time, the customers and entities passes apart, and CPU per process.

``timed_sync`` calls ``sync_all_customers`` as a project does, so it measures whatever the
sync does (one cursor today, windows later). How the two passes are told apart: the
customers pass runs from the call to the moment the sync first asks for an entities page
(the benchmark hands the sync an ``AutumnClient`` whose ``entities.page_response`` notes
that moment, and every process's CPU then), so it holds the catalogue, every customers page
and the settling of customer deletions; the entities pass is the rest (every entities
page, entity deletions, the run's finish). Where the sync process makes no entities
request (a prefetch child makes them all), the time of the last customers page
(``progress``) is used instead and the step says so.
"""

from __future__ import annotations

import gc
import os
import resource
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Step, say
from benchmarks.standin import STANDIN_PIDS

PROGRESS_EVERY = 10.0  # seconds between progress lines inside a long step
# The sync's setting for its number of concurrent created_at windows (issue 17's
# partitioned crawl): timed syncs run with it set to --windows, so the sync and the
# windowed floor split alike. A sync without the setting ignores --windows.
SYNC_WINDOWS_SETTING = "SYNC_WINDOWS"


def sync_has_windows() -> bool:
    from autumn_django.conf import DEFAULTS

    return SYNC_WINDOWS_SETTING in DEFAULTS


def settle() -> None:
    """Collect garbage left by the previous step, so no step pays for another's."""
    gc.collect()


class Ticker:
    """The sync's ``progress`` and ``entity_progress`` callbacks: a line every
    PROGRESS_EVERY seconds (a long step shows it is alive) and the time of the last
    customers page. One perf_counter() per page: nothing next to a page's work."""

    def __init__(self) -> None:
        self.started = self.last = self.last_customer_page = time.perf_counter()

    def customers(self, progress: Any) -> None:
        now = self.last_customer_page = time.perf_counter()
        if now - self.last >= PROGRESS_EVERY:
            self.last = now
            run = progress.run
            done = run.created + run.updated + run.unchanged + run.skipped
            say(f"      ... {done:,} customers, {run.pages} pages, {now - self.started:.0f} s")

    def entities(self, run: Any) -> None:
        now = time.perf_counter()
        if now - self.last >= PROGRESS_EVERY:
            self.last = now
            done = run.entities_created + run.entities_updated + run.entities_unchanged + run.entities_skipped
            say(f"      ... {done:,} entities, {run.entity_pages} pages, {now - self.started:.0f} s")


def _client_noting_entities_start() -> tuple[Any, dict[str, Any]]:
    """An ``AutumnClient`` as the sync builds one, and a dict that gets "entities" = the
    perf_counter() of the sync process's first request for an entities page, and "cpu" =
    ``_all_cpu_seconds()`` just before it."""
    from autumn_django.client import AutumnClient

    client, noted = AutumnClient(), {}
    plain = getattr(getattr(client, "entities", None), "page_response", None)
    if plain is None:
        return client, noted

    def page_response(*args: Any, **kwargs: Any) -> Any:
        if "entities" not in noted:  # once: a scan of /proc takes a few milliseconds
            noted["cpu"] = _all_cpu_seconds()
            noted["entities"] = time.perf_counter()
        return plain(*args, **kwargs)

    # This client only (``iter_pages`` asks it too): the sync's code is untouched.
    client.entities.page_response = page_response
    return client, noted


def timed_sync(name: str, windows: int | None = None) -> Step:
    """``sync_all_customers()`` as a project calls it, timed in its two passes."""
    from django.test.utils import override_settings

    from autumn_django.sync import sync_all_customers

    overrides = {f"AUTUMN_{SYNC_WINDOWS_SETTING}": windows} if windows and sync_has_windows() else {}
    client, noted = _client_noting_entities_start()
    ticker = Ticker()
    settle()
    before = _all_cpu_seconds()
    with override_settings(**overrides):
        started = ticker.started = ticker.last = time.perf_counter()
        try:
            run = sync_all_customers(client=client, progress=ticker.customers,
                                     entity_progress=ticker.entities)
        finally:
            client.close()
    ended = time.perf_counter()
    after = _all_cpu_seconds()
    if run.status != "succeeded":
        raise RuntimeError(f"{name}: the sync run ended {run.status}: {run.failure}")
    cpu = _cpu_between(before, after)
    split = noted.get("entities") or ticker.last_customer_page
    phases = {"customers": split - started, "entities": ended - split}
    customers_cpu: dict[str, float] = {}
    if "entities" not in noted:
        phases["split_at_last_customers_page"] = 1.0
    else:
        # Its prefetch child has exited (and been waited for) before the entities pass
        # starts: every process of the customers pass is counted.
        customers_cpu = _cpu_between(before, noted["cpu"])
    counts = {"created": run.created, "updated": run.updated, "unchanged": run.unchanged,
              "deleted": run.deleted, "skipped": run.skipped,
              "entities_created": run.entities_created, "entities_updated": run.entities_updated,
              "entities_unchanged": run.entities_unchanged, "entities_deleted": run.entities_deleted,
              "entities_skipped": run.entities_skipped, "entity_pages": run.entity_pages}
    seen = run.created + run.updated + run.unchanged + run.skipped
    entities = run.entities_created + run.entities_updated + run.entities_unchanged + run.entities_skipped
    return Step(name, ended - started, seen, counts, cpu, phases, entities, customers_cpu)


def _all_cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of every process a sync's step counts (``_cpu_seconds``,
    ``_other_cpu_seconds``), by name."""
    own, children = _cpu_seconds()
    return {"sync process": own, "prefetch child": children, **_other_cpu_seconds()}


def _cpu_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def _cpu_seconds() -> tuple[float, float]:
    """User + system CPU of this process, and of its finished children (the prefetch child
    is waited for when a sync ends; the stand-in only when the benchmark ends)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def _other_cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by the stand-in and by this run's PostgreSQL server (its
    postmaster and the backends it forked; read from /proc: neither is a child this process
    waits for), so that a step's CPU is accounted for in full. Other clusters on the
    machine are not counted. Empty where /proc is not there."""
    tick = os.sysconf("SC_CLK_TCK")
    postmaster = _postmaster_pid()
    found = {"stand-in": 0.0}
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return {}
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue  # it ended meanwhile
        fields = stat[stat.rindex(")") + 2:].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        if pid in STANDIN_PIDS:
            found["stand-in"] += seconds
        elif postmaster and pid == postmaster:
            # cutime + cstime: the postmaster's reaped backends, e.g. the sync's extra
            # connections (AUTUMN_SYNC_DB_CONNECTIONS), which end with the sync.
            seconds += (int(fields[13]) + int(fields[14])) / tick
            found["PostgreSQL server"] = found.get("PostgreSQL server", 0.0) + seconds
        elif postmaster and int(fields[1]) == postmaster:  # a live backend or helper
            found["PostgreSQL server"] = found.get("PostgreSQL server", 0.0) + seconds
    return found


def _postmaster_pid() -> int | None:
    """The PostgreSQL server the benchmark's connection talks to (the parent of its
    backend), or None on SQLite."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    try:
        stat = Path(f"/proc/{backend}/stat").read_text()
    except OSError:  # a server on another machine: its CPU is not ours to read
        return None
    return int(stat[stat.rindex(")") + 2:].split()[1])


def expect(step: Step, **wanted: int) -> None:
    """Warn (without stopping) when a sync did not do what the step set it up to do."""
    wrong = {k: (step.counts.get(k), v) for k, v in wanted.items() if step.counts.get(k) != v}
    for name, (got, want) in wrong.items():
        say(f"  WARNING: {step.name}: {name} = {got}, expected {want}")


def print_step(step: Step, floors: dict[str, float] | None = None, note: str = "") -> None:
    """One line per step; for a sync, its passes and CPU on lines of their own, each as a
    ratio to the floor it is compared against (``floors``: name -> seconds)."""
    floors = floors or {}
    ratios = "  ".join(f"{step.seconds / seconds:5.2f}x {name}" for name, seconds in floors.items()
                       if name != "entities floor" and seconds)
    counts = ", ".join(f"{k} {v:,}" for k, v in step.counts.items() if v and not k.startswith("entit"))
    say(f"  [{step.name:<26}] {step.seconds:8.2f} s {step.rate:9,.0f} customers/s  {ratios}"
        f"  {counts}{'  ' + note if note else ''}")
    if step.phases:
        entity_counts = ", ".join(f"{k.removeprefix('entities_')} {v:,}" for k, v in step.counts.items()
                                  if v and k.startswith("entit"))
        entity_floor = floors.get("entities floor")
        ratio = f" = {step.phases['entities'] / entity_floor:.2f}x entities floor" if entity_floor else ""
        how = " (split at the last customers page)" if step.phases.get("split_at_last_customers_page") else ""
        say(" " * 30 + f"customers pass {step.phases['customers']:.2f} s; entities pass "
            f"{step.phases['entities']:.2f} s{ratio}: {step.entities:,} entities ({entity_counts}){how}")
    if step.cpu:
        from benchmarks.report import cpu_bound_seconds

        cores, total = os.cpu_count() or 1, sum(step.cpu.values())
        bound = cpu_bound_seconds(step.cpu, cores)
        say(" " * 30 + "cpu: " + ", ".join(f"{k} {v:.2f} s" for k, v in step.cpu.items())
            + f"; total {total:.2f} CPU-s, so at least {bound:.2f} s on {cores} cores")
        if step.customers_cpu:
            total = sum(step.customers_cpu.values())
            say(" " * 30 + "cpu of the customers pass: "
                + ", ".join(f"{k} {v:.2f} s" for k, v in step.customers_cpu.items())
                + f"; total {total:.2f} CPU-s, so at least {total / cores:.2f} s on {cores} cores")
