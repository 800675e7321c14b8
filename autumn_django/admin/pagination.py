"""A paginator that does not count a whole large table on every page view."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property


class EstimatedCountPaginator(Paginator):
    """Counts exactly, except an unfiltered list of a large PostgreSQL table.

    The admin shows "N customers" and the page links from ``count``; a COUNT(*) of a
    100,000-row table on every page view costs more than the page itself. PostgreSQL keeps
    an estimate of every table's size (``pg_class.reltuples``, refreshed by autovacuum),
    and an unfiltered list is the whole table, so its count is that estimate when it is
    over ``exact_below``. Filtered lists, small tables and other databases (SQLite counts
    100,000 rows in a few milliseconds) are counted exactly. The pagination template says
    "about" when ``is_estimate``.
    """

    exact_below = 50_000
    is_estimate = False

    @cached_property
    def count(self) -> int:
        estimate = self._estimate()
        if estimate is not None and estimate >= self.exact_below:
            self.is_estimate = True
            return estimate
        return super().count

    def _estimate(self) -> int | None:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet) or not _is_whole_table(queryset):
            return None
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cursor:
            # to_regclass resolves the name through the search_path, as the query would;
            # reltuples is -1 (PostgreSQL 14+) or 0 for a table never analysed.
            cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                           [connection.ops.quote_name(queryset.model._meta.db_table)])
            row = cursor.fetchone()
        return int(row[0]) if row and row[0] and row[0] > 0 else None


def _is_whole_table(queryset: QuerySet) -> bool:
    query = queryset.query
    return not (query.where or query.distinct or query.combinator or query.low_mark
                or query.high_mark is not None or query.group_by)
