"""The machine and code a run measured: report.py prints it beside the figures."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from typing import Any

from benchmarks.common import REPO_ROOT, proc_field, say, version_of


def machine_info(db: str) -> dict[str, Any]:
    """CPU, cores, RAM, versions, load and the code revision."""
    import django
    from django.db import connection

    info: dict[str, Any] = {
        "cpu": proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown CPU",
        "cores": os.cpu_count(),
        "ram_gib": round(int((proc_field("/proc/meminfo", "MemTotal") or "0 kB").split()[0]) / 2**20, 1),
        "python": platform.python_version(),
        "django": django.get_version(),
        "sqlite": sqlite3.sqlite_version,
        "orjson": version_of("orjson"),
        "msgspec": version_of("msgspec"),
        "requests": version_of("requests"),
        "psycopg": version_of("psycopg"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "code": code_revision(),
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


def code_revision() -> str:
    """The commit measured, and whether the app's or the benchmark's files differ from it.
    ``AUTUMN_BENCH_CODE`` names it instead, for a tree exported without its ``.git``."""
    if os.environ.get("AUTUMN_BENCH_CODE"):
        return os.environ["AUTUMN_BENCH_CODE"]

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)  # noqa: S603, S607
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    dirty = git("status", "--porcelain", "--", "autumn_django", "benchmarks")
    return f"{commit} + uncommitted changes" if dirty else commit


def warn_if_busy(load: list[float]) -> None:
    cores = os.cpu_count() or 1
    if load[0] > 0.5 * cores:
        say(f"NOTE: load average {load[0]:.2f} on {cores} cores before starting: other work is "
            "running, the figures may be noisy.")
