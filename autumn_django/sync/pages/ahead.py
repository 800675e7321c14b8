"""A crawl's next page, fetched on a thread while the current one is worked on.

A single cursor's pages can only come one after another (``entities.list`` newest first;
a customers crawl of one window). What can overlap is the work on a page (preparing it,
writing it) with the request for the next one: at 250 ms a request, a 10-page entities
pass spent 2.5 s waiting with nothing else to do.

Bounded: the thread fetches a page only once the writer has taken the one before, so at
most one page waits, besides the one being written. Errors (a failed request, a rejected
cursor) reach the writer in their place in the crawl, after the pages before them.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

Page = TypeVar("Page")
Prepared = TypeVar("Prepared")

# How long ``close`` waits for a request in flight to end (it is not interrupted): long
# enough for an answer on its way, short enough not to hold up a failed run.
_CLOSE_WAIT_SECONDS = 5.0


class PagesAhead(Generic[Page, Prepared]):
    """Iterate ``prepare(page)`` for each page of ``pages``, one page ahead on a thread.

    ``lock`` is held while the thread asks for a page: whoever else uses the same client
    (its HTTP session) meanwhile takes it too. ``prepare`` must not touch the database
    (the thread has no connection of its own). Use as a context manager, or ``close()``."""

    def __init__(self, pages: Iterator[Page], prepare: Callable[[Page], Prepared] | None = None, *,
                 lock: threading.Lock | None = None, name: str = "autumn-entities-ahead") -> None:
        self._pages, self._prepare = pages, prepare or _as_is
        self._lock = lock or threading.Lock()
        self._ready: deque[tuple[str, object]] = deque()  # ("page" | "error" | "end", value)
        self._changed = threading.Condition()
        self._taken = True  # the writer took the last page: the thread may fetch the next
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._taken or self._closed)
                if self._closed:
                    return
                self._taken = False
            try:
                with self._lock:
                    page = next(self._pages)
                item: tuple[str, object] = ("page", self._prepare(page))
            except StopIteration:
                item = ("end", None)
            except BaseException as exc:  # handed to the writer's thread, in its place
                item = ("error", exc)
            with self._changed:
                self._ready.append(item)
                self._changed.notify_all()
            if item[0] != "page":
                return

    def __iter__(self) -> Iterator[Prepared]:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._ready) or self._closed)
                if not self._ready:  # closed: by its owner, or a stage after this one
                    return
                kind, value = self._ready.popleft()
                self._taken = True  # the next page may come while this one is written
                self._changed.notify_all()
            if kind == "end":
                return
            if kind == "error":
                raise value  # type: ignore[misc]
            yield value  # type: ignore[misc]

    def close(self) -> None:
        """Stop fetching; wait a little for a request in flight."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(_CLOSE_WAIT_SECONDS)

    def stop(self) -> None:
        """``close``, under the name the preparer's page sources share (``preparer._Inline``)."""
        self.close()

    def __enter__(self) -> PagesAhead[Page, Prepared]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _as_is(page):
    return page
