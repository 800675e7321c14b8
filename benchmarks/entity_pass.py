"""The entities pass alone: timed (and optionally profiled) on its own, on one database.

    python -m benchmarks.entity_pass --db sqlite --customers 10000
    python -m benchmarks.entity_pass --db postgres --customers 10000 --latency-ms 250
    python -m benchmarks.entity_pass --db sqlite --customers 10000 --profile
    python -m benchmarks.entity_pass --db sqlite --customers 10000 --in-process

A full sync's entities pass is a fraction of the whole run; timing it inside
``sync_benchmark`` needs a first sync each time. This script syncs the customers once
(a full sync), then runs the entities pass by itself, as a full sync's last phase does:
1. "first": the mirror's entities (and their rows) removed, an entities pass in a run of
   its own, as on a first sync;
2. "no-change": another pass, nothing having changed;
next to the lean entities floor (``floors.entities``: one cursor, decode only). ``--repeat``
repeats both and reports each. ``--profile`` writes the top of a cProfile of each pass
to ``benchmarks/out/entity-pass-<db>-<step>.txt``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time

from benchmarks.common import OUT_DIR, say
from benchmarks.database import check_migrations, configure, fresh_database, setup_django
from benchmarks.standin import Data, standin


def wipe_entities() -> None:
    """The mirror without entities: their child rows first (entity link set), then them."""
    from django.db import transaction

    from autumn_django.models import Balance, Entity, Flag, Purchase, Subscription

    with transaction.atomic():
        for model in (Subscription, Purchase, Balance, Flag):
            model.objects.filter(entity__isnull=False).delete()
        Entity.objects.all().delete()


class PhaseTimes:
    """Wall time of the writer's thread in each part of the pass (``--phases``): wrapped
    around the pass's own methods for this run only, one perf_counter() pair a call."""

    PARTS = (("entity_pass", "EntityPass", "_with_customers"), ("entities", "EntityWriter", "write"),
             ("runs", None, "save_entity_page"), ("entity_pass", "EntityPass", "_settle_deletions"),
             ("entities", "EntityWriter", "state_fingerprints"), ("entity_pass", "EntityPass", "_write_page"))

    def __init__(self) -> None:
        import importlib

        self.seconds: dict[str, float] = {}
        self._undo = []
        for module_name, owner_name, name in self.PARTS:
            module = importlib.import_module(f"autumn_django.sync.{module_name}")
            owner = getattr(module, owner_name) if owner_name else module
            if not hasattr(owner, name):
                continue
            plain = getattr(owner, name)
            self._undo.append((owner, name, plain))
            setattr(owner, name, self._timed(name, plain, static=owner_name is None))

    def _timed(self, name, plain, *, static):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return plain(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
        return timed

    def restore(self) -> str:
        for owner, name, plain in self._undo:
            setattr(owner, name, plain)
        return ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.seconds.items())


def entity_pass(profile_to: str | None = None) -> tuple[float, dict[str, int]]:
    """One entities pass in a run of its own; (seconds, its counts)."""
    from autumn_django.client import AutumnClient
    from autumn_django.sync import runs
    from autumn_django.sync.entity_pass import EntityPass

    client = AutumnClient()
    run = runs.start_run(client.env, page_size=1000, restart=True)
    profiler = cProfile.Profile() if profile_to else None
    try:
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        EntityPass(client, run).execute()
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - started
        runs.finish_run(run)
    finally:
        client.close()
    if profiler and profile_to:
        out = io.StringIO()
        for order in ("cumulative", "tottime"):
            out.write(f"\n===== top 30 by {order} =====\n")
            pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(30)
        with open(profile_to, "w") as f:
            f.write(out.getvalue())
    counts = {"pages": run.entity_pages, "created": run.entities_created, "updated": run.entities_updated,
              "unchanged": run.entities_unchanged, "deleted": run.entities_deleted,
              "skipped": run.entities_skipped}
    return seconds, counts


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.entity_pass")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--customers", type=int, default=10000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--in-process", action="store_true",
                        help="read the pages in this process (AUTUMN_SYNC_PREFETCH_PROCESS off)")
    args = parser.parse_args()
    configure(args.db)
    data = Data(args.customers, entities=True, skew=True, latency_ms=args.latency_ms)
    with standin(data) as served:
        os.environ["AUTUMN_API_URL"] = served.url
        setup_django()
        if args.in_process:
            from django.conf import settings

            settings.AUTUMN_SYNC_PREFETCH_PROCESS = False
        fresh_database(args.db)
        check_migrations()
        from autumn_django.sync import sync_all_customers
        from benchmarks.floors import entities as entities_floor

        started = time.perf_counter()
        sync_all_customers()
        say(f"full sync (customers, then entities): {time.perf_counter() - started:.2f} s")
        for attempt in range(args.repeat):
            started = time.perf_counter()
            count = entities_floor(served.url)
            say(f"[{args.db} {args.latency_ms:g} ms] entities floor: {time.perf_counter() - started:.2f} s "
                f"({count:,} entities)")
            for step in ("first", "no-change"):
                if step == "first":
                    wipe_entities()
                profile_to = None
                if args.profile and attempt == 0:
                    OUT_DIR.mkdir(parents=True, exist_ok=True)
                    profile_to = str(OUT_DIR / f"entity-pass-{args.db}-{step}.txt")
                phases = PhaseTimes()
                try:
                    seconds, counts = entity_pass(profile_to)
                finally:
                    parts = phases.restore()
                say(f"[{args.db} {args.latency_ms:g} ms] entities pass, {step}: {seconds:.2f} s "
                    f"{'(profiled) ' if profile_to else ''}{counts}")
                say(f"      writer's thread: {parts}")


if __name__ == "__main__":
    main()
