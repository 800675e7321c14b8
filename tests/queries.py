"""Capture the queries of every database connection, not just the calling thread's.

``CaptureQueriesContext(connection)`` sees one connection: the calling thread's, for one
alias. A sync on PostgreSQL writes its pages on connections that its lane threads open
(``autumn_django.sync.lanes``), so a query count or a search for writes made with it
misses the pages' own queries there. ``all_queries()`` wraps every connection already set
up in this thread (every alias) and every connection opened meanwhile, by any thread,
and also sees the COPY statements the sync sends through psycopg 3 (Django's execute
wrappers never see them).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, NamedTuple

from django.db import connections
from django.db.backends.signals import connection_created


class Query(NamedTuple):
    sql: str
    alias: str
    thread: str  # the name of the thread that ran it

    @property
    def verb(self) -> str:
        """The statement's first word, upper case (SELECT, UPDATE, ...)."""
        words = self.sql.split(None, 1)
        return words[0].upper() if words else ""


@contextmanager
def all_queries() -> Iterator[list[Query]]:
    """The queries run on any connection while the block runs, in the order they ran."""
    captured: list[Query] = []
    lock = threading.Lock()
    wrapped = []

    def record(execute, sql, params, many, context):
        try:
            return execute(sql, params, many, context)
        finally:
            query = Query(str(sql), context["connection"].alias, threading.current_thread().name)
            with lock:
                captured.append(query)

    def wrap(connection) -> None:
        with lock:
            if record not in connection.execute_wrappers:  # a reconnect signals again
                connection.execute_wrappers.append(record)
                wrapped.append(connection)

    def created(sender, connection, **kwargs) -> None:
        wrap(connection)

    def record_copy(raw_connection: Any, statement: Any) -> None:
        with lock:
            alias = next((c.alias for c in wrapped if c.connection is raw_connection), "")
            captured.append(Query(str(statement), alias, threading.current_thread().name))

    for connection in connections.all():
        wrap(connection)
    connection_created.connect(created, weak=False, dispatch_uid=f"all-queries-{id(captured)}")
    try:
        with _copies_reported_to(record_copy):
            yield captured
    finally:
        connection_created.disconnect(dispatch_uid=f"all-queries-{id(captured)}")
        for connection in wrapped:
            connection.execute_wrappers.remove(record)


def _copies_reported_to(report):
    """psycopg 3's ``Cursor.copy`` reporting each statement (on every thread) while active."""
    try:
        import psycopg
    except ImportError:
        return nullcontext()
    original = psycopg.Cursor.copy

    def copy(self, statement, *args, **kwargs):
        report(self.connection, statement)
        return original(self, statement, *args, **kwargs)

    @contextmanager
    def patched():
        psycopg.Cursor.copy = copy
        try:
            yield
        finally:
            psycopg.Cursor.copy = original

    return patched()
