"""A larger SQLite page cache on the connection a sync writes on, for the sync's length.

SQLite keeps 2 MiB of pages a connection (``PRAGMA cache_size``) unless the project asks
for more. A sync commits a page of 1,000 customers at a time, ~5 MiB written in one
transaction (each customer keeps its JSON), and customers go into the id and email
indexes in no useful order. With 2 MiB the transaction did not fit: SQLite wrote pages
out before the commit (syncing its journal first) and read index pages back from the
file, more as the mirror grew. Over a first sync of 30,000 customers it read from the
file 163,720 times and synced it 442 times; with 16 MiB, 31,843 and 376. The cache only
grows as pages are used, and goes back to the project's size when the sync ends; other
databases are left alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.db import DatabaseError, connections

# KiB. A first sync of 100,000 customers (SQLite, 0 ms, runs interleaved with and
# without): the customers pass took 13.4-14.0 s against 14.5-15.4, the sync process
# 10.0-10.6 CPU-s against 11.0-11.6. 8 MiB did about as well in some runs, 32 MiB no
# better than 16 beyond the noise. What it costs: the sync's peak memory at 100,000
# customers (entities too) went from 208 to 224 MiB, within the README's 250 target.
SYNC_PAGE_CACHE_KIB = 16 * 1024


@contextlib.contextmanager
def sync_page_cache(using: str) -> Iterator[None]:
    """Within: the connection ``using`` names has a page cache of at least
    ``SYNC_PAGE_CACHE_KIB`` if it is SQLite's. A project's own larger cache stands."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        before, page_size = _pragma(cursor, "cache_size"), _pragma(cursor, "page_size")
        # A negative size is in KiB, a positive one in pages.
        raised = (-before if before < 0 else before * page_size // 1024) < SYNC_PAGE_CACHE_KIB
        if raised:
            cursor.execute(f"PRAGMA cache_size = -{SYNC_PAGE_CACHE_KIB}")
    try:
        yield
    finally:
        # Only if raised (a project's own cache as large is left as it is), not on a
        # connection opened since (closed after an error: a new one has the project's
        # size), and never failing the sync's own ending.
        if raised and connection.connection is not None:
            with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
                cursor.execute(f"PRAGMA cache_size = {before}")


def _pragma(cursor, name: str) -> int:
    cursor.execute(f"PRAGMA {name}")
    return int(cursor.fetchone()[0])
