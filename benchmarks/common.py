"""What every part of the sync benchmark shares: paths, constants, a timed step, output."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "benchmarks" / "out"
PAGE_SIZE = 1000  # the sync's page size (settings.AUTUMN_SYNC_PAGE_SIZE); the stand-in's org maximum
SEED = 1
# The benchmark's sandbox key (settings.py): the stand-in accepts any well-formed one.
SECRET_KEY = "am_sk_test_benchmark000000000000"  # noqa: S105


@dataclass
class Step:
    """One timed step, as printed and as stored in the JSON output."""

    name: str
    seconds: float
    customers: int
    counts: dict[str, int] = field(default_factory=dict)
    # CPU seconds of the sync process and of its prefetch child: where the time goes.
    cpu: dict[str, float] = field(default_factory=dict)
    # A full sync's parts: "customers" (catalogue, customer pages, customer deletions) and
    # "entities" (the entity crawl and its deletions), seconds each (steps.py says how).
    phases: dict[str, float] = field(default_factory=dict)
    entities: int = 0  # entities the step read
    # ``cpu`` during the customers pass alone, by process (empty: not measured, as when no
    # entities request marked where the pass ended).
    customers_cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.customers / self.seconds if self.seconds else 0.0


def say(text: str) -> None:
    print(text, flush=True)


def proc_field(path: str, name: str) -> str | None:
    """``name: value`` from a /proc file such as /proc/meminfo; None where absent."""
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    return None


def version_of(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def mib(kib: float) -> float:
    return kib / 1024
