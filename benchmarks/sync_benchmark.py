"""Benchmark of ``autumn_django``'s sync against the local Autumn stand-in, on one database.

    python -m benchmarks.sync_benchmark --db sqlite --customers 100000 --json-out out.json
    python -m benchmarks.sync_benchmark --db postgres --customers 20000 --latency-ms 250 --windows 8
    python -m benchmarks.sync_benchmark --db sqlite --customers 20000 --profile

``benchmarks/run.sh`` runs it on SQLite and PostgreSQL at each latency and prints the
combined table (``benchmarks/report.py``). One run, on one database, at one latency:

1. starts the stand-in (``standin.py``) with N customers, entities for about 10% of them
   (``--no-entities``: none), a skewed ``created_at`` (``--no-skew``: even) and
   ``--latency-ms`` added to every request;
2. drops and recreates the benchmark database, migrates it;
3. measures the lean floors (``floors.py``: one cursor, K windows, entities) twice before
   the syncs and once after each, and times (``steps.py``) a first sync into the empty
   mirror (on PostgreSQL at 0 ms also on one database connection, before it), two no-change
   re-syncs (the first re-plans the windows if the first sync's were lopsided; the second
   keeps the first's, as later syncs do), and a
   re-sync after 1% of the customers and of the entities changed and a few
   of each were deleted (``changes.py``), each with its customers and entities passes
   apart and as ratios to the floors;
4. times the naive baseline on a sample, scaled to N (``baseline.py``);
5. measures the peak RSS of a first sync in a fresh child process at two sizes
   (``memory.py``).

``--profile`` instead profiles the first sync and the no-change re-sync (``profiling.py``).
Figures are wall-clock seconds (``time.perf_counter()``) with the GC settled before each
step. Issue 17's targets are printed beside the figures; the exit code is 0 whenever the
benchmark ran: they are information, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.common import PAGE_SIZE, say
from benchmarks.database import check_migrations, configure, fresh_database, mirror_rows, setup_django
from benchmarks.standin import Data, StandIn, standin

DEFAULT_WINDOWS = 8


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Every step on one database; returns what --json-out writes."""
    from benchmarks.baseline import baseline_step
    from benchmarks.floors import Floors
    from benchmarks.machine import machine_info, warn_if_busy
    from benchmarks.memory import measure_memory
    from benchmarks.steps import SYNC_WINDOWS_SETTING, sync_has_windows

    data = dataset(args)
    result: dict[str, Any] = {"db": args.db, "customers": args.customers, "page_size": PAGE_SIZE,
                              "latency_ms": args.latency_ms, "windows": args.windows,
                              "skew": args.skew, "with_entities": args.entities}
    with standin(data) as served:
        os.environ["AUTUMN_API_URL"] = served.url
        setup_django()
        _check_page_size()
        fresh_database(args.db)
        check_migrations()
        result["machine"] = machine_info(args.db)
        result["entities"] = served.entities
        result["sync_windows"] = args.windows if sync_has_windows() else None
        if result["sync_windows"] is None:
            say(f"NOTE: this sync has no AUTUMN_{SYNC_WINDOWS_SETTING} setting: it crawls with one cursor, "
                f"and --windows {args.windows} shapes the windowed floor only.")
        warn_if_busy(result["machine"]["load_average_at_start"])
        floors = Floors(served.url, args.windows, args.customers, served.entities)
        floors.measure()
        floors.measure()
        result["steps"] = steps = sync_steps(served, floors, args)
        result["floors"] = floors.summary()
        result["mirror_rows"] = steps["first_sync"].pop("mirror_rows")
        if args.baseline_sample:
            steps["naive_baseline"] = baseline_step(args.db, args.baseline_sample, args.customers,
                                                    floors.seconds("one_cursor"))
    if args.memory_sizes:
        result["memory"] = measure_memory(args.db, args.memory_sizes, data)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def sync_steps(served: StandIn, floors: Any, args: argparse.Namespace) -> dict[str, Any]:
    """First sync, two no-change re-syncs, then the 1% change and its re-sync; the floors
    after each. On PostgreSQL at 0 ms a first sync on one connection comes first, to compare
    the default with (at a distant API's latency the database is not what it waits for)."""
    from benchmarks.changes import change_data
    from benchmarks.steps import expect, print_step, timed_sync

    n, m, windows = served.customers, served.entities, args.windows
    steps: dict[str, Any] = {}
    if args.db == "postgres" and not args.latency_ms:
        one = first_sync_on_one_connection(windows)
        print_step(one, floors.by_name())
        expect(one, created=n, updated=0, skipped=0, entities_created=m, entities_skipped=0)
        steps["first_sync_one_connection"] = asdict(one)
        floors.measure("(between steps)")
        fresh_database(args.db)
    first = timed_sync("first sync", windows)
    print_step(first, floors.by_name())
    expect(first, created=n, updated=0, skipped=0, entities_created=m, entities_skipped=0)
    rows = mirror_rows()
    say(f"  mirror: {rows['total']:,} rows ({rows})")
    floors.measure("(between steps)")

    # The first re-sync keeps the first sync's windows unless they came out lopsided
    # (``partition.plan_windows``); then its pages are not the ones the memos know. The
    # next one keeps its plan, as every later scheduled sync does.
    no_change = {}
    for key, name in (("no_change_resync", "no-change re-sync"),
                      ("no_change_again", "no-change re-sync again")):
        again = timed_sync(name, windows)
        print_step(again, floors.by_name())
        expect(again, unchanged=n, updated=0, created=0, deleted=0,
               entities_unchanged=m, entities_updated=0, entities_created=0, entities_deleted=0)
        no_change[key] = asdict(again)
        floors.measure("(between steps)")

    change = change_data(served.url, n)
    changed = timed_sync("re-sync after 1% change", windows)
    print_step(changed, floors.by_name())
    expect(changed, updated=change["changed"], deleted=change["deleted"], created=0,
           entities_updated=change["expect_entities_updated"],
           entities_deleted=change["expect_entities_deleted"], entities_created=0)
    floors.measure("(between steps)", deleted=change["deleted"],
                   deleted_entities=change["expect_entities_deleted"])
    return {**steps, "first_sync": {**asdict(first), "mirror_rows": rows}, **no_change,
            "resync_after_change": {**asdict(changed), "change": change}}


def first_sync_on_one_connection(windows: int) -> Any:
    """A first sync with ``AUTUMN_SYNC_DB_CONNECTIONS = 1``: each page written and committed
    before the next begins, as on SQLite (what the default's second connection gains)."""
    from django.test import override_settings

    from benchmarks.steps import timed_sync

    with override_settings(AUTUMN_SYNC_DB_CONNECTIONS=1):
        return timed_sync("first sync, 1 connection", windows)


def _check_page_size() -> None:
    from autumn_django.conf import autumn_settings

    if autumn_settings.SYNC_PAGE_SIZE != PAGE_SIZE:
        raise RuntimeError(f"AUTUMN_SYNC_PAGE_SIZE is {autumn_settings.SYNC_PAGE_SIZE}, the floors page "
                           f"by {PAGE_SIZE}: make them equal (benchmarks/settings.py, common.py)")


def dataset(args: argparse.Namespace) -> Data:
    return Data(args.customers, entities=args.entities, skew=args.skew, latency_ms=args.latency_ms)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sync_benchmark",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--customers", type=_count, default=100_000, help="customers in the stand-in")
    parser.add_argument("--latency-ms", type=_latency, default=0.0, metavar="MS",
                        help="milliseconds the stand-in adds to every request (default 0)")
    parser.add_argument("--windows", type=_windows, default=DEFAULT_WINDOWS, metavar="K",
                        help=f"created_at windows of the windowed floor (default {DEFAULT_WINDOWS})")
    parser.add_argument("--entities", action=argparse.BooleanOptionalAction, default=True,
                        help="serve entities for about 10%% of the customers (default on)")
    parser.add_argument("--skew", action=argparse.BooleanOptionalAction, default=True,
                        help="skew created_at: 30%% on a launch day, 20%% in an import hour (default on)")
    parser.add_argument("--baseline-sample", type=_count, default=2000,
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


def _count(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a number >= 0, not {value}")
    return value


def _latency(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"milliseconds as a number, not {text!r}") from None
    if not 0 <= value < 3_600_000:
        raise argparse.ArgumentTypeError(f"milliseconds >= 0, not {text}")
    return value


def _windows(text: str) -> int:
    value = _count(text)
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"between 1 and 256 windows, not {value}")
    return value


def _sizes(text: str) -> list[int]:
    return [] if text == "none" else [_count(part) for part in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure(args.db)
    if args.memory_child:
        from benchmarks.memory import memory_child

        setup_django()
        return memory_child()
    if args.profile:
        from benchmarks.profiling import profile

        say(f"== profile: {args.db}, {args.customers:,} customers ==")
        profile(args.db, dataset(args))
        return 0
    say(f"== {args.db}: {args.customers:,} customers, page size {PAGE_SIZE}, {args.latency_ms:g} ms "
        f"per request, {args.windows} windows ==")
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
