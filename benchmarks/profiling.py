"""``--profile``: cProfile the first sync and the no-change re-sync.

Writes ``benchmarks/out/profile-<db>-*.txt`` (top 25 by cumulative and by own time), once
with the app's defaults and once (``*-inprocess``) with ``AUTUMN_SYNC_PREFETCH_PROCESS =
False``, since work done in the sync's prefetch child process is invisible to cProfile.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sysconfig
from pathlib import Path

from benchmarks.common import OUT_DIR, REPO_ROOT, Step, say
from benchmarks.database import check_migrations, fresh_database, setup_django
from benchmarks.floors import one_cursor
from benchmarks.standin import Data, standin
from benchmarks.steps import print_step, settle, timed_sync

PROFILE_TOP = 25

# The app's default runs fetch, decode and parse in a prefetch child process, which a
# profiler in this process cannot see; the in-process variant shows that work too.
PROFILE_MODES = (
    ("", {}, "the app's defaults: work done in a prefetch child process is NOT in this profile"),
    ("-inprocess", {"AUTUMN_SYNC_PREFETCH_PROCESS": False},
     "AUTUMN_SYNC_PREFETCH_PROCESS=False: every step of the sync runs in the profiled process"),
)


def profile(db: str, data: Data) -> None:
    """cProfile the first sync and the no-change re-sync; the stand-in is not in it."""
    from django.test.utils import override_settings

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with standin(data) as served:
        os.environ["AUTUMN_API_URL"] = served.url
        setup_django()
        one_cursor(served.url)  # warms the stand-in's row cache; not profiled
        for suffix, overrides, mode in PROFILE_MODES:
            fresh_database(db)
            check_migrations()
            say(f"  mode: {mode}")
            with override_settings(**overrides):
                for name in ("first-sync", "no-change-resync"):
                    _profile_step(db, name + suffix, mode)


def _profile_step(db: str, name: str, mode: str) -> None:
    from autumn_django.sync.pages.prefetch import PROFILE_ENV, profile_path

    profiler = cProfile.Profile()
    child_stats = OUT_DIR / f"profile-{db}-{name}-prefetch-child.prof"
    jobs = {job: Path(profile_path(str(child_stats), job)) for job in ("customers", "entities")}
    for stats in jobs.values():
        stats.unlink(missing_ok=True)
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
    for job, stats in jobs.items():
        if stats.exists():
            text_path = stats.with_suffix(".txt")
            text_path.write_text(_profile_text(stats, step, db, f"the prefetch child process ({job} pass)"))
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
