"""The sync benchmark's results as one Markdown table, ready to paste into the README.

    python -m benchmarks.report benchmarks/out/results-sqlite.json benchmarks/out/results-postgres.json

Reads the JSON files ``sync_benchmark.py --json-out`` writes (one per database) and prints
a line describing the machine, then one row per step with its target and, per database,
seconds, customers per second, the ratio to fetch-only and PASS/MISS. The targets are
informational: nothing here fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The targets. Ratios are "this step's seconds / fetch-only's", same run, same DB.
FIRST_SYNC_MAX_RATIO = {"sqlite": 3.0, "postgres": 4.0}
NO_CHANGE_MAX_RATIO = 1.3
BASELINE_MIN_SPEEDUP = 30.0  # naive baseline scaled to N / first sync
RSS_MAX_GROWTH = 0.20  # peak RSS at the largest size vs the smallest
RSS_MAX_MIB = 250.0

DB_TITLES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}

Row = tuple[str, str, dict[str, str]]  # step, target, cell per db


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _time_cell(step: dict[str, Any], fetch: float | None = None) -> str:
    rate = step["customers"] / step["seconds"] if step["seconds"] else 0
    cell = f"{step['seconds']:,.2f} s · {rate:,.0f}/s"
    if fetch:
        cell += f" · **{step['seconds'] / fetch:.2f}x**"
    return cell


def cpu_bound_seconds(cpu: dict[str, float], cores: int) -> float:
    """A step's CPU seconds in every process it kept busy, divided by the cores: the
    shortest time any schedule of that work could take on this machine."""
    return sum(cpu.values()) / cores


def _cpu_bound_cell(step: dict[str, Any], fetch: float, cores: int) -> str:
    bound = cpu_bound_seconds(step["cpu"], cores)
    return f"{sum(step['cpu'].values()):,.1f} CPU-s ÷ {cores} = {bound:,.2f} s · **{bound / fetch:.2f}x**"


def _change_label(change: dict[str, Any]) -> str:
    """What the 1% step changed; results written before the control channel lack the mix."""
    label = f"re-sync after {change['changed']:,} customers changed (1%)"
    mix = {"balance usage": change.get("changed_balance_usage", 0),
           "subscriptions": sum(v for k, v in change.items() if k.startswith("changed_subscription")),
           "name/metadata": change.get("changed_name", 0) + change.get("changed_metadata", 0)}
    if any(mix.values()):
        label += ": " + ", ".join(f"{k} {v:,}" for k, v in mix.items())
    return label + f", and {change['deleted']:,} deleted"


def step_rows(results: Sequence[dict[str, Any]]) -> list[Row]:
    """The timing rows: one per step, a cell per database."""
    rows: list[Row] = []
    cells: dict[str, dict[str, str]] = {key: {} for key in
                                        ("fetch", "first", "first_cpu", "first_one", "again", "change",
                                         "baseline")}
    first_targets = []
    change_label = "re-sync after 1% changed"
    sample_label = "naive per-customer `update_or_create`"
    for result in results:
        db, steps = result["db"], result["steps"]
        fetch = steps["fetch_only"]["seconds"]
        cells["fetch"][db] = _time_cell(steps["fetch_only"])
        if steps["fetch_only"].get("runs"):
            runs = steps["fetch_only"]["runs"]
            cells["fetch"][db] += f" ({len(runs)} runs, {min(runs):.2f} to {max(runs):.2f} s)"
        first = steps["first_sync"]
        limit = FIRST_SYNC_MAX_RATIO[db]
        first_targets.append(f"≤ {limit:g}x {DB_TITLES[db]}")
        cells["first"][db] = f"{_time_cell(first, fetch)} {verdict(first['seconds'] / fetch <= limit)}"
        if first.get("cpu"):
            cells["first_cpu"][db] = _cpu_bound_cell(first, fetch, result["machine"]["cores"])
        one = steps.get("first_sync_one_connection")
        cells["first_one"][db] = _time_cell(one, fetch) if one else "— (one writer: always one)"
        again = steps["no_change_resync"]
        cells["again"][db] = (f"{_time_cell(again, fetch)} "
                              f"{verdict(again['seconds'] / fetch <= NO_CHANGE_MAX_RATIO)}")
        change = steps["resync_after_change"]
        cells["change"][db] = _time_cell(change, fetch)
        change_label = _change_label(change["change"])
        baseline = steps.get("naive_baseline")
        if baseline:
            speedup = baseline["scaled_seconds"] / first["seconds"]
            scaled, rate = baseline["scaled_seconds"], baseline["customers"] / baseline["seconds"]
            cells["baseline"][db] = (
                f"{scaled:,.0f} s (scaled) · {rate:,.0f}/s · **{scaled / fetch:,.0f}x** · "
                f"first sync **{speedup:,.0f}x** faster {verdict(speedup >= BASELINE_MIN_SPEEDUP)}"
            )
            sample_label = (f"naive per-customer `update_or_create`: measured on {baseline['customers']:,}, "
                            f"**scaled** x{result['customers'] / baseline['customers']:,.0f} to "
                            f"{result['customers']:,}")
    rows.append(("fetch-only: the app's client pages through everyone (the median of its runs: twice "
                 "before the syncs, once after each)", "the floor",
                 cells["fetch"]))
    rows.append(("first sync into an empty mirror", ", ".join(first_targets) + " fetch-only", cells["first"]))
    if cells["first_cpu"]:
        rows.append(("first sync's CPU, every process (sync, prefetch child, stand-in, PostgreSQL "
                     "server) ÷ cores: no overlap of the work gets below this", "—", cells["first_cpu"]))
    if any(steps.get("first_sync_one_connection") for steps in (r["steps"] for r in results)):
        rows.append(("the same first sync on one database connection (`AUTUMN_SYNC_DB_CONNECTIONS "
                     "= 1`), measured just before it", "—", cells["first_one"]))
    rows.append(("no-change re-sync", f"≤ {NO_CHANGE_MAX_RATIO:g}x fetch-only", cells["again"]))
    rows.append((change_label, "—", cells["change"]))
    if cells["baseline"]:
        rows.append((sample_label, f"first sync ≥ {BASELINE_MIN_SPEEDUP:g}x faster", cells["baseline"]))
    return rows


def memory_rows(results: Sequence[dict[str, Any]]) -> list[Row]:
    """Peak RSS rows: one per size, then the growth from the smallest to the largest."""
    by_size: dict[int, dict[str, str]] = {}
    growth: dict[str, str] = {}
    sizes: list[int] = []
    for result in results:
        memory = result.get("memory") or []
        for entry in memory:
            total = entry["maxrss_total_kib"] / 1024
            cell = f"**{total:,.1f} MiB**"
            if entry is memory[-1]:
                cell += f" {verdict(total < RSS_MAX_MIB)}"
            cell += (f" (sync {entry['maxrss_self_kib'] / 1024:,.1f} + helpers "
                     f"{entry['maxrss_children_kib'] / 1024:,.1f}")
            own = sum(entry.get("helpers_vmhwm_kib", {}).values())
            if own:  # a helper's ru_maxrss starts at its parent's RSS when it was spawned
                cell += f"; helpers' own peak {own / 1024:,.1f}"
            cell += ")"
            by_size.setdefault(entry["customers"], {})[result["db"]] = cell
        if len(memory) >= 2:
            small, large = memory[0], memory[-1]
            change = large["maxrss_total_kib"] / small["maxrss_total_kib"] - 1
            growth[result["db"]] = f"{change:+.1%} {verdict(abs(change) <= RSS_MAX_GROWTH)}"
            sizes = [small["customers"], large["customers"]]
    rows: list[Row] = []
    largest = max(by_size, default=None)
    for size in sorted(by_size):
        target = f"< {RSS_MAX_MIB:g} MiB" if size == largest else "—"
        label = f"peak RSS of a first sync in a fresh process, {size:,} customers"
        rows.append((label, target, by_size[size]))
    if growth:
        rows.append((f"peak RSS growth {sizes[0]:,} → {sizes[1]:,} customers",
                     f"within {RSS_MAX_GROWTH:.0%}", growth))
    return rows


def machine_line(results: Sequence[dict[str, Any]]) -> str:
    """One line: CPU, cores, RAM, versions, N, and how busy the machine was."""
    machine = results[0]["machine"]
    parts = [f"{machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM",
             f"Python {machine['python']}", f"Django {machine['django']}", f"SQLite {machine['sqlite']}"]
    for result in results:
        if "postgresql" in result["machine"]:
            parts.append(f"PostgreSQL {result['machine']['postgresql']} (fsync off: throwaway cluster)")
    if machine.get("orjson"):
        parts.append(f"orjson {machine['orjson']}")
    first = results[0]
    rows = first.get("mirror_rows", {}).get("total")
    parts.append(f"{first['customers']:,} customers" + (f" ({rows:,} mirror rows)" if rows else "")
                 + f", page size {first['page_size']}")
    loads = "; ".join(f"{DB_TITLES[r['db']]} {r['machine']['load_average_at_start'][0]:.2f}"
                      f" → {r['machine'].get('load_average_at_end', ['?'])[0]}" for r in results)
    parts.append(f"load average {loads}")
    if machine.get("code"):
        parts.append(f"code {machine['code']}")
    return "Machine: " + " · ".join(parts) + "."


def markdown(results: Sequence[dict[str, Any]]) -> str:
    dbs = [r["db"] for r in results]
    header = ["step", "target", *(DB_TITLES[db] for db in dbs)]
    lines = [machine_line(results), "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for step, target, cells in step_rows(results) + memory_rows(results):
        lines.append("| " + " | ".join([step, target, *(cells.get(db, "—") for db in dbs)]) + " |")
    lines += ["", "Cells: seconds · customers per second · **x fetch-only** of the same run and "
              "database. The naive baseline is measured on a sample and scaled linearly to N. "
              "Peak RSS: ru_maxrss of a fresh process running the first sync, plus RUSAGE_CHILDREN "
              "for helper processes it starts (which on Linux counts the sync process's RSS at "
              "the moment it spawned the helper; the helpers' own peak, VmHWM sampled from /proc, "
              "is shown apart). Targets are informational; figures from a busy machine are noisy."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="results-<db>.json files")
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    args = parser.parse_args(argv)
    results = [json.loads(path.read_text()) for path in args.results if path.exists()]
    if not results:
        print("no results to report", file=sys.stderr)
        return 1
    text = markdown(results)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
