"""Progress display for ``autumn_sync``: a bar on a terminal, plain lines otherwise.

Autumn's list has no total count, so the fraction done is estimated: from the number of
customers the mirror held before the run when it held any, else from how much of the
``created_at`` key space the crawl's windows have covered.
"""

from __future__ import annotations

import time

from ..sync import SyncProgress

BAR_WIDTH = 30
LINE_EVERY_SECONDS = 5.0


class ProgressReporter:
    def __init__(self, stream, *, is_tty: bool, expected_total: int) -> None:
        self.stream = stream
        self.is_tty = is_tty
        self.expected_total = expected_total
        self.started = time.monotonic()
        self._last_line = 0.0

    def __call__(self, progress: SyncProgress) -> None:
        run = progress.run
        seen = run.created + run.updated + run.unchanged + run.skipped
        elapsed = max(time.monotonic() - self.started, 1e-6)
        pages = f"{run.pages} page{'' if run.pages == 1 else 's'}"
        counts = (f"{seen:,} customers, {pages}, {seen / elapsed:,.0f}/s "
                  f"(new {run.created:,}, changed {run.updated:,}, unchanged {run.unchanged:,}"
                  f"{f', skipped {run.skipped:,}' if run.skipped else ''})")
        if self.is_tty:
            fraction = 1.0 if progress.done else self._fraction(progress, seen)
            filled = int(fraction * BAR_WIDTH)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            self.stream.write(f"\r[{bar}] {fraction:4.0%}  {counts}\033[K", ending="")
            self.stream.flush()
        elif (time.monotonic() - self._last_line >= LINE_EVERY_SECONDS
              or progress.done or run.pages == 1):
            self._last_line = time.monotonic()
            self.stream.write(f"page {run.pages}: {counts}")

    def close(self) -> None:
        if self.is_tty:
            self.stream.write("")

    def _fraction(self, progress: SyncProgress, seen: int) -> float:
        if self.expected_total:
            return min(seen / self.expected_total, 0.99)
        return min(progress.covered, 0.99)


class AdoptionReporter:
    """Progress of ``autumn_sync --create-missing``: a bar on a terminal, plain lines
    otherwise (every few seconds, and the last)."""

    def __init__(self, stream, *, is_tty: bool) -> None:
        self.stream = stream
        self.is_tty = is_tty
        self._last_line = 0.0

    def __call__(self, progress) -> None:
        rate = progress.done / max(progress.elapsed, 1e-6)
        counts = (f"{progress.done:,} of {progress.total:,} owners, {rate:,.0f}/s "
                  f"(created {progress.created:,}"
                  f"{f', skipped {progress.skipped:,}' if progress.skipped else ''})")
        last = progress.done == progress.total
        if self.is_tty:
            fraction = progress.done / progress.total if progress.total else 1.0
            filled = int(fraction * BAR_WIDTH)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            self.stream.write(f"\r[{bar}] {fraction:4.0%}  {counts}\033[K", ending="")
            self.stream.flush()
        elif last or time.monotonic() - self._last_line >= LINE_EVERY_SECONDS:
            self._last_line = time.monotonic()
            self.stream.write(counts)

    def close(self) -> None:
        if self.is_tty:
            self.stream.write("")
