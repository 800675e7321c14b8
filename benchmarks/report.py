"""The sync benchmark's results as Markdown, ready to paste into the README.

    python -m benchmarks.report benchmarks/out/results-*.json

Reads the JSON files ``sync_benchmark.py --json-out`` writes (one per database and
latency) and prints a line describing the machine and the code, then one section per
latency: a row per floor and per step, a column per database. Every sync figure is a ratio
to the floors measured in the same run, and issue 17's targets stand beside them with
"met" or "missed": information, nothing here fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Issue 17's targets. At a distant API's latency the sync is compared with the windowed
# floor (and must beat one cursor); at 0 ms with the lean one-cursor floor.
LATENT_FIRST_SPEEDUP = 3.0  # one-cursor floor / first sync
LATENT_FIRST_MAX_WINDOWED = 2.0
LATENT_NO_CHANGE_MAX_WINDOWED = 1.2
LOCAL_FIRST_MAX = {"sqlite": 3.0, "postgres": 3.5}  # x one-cursor floor
LOCAL_NO_CHANGE_MAX = 1.0
BASELINE_MIN_SPEEDUP = 30.0  # naive baseline scaled to N / first sync
RSS_MAX_GROWTH = 0.20  # peak RSS at the largest size vs the smallest
RSS_MAX_MIB = 250.0

DB_TITLES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
DB_ORDER = ("sqlite", "postgres")

Row = tuple[str, str, dict[str, str]]  # step, target, cell per db


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def cpu_bound_seconds(cpu: dict[str, float], cores: int) -> float:
    """A step's CPU seconds in every process it kept busy, divided by the cores: the
    shortest time any schedule of that work could take on this machine."""
    return sum(cpu.values()) / cores


def _floor_cell(floor: dict[str, Any], unit: str, count: int) -> str:
    runs = floor.get("runs") or []
    seconds = floor["seconds"]
    cell = f"{seconds:,.2f} s · {count / seconds:,.0f} {unit}/s" if seconds else "—"
    if len(runs) > 1:
        cell += f" (median of {len(runs)}: {min(runs):.2f} to {max(runs):.2f} s)"
    return cell


def _sync_cell(step: dict[str, Any], floors: dict[str, Any]) -> str:
    one, windowed = floors["one_cursor"]["seconds"], floors["windowed"]["seconds"]
    rate = step["customers"] / step["seconds"] if step["seconds"] else 0
    cell = (f"{step['seconds']:,.2f} s · {rate:,.0f}/s · **{step['seconds'] / one:.2f}x** one cursor · "
            f"**{step['seconds'] / windowed:.2f}x** windowed")
    return cell


def _customers_cell(step: dict[str, Any], floors: dict[str, Any]) -> str:
    """A sync's customers pass against the customers floors (issue 17's targets were
    written for customers alone)."""
    seconds = (step.get("phases") or {}).get("customers")
    if not seconds:
        return "—"
    one, windowed = floors["one_cursor"]["seconds"], floors["windowed"]["seconds"]
    return (f"{seconds:,.2f} s · {step['customers'] / seconds:,.0f}/s · **{seconds / one:.2f}x** one cursor"
            f" · **{seconds / windowed:.2f}x** windowed")


def _entities_cell(step: dict[str, Any], floors: dict[str, Any]) -> str:
    phases = step.get("phases") or {}
    if not phases:
        return "—"
    seconds = phases["entities"]
    cell = f"{seconds:,.2f} s · {step.get('entities', 0):,} entities"
    floor = (floors.get("entities") or {}).get("seconds")
    if floor:
        cell += f" · **{seconds / floor:.2f}x** entities floor"
    counts = step.get("counts") or {}
    moved = {k.removeprefix("entities_"): counts.get(k, 0)
             for k in ("entities_created", "entities_updated", "entities_deleted") if counts.get(k)}
    if moved:
        cell += " (" + ", ".join(f"{k} {v:,}" for k, v in moved.items()) + ")"
    return cell


def _targets(key: str, db: str, latency: float) -> str:
    """The target a step's row states, for this database and latency."""
    if latency:
        return {"first_sync": f"≥ {LATENT_FIRST_SPEEDUP:g}x faster than one cursor, "
                              f"≤ {LATENT_FIRST_MAX_WINDOWED:g}x windowed",
                "no_change": f"≤ {LATENT_NO_CHANGE_MAX_WINDOWED:g}x windowed"}.get(_target_of(key), "—")
    return {"first_sync": f"≤ {LOCAL_FIRST_MAX[db]:g}x one cursor",
            "no_change": f"≤ {LOCAL_NO_CHANGE_MAX:g}x one cursor"}.get(_target_of(key), "—")


def _target_of(key: str) -> str | None:
    """Which of issue 17's targets a step is held to: both no-change re-syncs have one."""
    return "no_change" if key in ("no_change_resync", "no_change_again") else key


def _met(key: str, db: str, latency: float, seconds: float | None, floors: dict[str, Any]) -> str:
    """`` · target met`` (or missed) for a step of ``key`` that took ``seconds``; empty
    where the step has no target."""
    if not seconds:
        return ""
    one, windowed = floors["one_cursor"]["seconds"], floors["windowed"]["seconds"]
    if key == "first_sync":
        ok = (one / seconds >= LATENT_FIRST_SPEEDUP and seconds / windowed <= LATENT_FIRST_MAX_WINDOWED
              if latency else seconds / one <= LOCAL_FIRST_MAX[db])
    elif _target_of(key) == "no_change":
        ok = (seconds / windowed <= LATENT_NO_CHANGE_MAX_WINDOWED if latency
              else seconds / one <= LOCAL_NO_CHANGE_MAX)
    else:
        return ""
    return " · target " + verdict(ok)


def _change_label(change: dict[str, Any]) -> str:
    label = f"re-sync after 1% changed: {change['changed']:,} customers"
    mix = {"balance usage": change.get("changed_balance_usage", 0),
           "subscriptions": sum(v for k, v in change.items() if k.startswith("changed_subscription")),
           "name/metadata": change.get("changed_name", 0) + change.get("changed_metadata", 0)}
    label += " (" + ", ".join(f"{k} {v:,}" for k, v in mix.items()) + f") and {change['deleted']:,} deleted"
    if change.get("entities_changed"):
        label += (f"; {change['entities_changed']:,} entities changed and "
                  f"{change['entities_deleted_directly']:,} deleted")
    return label


def section_rows(results: Sequence[dict[str, Any]]) -> list[Row]:
    """The rows of one latency's section, a cell per database."""
    rows: dict[str, tuple[str, str, dict[str, str]]] = {}

    def put(key: str, label: str, target: str, db: str, cell: str) -> None:
        rows.setdefault(key, (label, target, {}))[2][db] = cell

    for result in results:
        db, latency, floors, steps = result["db"], result["latency_ms"], result["floors"], result["steps"]
        k = floors["windows"]
        one = floors["one_cursor"]
        put("floor_one", f"lean floor, one cursor (`requests` + {floors['decoder']}, no per-page work)",
            "the floor", db, _floor_cell(one, "customers", one["customers"]))
        windowed = floors["windowed"]
        put("floor_windowed", f"lean floor, {k} `created_at` windows at once (equal time spans, "
            "as a split blind to the distribution makes)", "the floor", db,
            _floor_cell(windowed, "customers", windowed["customers"])
            + f" · one cursor ÷ windowed = {one['seconds'] / windowed['seconds']:.2f}")
        if floors.get("entities"):
            put("floor_entities", "lean floor, entities: one cursor over `entities.list`", "the floor", db,
                _floor_cell(floors["entities"], "entities", floors["entities"]["entities"]))
        for key, label in (("first_sync_one_connection", "first sync on one database connection "
                            "(`AUTUMN_SYNC_DB_CONNECTIONS = 1`), just before the default's"),
                           ("first_sync", "first sync into an empty mirror"),
                           ("no_change_resync", "no-change re-sync (the first after a first sync: its "
                            "windows kept unless lopsided, then new ones, whose pages no memo knows)"),
                           ("no_change_again", "no-change re-sync again (the windows of the one before "
                            "kept: what every later sync does)"),
                           ("resync_after_change", _change_label(steps["resync_after_change"]["change"]))):
            step = steps.get(key)
            if not step:
                continue
            target = _targets(key, db, latency)
            put(key, label, target, db,
                _sync_cell(step, floors) + _met(key, db, latency, step["seconds"], floors))
            customers = (step.get("phases") or {}).get("customers")
            put(key + "_customers", "↳ its customers pass", target, db,
                _customers_cell(step, floors) + _met(key, db, latency, customers, floors))
            put(key + "_entities", "↳ its entities pass", "—", db, _entities_cell(step, floors))
            if key == "first_sync" and step.get("cpu"):
                cores = result["machine"]["cores"]
                bound = cpu_bound_seconds(step["cpu"], cores)
                cell = (f"{sum(step['cpu'].values()):,.1f} CPU-s ÷ {cores} = {bound:,.2f} s · "
                        f"**{bound / one['seconds']:.2f}x** one cursor")
                customers_cpu = step.get("customers_cpu")
                if customers_cpu:
                    # A dict by process; a single figure in results from before (b0f8807).
                    total = sum(customers_cpu.values()) if isinstance(customers_cpu, dict) else customers_cpu
                    passes = total / cores
                    cell += (f"; its customers pass {total:,.1f} CPU-s ÷ {cores} = "
                             f"{passes:,.2f} s · **{passes / one['seconds']:.2f}x** one cursor · "
                             f"**{passes / windowed['seconds']:.2f}x** windowed")
                put("first_cpu", "↳ its CPU, every process (sync, prefetch child, stand-in, PostgreSQL "
                    "server) ÷ cores: no overlap of the work gets below this", "—", db, cell)
        baseline = steps.get("naive_baseline")
        if baseline:
            speedup = baseline["scaled_seconds"] / steps["first_sync"]["seconds"]
            put("baseline", f"naive per-customer `update_or_create`: measured on {baseline['customers']:,}, "
                f"**scaled** to {result['customers']:,}",
                f"first sync ≥ {BASELINE_MIN_SPEEDUP:g}x faster", db,
                f"{baseline['scaled_seconds']:,.0f} s (scaled) · first sync **{speedup:,.0f}x** faster · "
                f"target {verdict(speedup >= BASELINE_MIN_SPEEDUP)}")
        for label, target, cell in memory_cells(result):
            put(label, label, target, db, cell)
    # One order whatever each database measured (PostgreSQL alone has the one-connection row).
    return [rows[key] for key in sorted(rows, key=_rank)]


ROW_ORDER = ("floor_one", "floor_windowed", "floor_entities", "first_sync_one_connection",
             "first_sync_one_connection_customers", "first_sync_one_connection_entities", "first_sync",
             "first_sync_customers", "first_sync_entities", "first_cpu", "no_change_resync",
             "no_change_resync_customers", "no_change_resync_entities", "no_change_again",
             "no_change_again_customers", "no_change_again_entities", "resync_after_change",
             "resync_after_change_customers", "resync_after_change_entities", "baseline")


def _rank(key: str) -> tuple[int, str]:
    """Steps in ROW_ORDER, then the memory rows (keyed by their label) in their order."""
    return (ROW_ORDER.index(key), "") if key in ROW_ORDER else (len(ROW_ORDER), "")


def memory_cells(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Peak RSS rows of one result: one per size, then the growth between the sizes."""
    memory = result.get("memory") or []
    out = []
    for entry in memory:
        total = _peak_kib(entry) / 1024
        cell = f"**{total:,.1f} MiB**" + (" at once" if "together_kib" in entry else "")
        largest = entry is memory[-1]
        if largest:
            cell += f" · target {verdict(total < RSS_MAX_MIB)}"
        if "together_kib" in entry:
            cell += f"; each process's own peak added up: {entry['maxrss_total_kib'] / 1024:,.1f}"
        cell += (f" (sync {entry['maxrss_self_kib'] / 1024:,.1f} + helpers "
                 f"{entry['maxrss_children_kib'] / 1024:,.1f}")
        own = sum(entry.get("helpers_vmhwm_kib", {}).values())
        if own:  # a helper's ru_maxrss starts at its parent's RSS when it was spawned
            cell += f"; helpers' own peak {own / 1024:,.1f}"
        cell += ")"
        out.append((f"peak RSS of a first sync in a fresh process, {entry['customers']:,} customers",
                    f"< {RSS_MAX_MIB:g} MiB" if largest else "—", cell))
    if len(memory) >= 2:
        small, large = memory[0], memory[-1]
        change = _peak_kib(large) / _peak_kib(small) - 1
        out.append((f"peak RSS growth {small['customers']:,} → {large['customers']:,} customers",
                    f"within {RSS_MAX_GROWTH:.0%}",
                    f"{change:+.1%} · target {verdict(abs(change) <= RSS_MAX_GROWTH)}"))
    return out


def _peak_kib(entry: dict[str, Any]) -> int:
    """The process tree's RSS at its largest moment (``memory.HelperSampler``); results
    from before it was sampled have only the per-process peaks added up."""
    return entry.get("together_kib") or entry["maxrss_total_kib"]


def machine_line(results: Sequence[dict[str, Any]]) -> str:
    """One line: CPU, cores, RAM, versions, the data, the code, and how busy the machine was."""
    machine = results[0]["machine"]
    parts = [f"{machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM",
             f"Python {machine['python']}", f"Django {machine['django']}", f"SQLite {machine['sqlite']}"]
    pg = next((r["machine"]["postgresql"] for r in results if "postgresql" in r["machine"]), None)
    if pg:
        parts.append(f"PostgreSQL {pg} (fsync off: throwaway cluster)")
    for package in ("orjson", "msgspec"):
        if machine.get(package):
            parts.append(f"{package} {machine[package]}")
    first = results[0]
    data = f"{first['customers']:,} customers"
    if first.get("entities"):
        data += f" and {first['entities']:,} entities"
    data += " (created_at skewed: 30% on one launch day, 20% in one import hour)" if first.get("skew") else ""
    rows = first.get("mirror_rows", {}).get("total")
    parts.append(data + (f", {rows:,} mirror rows" if rows else "") + f", page size {first['page_size']}")
    codes = sorted({r["machine"].get("code", "?") for r in results})
    parts.append("code " + ", ".join(codes))
    return "Machine: " + " · ".join(parts) + "."


def load_line(results: Sequence[dict[str, Any]]) -> str:
    return "Load average (start → end): " + "; ".join(
        f"{DB_TITLES[r['db']]} {r['latency_ms']:g} ms {r['machine']['load_average_at_start'][0]:.2f} → "
        f"{r['machine'].get('load_average_at_end', ['?'])[0]}" for r in results) + "."


def markdown(results: Sequence[dict[str, Any]]) -> str:
    results = sorted(results, key=lambda r: (r["latency_ms"], DB_ORDER.index(r["db"])))
    lines = [machine_line(results), "", load_line(results)]
    for latency in sorted({r["latency_ms"] for r in results}):
        group = [r for r in results if r["latency_ms"] == latency]
        dbs = [r["db"] for r in group]
        header = ["step", "target", *(DB_TITLES[db] for db in dbs)]
        lines += ["", f"#### {latency:g} ms per request ({group[0]['floors']['windows']} windows)", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for step, target, cells in section_rows(group):
            lines.append("| " + " | ".join([step, target, *(cells.get(db, "—") for db in dbs)]) + " |")
    lines += ["", "Cells: seconds · customers per second · **x the floor** of the same run and database "
              "(each floor the median of its runs: twice before the syncs, once after each). A sync's "
              "customers pass runs from its start to the sync process's first `entities.list` "
              "request (catalogue, customer pages, customer deletions), or, where a prefetch child "
              "makes them all, to the last customers page it wrote; its entities pass is the rest. "
              "Its CPU is every process's at that request. The naive "
              "baseline is measured on a sample and scaled linearly to N. Peak RSS: a fresh process "
              "runs the first sync; the figure is the largest sum of its RSS and its helper "
              "processes' at one moment (sampled from /proc every 0.2 s), then each process's own "
              "peak added up (ru_maxrss, plus RUSAGE_CHILDREN for the helpers; their own VmHWM "
              "apart), which overstates it: the peaks need not coincide. Targets are "
              "issue 17's, printed as information; figures from a busy machine are noisy."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="results-<db>-<latency>ms.json files")
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
