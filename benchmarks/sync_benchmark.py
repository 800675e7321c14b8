"""Benchmark of ``autumn_django``'s sync against the local Autumn stand-in, on one database.

    python -m benchmarks.sync_benchmark --db sqlite --customers 100000 --json-out out.json
    python -m benchmarks.sync_benchmark --db sqlite --customers 20000 --profile

``benchmarks/run.sh`` runs it on SQLite and PostgreSQL and prints the combined table
(``benchmarks/report.py``). One run, on one database:

1. starts the stand-in (``python -m autumn_django.testing serve``) seeded with N customers
   in a child process, so its threads do not compete for this process's GIL;
2. drops and recreates the benchmark database, migrates it;
3. times fetch-only (the app's client paging through every customer: after a warm-up pass
   that fills the stand-in's cache of serialized rows, twice before the syncs and once
   after each; the median is the floor every ratio divides by), first sync into the
   empty mirror (on PostgreSQL also with one database connection, before it), no-change
   re-sync, and re-sync after 1% of the customers changed (balance
   usage, subscriptions, names and metadata, through the stand-in's ``--control``
   channel) and a few were deleted;
4. times the naive baseline (per-customer ``update_or_create`` plus children deleted and
   re-created one by one, one transaction per customer) on a sample, scaled to N;
5. measures the peak RSS of a first sync in a fresh child process at two sizes.

``--profile`` instead profiles the first sync and the no-change re-sync with cProfile and
writes ``benchmarks/out/profile-<db>-*.txt`` (top 25 by cumulative and by own time), once
with the app's defaults and once (``*-inprocess``) with ``AUTUMN_SYNC_PREFETCH_PROCESS =
False``, since work done in the sync's prefetch child process is invisible to cProfile.

Figures are wall-clock seconds (``time.perf_counter()``) with the GC settled before each
step. The exit code is 0 whenever the benchmark ran: the targets are informational.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import random
import re
import resource
import select
import sqlite3
import statistics
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "benchmarks" / "out"
PAGE_SIZE = 1000  # customers.list page size; the stand-in's org maximum is set to match
SEED = 1
# Generating 100,000 customers takes ~5 s on a quiet machine; leave room for a busy one.
STANDIN_START_TIMEOUT = 600.0
PROGRESS_EVERY = 10.0  # seconds between progress lines inside a long step
PROFILE_TOP = 25

# The 1% change: what billing does to customers (usage, subscriptions) plus profile edits,
# made through the stand-in's control channel (the only way to change balances and
# subscriptions of a stand-in running in another process).
CHANGE_SHARE = 0.01
DELETE_SHARE = 0.0005  # "a few deleted": 50 of 100,000

# Linux keeps ru_maxrss across exec: a child started straight from this process (fork or
# vfork, then exec) begins with *this* process's peak RSS as its own, hundreds of MiB after
# a 100,000-customer sync. A small launcher in between starts the measured process from a
# small address space, so its ru_maxrss is its own (floor: the launcher's ~10 MiB).
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


# -- small records ---------------------------------------------------------------------------


@dataclass
class Step:
    """One timed step, as printed and as stored in the JSON output."""

    name: str
    seconds: float
    customers: int
    counts: dict[str, int] = field(default_factory=dict)
    # CPU seconds of the sync process and of its prefetch child: where the time goes.
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.customers / self.seconds if self.seconds else 0.0


# -- output ----------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, flush=True)


def print_step(step: Step, fetch_seconds: float | None = None, note: str = "") -> None:
    ratio = f"{step.seconds / fetch_seconds:6.2f}x fetch-only" if fetch_seconds else " " * 17
    counts = ", ".join(f"{k} {v:,}" for k, v in step.counts.items() if v)
    say(f"  [{step.name:<22}] {step.seconds:8.2f} s {step.rate:9,.0f} customers/s  {ratio}"
        f"  {counts}{'  ' + note if note else ''}")
    if step.cpu:
        from benchmarks.report import cpu_bound_seconds

        cores, total = os.cpu_count() or 1, sum(step.cpu.values())
        bound = cpu_bound_seconds(step.cpu, cores)
        ratio = f" {bound / fetch_seconds:.2f}x" if fetch_seconds else ""
        say("  " + " " * 24 + "cpu: " + ", ".join(f"{k} {v:.2f} s" for k, v in step.cpu.items())
            + f"; total {total:.2f} CPU-s, so at least {bound:.2f} s on {cores} cores{ratio}")


class Ticker:
    """A sync progress callback printing a line every PROGRESS_EVERY seconds: a long step
    shows it is alive. One perf_counter() per page: nothing next to a page's work."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()

    def __call__(self, progress: Any) -> None:
        now = time.perf_counter()
        if now - self.last >= PROGRESS_EVERY:
            self.last = now
            run = progress.run
            done = run.created + run.updated + run.unchanged + run.skipped
            say(f"      ... {done:,} customers, {run.pages} pages, {now - self.started:.0f} s")


# -- the stand-in in its own process ---------------------------------------------------------


@contextlib.contextmanager
def standin(customers: int) -> Iterator[str]:
    """Run ``python -m autumn_django.testing serve`` seeded with ``customers``; yields its URL.

    A separate process: the stand-in's handler threads would otherwise hold this process's
    GIL while the sync runs, and the figures would measure both.
    """
    say(f"stand-in: generating {customers:,} customers (seed {SEED}) in a child process ...")
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "autumn_django.testing", "serve", "--customers", str(customers),
           "--seed", str(SEED), "--port", "0", "--org-max-limit", str(PAGE_SIZE), "--control"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)  # noqa: S603
    _STANDIN_PIDS.append(proc.pid)
    try:
        url = _read_listening_url(proc)
        say(f"stand-in: listening on {url} (pid {proc.pid}, ready in {time.perf_counter() - started:.1f} s)")
        yield url
    finally:
        _stop(proc)
        _STANDIN_PIDS.remove(proc.pid)


def _read_listening_url(proc: subprocess.Popen) -> str:
    """Wait for the stand-in's one "listening on URL" line."""
    assert proc.stdout is not None
    deadline = time.monotonic() + STANDIN_START_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                return match.group(1)
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


# -- database ----------------------------------------------------------------------------------


def configure(db: str) -> None:
    """Point Django at the benchmark settings for ``db`` (before django.setup())."""
    if str(REPO_ROOT) not in sys.path:  # run as a file, not with -m
        sys.path.insert(0, str(REPO_ROOT))
    os.environ["AUTUMN_BENCH_DB"] = db
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"


def setup_django() -> None:
    import django

    django.setup()


def fresh_database(db: str) -> None:
    """Drop and recreate the benchmark database, then migrate it: an empty mirror."""
    from django.core.management import call_command
    from django.db import connections

    from benchmarks import settings as bench

    started = time.perf_counter()
    connections.close_all()  # Django reconnects lazily to the new database
    if db == "sqlite":
        bench.SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{bench.SQLITE_PATH}{suffix}").unlink(missing_ok=True)
        where = str(bench.SQLITE_PATH)
    else:
        _recreate_postgres_database(bench.POSTGRES_NAME)
        where = f"{bench.POSTGRES_NAME} on {os.environ.get('PGHOST')}:{os.environ.get('PGPORT')}"
    call_command("migrate", verbosity=0)
    say(f"database: fresh {db} ({where}), migrated in {time.perf_counter() - started:.1f} s")


def check_migrations() -> None:
    """Stop early if the models' tables differ from what the migrations build (a tree
    caught mid-edit): the sync would otherwise fail minutes into the run on a missing
    column. Changes that touch no table (Meta options such as permissions) are fine."""
    from django.apps import apps
    from django.db.migrations.autodetector import MigrationAutodetector
    from django.db.migrations.loader import MigrationLoader
    from django.db.migrations.operations import AlterModelManagers, AlterModelOptions
    from django.db.migrations.state import ProjectState

    loader = MigrationLoader(None, ignore_no_migrations=True)
    changes = MigrationAutodetector(loader.project_state(), ProjectState.from_apps(apps)).changes(
        graph=loader.graph)
    schema = [op.describe() for migrations in changes.values() for migration in migrations
              for op in migration.operations if not isinstance(op, (AlterModelOptions, AlterModelManagers))]
    if schema:
        raise RuntimeError("the models have changes that no migration covers "
                           f"({'; '.join(schema)}); run the benchmark on a consistent tree")


def _recreate_postgres_database(name: str) -> None:
    """Through psycopg against the ``postgres`` database (the PG* variables say where)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dbname="postgres", autocommit=True) as conn:
        # FORCE: a connection a crashed earlier run left behind must not block the drop.
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def mirror_rows() -> dict[str, int]:
    from autumn_django.models import Balance, Customer, Flag, Purchase, Subscription

    counts = {model.__name__.lower(): model.objects.count()
              for model in (Customer, Subscription, Purchase, Balance, Flag)}
    counts["total"] = sum(counts.values())
    return counts


# -- machine --------------------------------------------------------------------------------


def machine_info(db: str) -> dict[str, Any]:
    """What the figures depend on; report.py prints it as one line."""
    import django
    from django.db import connection

    info: dict[str, Any] = {
        "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown CPU",
        "cores": os.cpu_count(),
        "ram_gib": round(int((_proc_field("/proc/meminfo", "MemTotal") or "0 kB").split()[0]) / 2**20, 1),
        "python": platform.python_version(),
        "django": django.get_version(),
        "sqlite": sqlite3.sqlite_version,
        "orjson": _version_of("orjson"),
        "psycopg": _version_of("psycopg"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "code": _code_revision(),
    }
    with connection.cursor() as cursor:
        if db == "postgres":
            cursor.execute("SHOW server_version")
            info["postgresql"] = cursor.fetchone()[0]
        else:
            cursor.execute("PRAGMA journal_mode")
            info["sqlite_journal_mode"] = cursor.fetchone()[0]
            cursor.execute("PRAGMA synchronous")
            info["sqlite_synchronous"] = cursor.fetchone()[0]
    return info


def _proc_field(path: str, name: str) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    return None


def _code_revision() -> str:
    """The commit measured, and whether the app's files differ from it."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)  # noqa: S603, S607
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    dirty = git("status", "--porcelain", "--", "autumn_django")
    return f"{commit} + uncommitted changes to autumn_django" if dirty else commit


def _version_of(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


# -- the timed steps ---------------------------------------------------------------------------


def settle() -> None:
    """Collect garbage left by the previous step, so no step pays for another's."""
    gc.collect()


def fetch_only(api_url: str | None = None) -> Step:
    """The app's own client pages through every customer and discards them: the floor."""
    from autumn_django.client import AutumnClient

    settle()
    started = time.perf_counter()
    count = 0
    with AutumnClient(api_url=api_url) as client:
        for page in client.customers.iter_pages(limit=PAGE_SIZE):
            count += len(page.customers)
    return Step("fetch-only", time.perf_counter() - started, count)


def timed_sync(name: str) -> Step:
    """``sync_all_customers()`` as a project calls it."""
    from autumn_django.sync import sync_all_customers

    settle()
    before, others_before = _cpu_seconds(), _other_cpu_seconds()
    started = time.perf_counter()
    run = sync_all_customers(progress=Ticker())
    seconds = time.perf_counter() - started
    after, others_after = _cpu_seconds(), _other_cpu_seconds()
    cpu = {"sync process": after[0] - before[0], "prefetch child": after[1] - before[1],
           **{name: others_after[name] - others_before[name] for name in others_after}}
    counts = {"created": run.created, "updated": run.updated, "unchanged": run.unchanged,
              "deleted": run.deleted, "skipped": run.skipped}
    seen = run.created + run.updated + run.unchanged + run.skipped
    if run.status != "succeeded":
        raise RuntimeError(f"{name}: the sync run ended {run.status}: {run.failure}")
    return Step(name, seconds, seen, counts, cpu)


def _cpu_seconds() -> tuple[float, float]:
    """User + system CPU of this process, and of its finished children (the prefetch child
    is waited for when a sync ends; the stand-in only when the benchmark ends)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


# The stand-in's process id while it runs, for its share of the CPU.
_STANDIN_PIDS: list[int] = []


def _other_cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by the stand-in and by the PostgreSQL server's processes
    (read from /proc: neither is a child this process waits for), so that a step's CPU
    is accounted for in full. Empty where /proc is not there."""
    tick = os.sysconf("SC_CLK_TCK")
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
        name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        if pid in _STANDIN_PIDS:
            found["stand-in"] += seconds
        elif name.startswith("postgres"):
            # cutime + cstime: the postmaster's reaped backends, e.g. the sync's extra
            # connections (AUTUMN_SYNC_DB_CONNECTIONS), which end with the sync.
            seconds += (int(fields[13]) + int(fields[14])) / tick
            found["PostgreSQL server"] = found.get("PostgreSQL server", 0.0) + seconds
    return found


def expect(step: Step, **wanted: int) -> None:
    """Warn (without stopping) when a sync did not do what the step set it up to do."""
    wrong = {k: (step.counts.get(k), v) for k, v in wanted.items() if step.counts.get(k) != v}
    for name, (got, want) in wrong.items():
        say(f"  WARNING: {step.name}: {name} = {got}, expected {want}")


# -- the 1% change, through the stand-in's control channel -----------------------------------

# What a change does, by kind; each always alters the customer's JSON (the re-sync must
# count exactly n_change updated).
CHANGE_KINDS = ("balance usage", "subscription added", "subscription status", "subscription period",
                "name", "metadata")
BENCH_ADD_ONS = ("bench_addon_seats", "bench_addon_storage", "bench_addon_support")
PERIOD_MS = 30 * 86_400_000


def change_customers(api_url: str, customers: int) -> dict[str, Any]:
    """Change 1% of the customers the way billing does, and delete a few.

    A third get usage recorded against a balance (``usage``/``remaining`` move by a
    fractional amount), a third get a subscription added or its status or period changed,
    a third a new name or metadata. Autumn's public API can change none of the first two,
    so this goes through the stand-in's control channel (``serve --control``): each
    customer is read whole, changed, and written back in one batched ``modify_many``; the
    deletions go through ``/_standin/delete``. The public-API path this replaced is gone:
    the benchmark always starts its own stand-in, with ``--control``.
    """
    import requests

    from autumn_django.models import Customer

    ids = list(Customer.objects.filter(autumn_id__isnull=False).order_by("pk")
               .values_list("autumn_id", flat=True))
    rng = random.Random(SEED)
    n_change = max(1, round(customers * CHANGE_SHARE))
    n_delete = max(1, round(customers * DELETE_SHARE))
    picked = rng.sample(ids, n_change + n_delete)
    now = int(time.time() * 1000)
    started = time.perf_counter()
    kinds: dict[str, int] = dict.fromkeys(CHANGE_KINDS, 0)
    changes = []
    with requests.Session() as session:
        for i, customer_id in enumerate(picked[:n_change]):
            current = _control(session, "GET", f"{api_url}/_standin/customer",
                               params={"customer_id": customer_id})
            kind, fields = _change_for(i, current, rng, now)
            kinds[kind] += 1
            changes.append({"customer_id": customer_id, "fields": fields})
        _control(session, "POST", f"{api_url}/_standin/modify_many", json={"changes": changes})
        for customer_id in picked[n_change:]:
            _control(session, "POST", f"{api_url}/_standin/delete", json={"customer_id": customer_id})
    summary = f"{n_change:,} changed: " + ", ".join(f"{k} {v:,}" for k, v in kinds.items() if v)
    summary += f"; {n_delete:,} deleted"
    say(f"  {summary} (through the stand-in's control channel, {time.perf_counter() - started:.1f} s)")
    return {"changed": n_change, "deleted": n_delete, "via": "stand-in control channel",
            "summary": summary, **{f"changed_{_slug(k)}": v for k, v in kinds.items()}}


def _slug(kind: str) -> str:
    return kind.replace(" ", "_")


def _change_for(i: int, current: dict[str, Any], rng: random.Random, now: int) -> tuple[str, dict[str, Any]]:
    """The ``(kind, fields)`` of the i-th change: top-level fields replaced whole."""
    third, turn = i % 3, i // 3
    if third == 0:
        return "balance usage", {"balances": _record_usage(current.get("balances") or {}, rng)}
    if third == 1:
        kind, subs = _change_subscriptions(current.get("subscriptions") or [], turn, now)
        return kind, {"subscriptions": subs}
    if turn % 2 == 0:
        return "name", {"name": f"Renamed customer {i}"}
    return "metadata", {"metadata": {**(current.get("metadata") or {}), "bench_last_seen": now // 1000 + i}}


def _record_usage(balances: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Usage of one metered balance grows by a fractional amount (and its first breakdown
    entry with it), as a ``track`` call would; a customer without one gets a new balance."""
    delta = rng.randint(0, 49) + rng.choice((0.25, 0.5, 0.75))
    metered = sorted(f for f, b in balances.items() if isinstance(b, dict) and not b.get("unlimited"))
    if not metered:
        return {**balances, "bench_credits": {
            "feature_id": "bench_credits", "granted": 100, "remaining": 100 - delta, "usage": delta,
            "unlimited": False, "overage_allowed": False, "max_purchase": None, "next_reset_at": None,
            "breakdown": []}}
    feature = rng.choice(metered)
    balance = dict(balances[feature])
    balance["usage"] = (balance.get("usage") or 0) + delta
    balance["remaining"] = (balance.get("remaining") or 0) - delta
    entries = [dict(e) for e in balance.get("breakdown") or []]
    if entries:
        entries[0]["usage"] = (entries[0].get("usage") or 0) + delta
        entries[0]["remaining"] = (entries[0].get("remaining") or 0) - delta
        balance["breakdown"] = entries
    return {**balances, feature: balance}


def _change_subscriptions(subs: list[dict[str, Any]], turn: int, now: int) -> tuple[str, list[dict]]:
    """Half the time an add-on is attached; a quarter, a status change (a scheduled plan
    starts and the base plan it replaces ends, or else a payment fails: past due); a
    quarter, the first subscription renews into its next period."""
    subs = [dict(s) for s in subs]
    if turn % 2 == 0 or not subs:
        plan = BENCH_ADD_ONS[turn % len(BENCH_ADD_ONS)]
        subs.append({"id": f"sub_bench_{turn:06d}", "plan_id": plan, "status": "active",
                     "auto_enable": False, "add_on": True, "past_due": False, "quantity": 1,
                     "started_at": now, "current_period_start": now,
                     "current_period_end": now + PERIOD_MS, "canceled_at": None, "expires_at": None,
                     "trial_ends_at": None})
        return "subscription added", subs
    if turn % 4 == 1:
        scheduled = next((s for s in subs if s.get("status") == "scheduled"), None)
        if scheduled is None:
            subs[0]["past_due"] = not subs[0].get("past_due")
            return "subscription status", subs
        start = scheduled.get("started_at") or now
        scheduled.update(status="active", current_period_start=start, current_period_end=start + PERIOD_MS)
        ended = next((s for s in subs if s.get("status") == "active" and not s.get("add_on")), None)
        return "subscription status", [s for s in subs if s is not ended]  # ended ones are not returned
    start = subs[0].get("current_period_end") or now
    subs[0].update(current_period_start=start, current_period_end=start + PERIOD_MS)
    return "subscription period", subs


def _control(session: Any, method: str, url: str, **kwargs: Any) -> Any:
    response = session.request(method, url, timeout=60, **kwargs)
    if response.status_code == 404 and '"not_found"' in response.text:
        raise RuntimeError(f"{url} is unknown: the stand-in was not started with --control")
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")
    return response.json()


# -- the naive baseline ------------------------------------------------------------------------


def naive_baseline(sample: int) -> Step:
    """The dj-stripe way on the first ``sample`` customers: per customer, in its own
    transaction, ``update_or_create`` the customer and delete + re-create each child with
    the ORM. Fetch and parse are included, as they are in the sync's figures."""
    from autumn_django.client import AutumnClient
    from autumn_django.sync.records import LIST_PRODUCT_CAP, parse_customer

    settle()
    started = time.perf_counter()
    stored = 0
    with AutumnClient() as client:
        for page in client.customers.iter_pages(limit=PAGE_SIZE):
            for data in page.customers[: sample - stored]:
                record = parse_customer(data)
                at_cap = len(record.subscriptions) + len(record.purchases) >= LIST_PRODUCT_CAP
                if at_cap and record.autumn_id:  # as the sync does
                    data = client.customers.get(record.autumn_id)
                    record = parse_customer(data)
                _naive_store(client.env, data, record)
                stored += 1
            if stored >= sample:
                break
    return Step("naive update_or_create", time.perf_counter() - started, stored, {"created": stored})


def _naive_store(env: str, data: dict[str, Any], record: Any) -> None:
    from django.db import transaction
    from django.utils import timezone

    from autumn_django.models import Customer

    if record.key[0] == "id":
        lookup: dict[str, Any] = {"env": env, "autumn_id": record.autumn_id}
    else:
        lookup = {"env": env, "autumn_id__isnull": True, "email": record.email}
    defaults = {k: v for k, v in record.values.items() if k not in lookup}
    defaults.update(raw=data, raw_hash=record.raw_hash, synced_at=timezone.now(), deleted_at=None)
    with transaction.atomic():
        customer, _ = Customer.objects.update_or_create(**lookup, defaults=defaults)
        for model, fields, attribute in _children():
            model.objects.filter(customer=customer).delete()
            for values in getattr(record, attribute):
                model.objects.create(customer=customer, **_child_fields(model, fields, values))


def _children() -> tuple[tuple[Any, tuple[str, ...], str], ...]:
    from autumn_django.models import Balance, Flag, Purchase, Subscription
    from autumn_django.sync.records import BALANCE_FIELDS, FLAG_FIELDS, PURCHASE_FIELDS, SUBSCRIPTION_FIELDS

    return ((Subscription, SUBSCRIPTION_FIELDS, "subscriptions"), (Purchase, PURCHASE_FIELDS, "purchases"),
            (Balance, BALANCE_FIELDS, "balances"), (Flag, FLAG_FIELDS, "flags"))


def _child_fields(model: Any, fields: tuple[str, ...], values: tuple) -> dict[str, Any]:
    """The parsed child row as model fields; JSON arrives as text and the ORM wants objects."""
    from django.db import models

    from autumn_django import jsonlib

    out = dict(zip(fields, values, strict=True))
    for name, value in out.items():
        if isinstance(value, str) and isinstance(model._meta.get_field(name), models.JSONField):
            out[name] = jsonlib.loads(value)
    return out


# -- peak memory in a fresh process -------------------------------------------------------------


def measure_memory(db: str, sizes: list[int]) -> list[dict[str, Any]]:
    """Peak RSS of a first sync into an empty mirror, each in a fresh child process."""
    results = []
    for size in sizes:
        with standin(size) as url:
            fresh_database(db)
            fetch_only(api_url=url)  # warm the stand-in's row cache, as for the timed first sync
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
    helpers = ", ".join(f"{name} {_mib(kib):.1f}" for name, kib in result["helpers_vmhwm_kib"].items())
    say(f"  [peak RSS, {result['customers']:,}] {_mib(result['maxrss_total_kib']):.1f} MiB "
        f"(sync process {_mib(result['maxrss_self_kib']):.1f} + helper processes "
        f"{_mib(result['maxrss_children_kib']):.1f}; {_mib(result['maxrss_before_sync_kib']):.1f} "
        f"before the sync; VmHWM {_mib(result['vmhwm_kib']):.1f}; helpers' own VmHWM: "
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
                      "vmhwm_kib": _vmhwm_kib(os.getpid()),
                      "helpers_vmhwm_kib": sampler.peaks, "seconds": seconds,
                      "created": run.created, "status": run.status}), flush=True)
    return 0


class HelperSampler(threading.Thread):
    """Every SAMPLE_EVERY seconds, the VmHWM (own peak RSS) of each descendant process.

    VmHWM only grows, so the last sample before a helper exits is (nearly) its peak. A
    scan of /proc costs a few milliseconds; at this rate it barely touches the sync.
    """

    SAMPLE_EVERY = 0.2

    def __init__(self) -> None:
        super().__init__(name="helper-rss-sampler", daemon=True)
        self.peaks: dict[str, int] = {}  # "pid command" -> VmHWM KiB
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.SAMPLE_EVERY):
            self.sample()

    def stop(self) -> None:
        self._done.set()
        self.join()
        self.sample()

    def sample(self) -> None:
        for pid in _descendants(os.getpid()):
            name = f"{pid} {_proc_field(f'/proc/{pid}/status', 'Name') or '?'}"
            self.peaks[name] = max(self.peaks.get(name, 0), _vmhwm_kib(pid))


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


def _vmhwm_kib(pid: int) -> int:
    return int((_proc_field(f"/proc/{pid}/status", "VmHWM") or "0 kB").split()[0])


def _mib(kib: float) -> float:
    return kib / 1024


# -- profile -----------------------------------------------------------------------------------


# The app's default runs fetch, decode and parse in a prefetch child process, which a
# profiler in this process cannot see; the in-process variant shows that work too.
PROFILE_MODES = (
    ("", {}, "the app's defaults: work done in a prefetch child process is NOT in this profile"),
    ("-inprocess", {"AUTUMN_SYNC_PREFETCH_PROCESS": False},
     "AUTUMN_SYNC_PREFETCH_PROCESS=False: every step of the sync runs in the profiled process"),
)


def profile(db: str, customers: int) -> None:
    """cProfile the first sync and the no-change re-sync; the stand-in is not in it."""
    from django.test.utils import override_settings

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with standin(customers) as url:
        os.environ["AUTUMN_API_URL"] = url
        setup_django()
        print_step(fetch_only(), note="(warms the stand-in's row cache; not profiled)")
        for suffix, overrides, mode in PROFILE_MODES:
            fresh_database(db)
            check_migrations()
            say(f"  mode: {mode}")
            with override_settings(**overrides):
                for name in ("first-sync", "no-change-resync"):
                    _profile_step(db, name + suffix, mode)


def _profile_step(db: str, name: str, mode: str) -> None:
    from autumn_django.sync.prefetch import PROFILE_ENV

    profiler = cProfile.Profile()
    child_stats = OUT_DIR / f"profile-{db}-{name}-prefetch-child.prof"
    child_stats.unlink(missing_ok=True)
    os.environ[PROFILE_ENV] = str(child_stats)
    settle()
    try:
        profiler.enable()
        step = timed_sync(name)
        profiler.disable()
    finally:
        del os.environ[PROFILE_ENV]
    print_step(step, note="(under cProfile: slower than unprofiled)")
    path = OUT_DIR / f"profile-{db}-{name}.txt"
    path.write_text(_profile_text(profiler, step, db, mode))
    profiler.dump_stats(path.with_suffix(".prof"))
    say(f"  wrote {path.relative_to(REPO_ROOT)} (and .prof for pstats/snakeviz)")
    if child_stats.exists():
        text_path = child_stats.with_suffix(".txt")
        text_path.write_text(_profile_text(child_stats, step, db, "the prefetch child process"))
        say(f"  wrote {text_path.relative_to(REPO_ROOT)}")


def _profile_text(profiler: cProfile.Profile | Path, step: Step, db: str, mode: str) -> str:
    out = io.StringIO()
    out.write(f"{step.name} on {db}, {step.customers:,} customers, {step.seconds:.2f} s under cProfile\n"
              f"mode: {mode}\ncounts: {step.counts}\n")
    for order in ("cumulative", "tottime"):
        out.write(f"\n===== top {PROFILE_TOP} by {order} =====\n")
        pstats.Stats(str(profiler) if isinstance(profiler, Path) else profiler,
                     stream=out).sort_stats(order).print_stats(PROFILE_TOP)
    # Shorter paths: the repo's and site-packages' prefixes say nothing.
    text = out.getvalue()
    for prefix in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["stdlib"], str(REPO_ROOT)):
        text = text.replace(prefix + os.sep, "")
    return text


# -- the whole run -----------------------------------------------------------------------------


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Every step on one database; returns what --json-out writes."""
    result: dict[str, Any] = {"db": args.db, "customers": args.customers, "page_size": PAGE_SIZE}
    with standin(args.customers) as url:
        os.environ["AUTUMN_API_URL"] = url
        setup_django()
        fresh_database(args.db)
        check_migrations()
        result["machine"] = machine_info(args.db)
        _warn_if_busy(result["machine"]["load_average_at_start"])
        floor = FetchFloor(args.customers)
        floor.measure()
        floor.measure()
        result["steps"] = steps = sync_steps(url, args.customers, floor, args.db)
        steps["fetch_only"] = floor.summary()
        say("  ratios against the floor: " + ", ".join(
            f"{name} {steps[key]['seconds'] / floor.seconds:.2f}x"
            for key, name in (("first_sync", "first sync"), ("no_change_resync", "no-change"),
                              ("resync_after_change", "1% change"))))
        result["mirror_rows"] = steps["first_sync"].pop("mirror_rows")
        if args.baseline_sample:
            steps["naive_baseline"] = _baseline_step(args, steps["fetch_only"]["seconds"])
    if args.memory_sizes:
        result["memory"] = measure_memory(args.db, args.memory_sizes)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


class FetchFloor:
    """Fetch-only, measured several times through the run: after a warm-up pass (which fills
    the stand-in's cache of serialized rows, for every later step), twice before the syncs
    and once after each. The floor is the median: on a shared machine a single pass can be
    15% off either way, and the runs between the syncs follow any drift in its speed."""

    def __init__(self, customers: int) -> None:
        self.customers = customers
        self.runs: list[Step] = []
        print_step(fetch_only(), note="(warm-up: fills the stand-in's row cache; not counted)")

    def measure(self, note: str = "", *, deleted: int = 0) -> None:
        step = fetch_only()
        self.runs.append(step)
        print_step(step, note=note)
        if step.customers != self.customers - deleted:
            say(f"  WARNING: fetch-only saw {step.customers:,} customers, "
                f"the stand-in has {self.customers - deleted:,}")

    @property
    def seconds(self) -> float:
        return statistics.median(step.seconds for step in self.runs)

    def summary(self) -> dict[str, Any]:
        median = Step("fetch-only", self.seconds, self.customers)
        say(f"  fetch-only floor: median of {len(self.runs)} runs {median.seconds:.2f} s "
            f"(min {min(s.seconds for s in self.runs):.2f}, max {max(s.seconds for s in self.runs):.2f})")
        return {**asdict(median), "runs": [round(step.seconds, 3) for step in self.runs]}


def sync_steps(url: str, n: int, floor: FetchFloor, db: str) -> dict[str, Any]:
    """First sync, no-change re-sync, then the 1% change and its re-sync; fetch-only after each.
    On PostgreSQL a first sync on one connection comes first, to compare the default with."""
    steps: dict[str, Any] = {}
    if db == "postgres":
        one = first_sync_on_one_connection()
        print_step(one, floor.seconds)
        expect(one, created=n, updated=0, skipped=0)
        steps["first_sync_one_connection"] = asdict(one)
        floor.measure("(between steps)")
        fresh_database(db)
    first = timed_sync("first sync")
    print_step(first, floor.seconds)
    expect(first, created=n, updated=0, skipped=0)
    rows = mirror_rows()
    say(f"  mirror: {rows['total']:,} rows ({rows})")
    floor.measure("(between steps)")

    again = timed_sync("no-change re-sync")
    print_step(again, floor.seconds)
    expect(again, unchanged=n, updated=0, created=0, deleted=0)
    floor.measure("(between steps)")

    change = change_customers(url, n)
    changed = timed_sync("re-sync after 1% change")
    print_step(changed, floor.seconds, note=f"({change['summary']})")
    expect(changed, updated=change["changed"], deleted=change["deleted"], created=0)
    floor.measure("(between steps)", deleted=change["deleted"])
    return {**steps, "first_sync": {**asdict(first), "mirror_rows": rows}, "no_change_resync": asdict(again),
            "resync_after_change": {**asdict(changed), "change": change}}


def first_sync_on_one_connection() -> Step:
    """A first sync with ``AUTUMN_SYNC_DB_CONNECTIONS = 1``: each page written and committed
    before the next begins, as on SQLite (what the default's second connection gains)."""
    from django.test import override_settings

    with override_settings(AUTUMN_SYNC_DB_CONNECTIONS=1):
        return timed_sync("first sync, 1 connection")


def _baseline_step(args: argparse.Namespace, fetch_seconds: float) -> dict[str, Any]:
    """The baseline needs an empty mirror too (it is the naive *first* sync)."""
    fresh_database(args.db)
    step = naive_baseline(args.baseline_sample)
    per_customer = step.seconds / step.customers
    scaled = per_customer * args.customers
    print_step(step, note=f"measured on {step.customers:,}; scaled to {args.customers:,}: {scaled:,.0f} s "
                          f"= {scaled / fetch_seconds:,.0f}x fetch-only")
    return {**asdict(step), "per_customer_seconds": per_customer, "scaled_seconds": scaled}


def _warn_if_busy(load: list[float]) -> None:
    cores = os.cpu_count() or 1
    if load[0] > 0.5 * cores:
        say(f"NOTE: load average {load[0]:.2f} on {cores} cores before starting: other work is "
            "running, the figures may be noisy.")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sync_benchmark",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--customers", type=int, default=100_000, help="customers in the stand-in")
    parser.add_argument("--baseline-sample", type=int, default=2000,
                        help="customers the naive baseline writes before it is scaled to N (0: skip)")
    parser.add_argument("--memory-sizes", type=_sizes, default=None,
                        help="comma-separated sizes for the peak-RSS runs (default: N/5,N; 'none': skip)")
    parser.add_argument("--json-out", type=Path, help="where to write the results as JSON")
    parser.add_argument("--profile", action="store_true",
                        help="only profile the first sync and the no-change re-sync (cProfile)")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_sizes is None:
        args.memory_sizes = [max(1, args.customers // 5), args.customers]
    return args


def _sizes(text: str) -> list[int]:
    return [] if text == "none" else [int(part.replace("_", "")) for part in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure(args.db)
    if args.memory_child:
        setup_django()
        return memory_child()
    if args.profile:
        say(f"== profile: {args.db}, {args.customers:,} customers ==")
        profile(args.db, args.customers)
        return 0
    say(f"== {args.db}: {args.customers:,} customers, page size {PAGE_SIZE} ==")
    result = run_benchmark(args)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
        say(f"results: {args.json_out}")
    from benchmarks import report

    say("")
    say(report.markdown([result]))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:  # a clear sentence rather than a traceback
        print(f"benchmark stopped: {exc}", file=sys.stderr)
        sys.exit(1)

