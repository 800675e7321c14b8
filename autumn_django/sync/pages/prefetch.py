"""Prepare pages in a child process, overlapped with the writes.

Decoding, hashing and row building all hold the GIL, so threads would not overlap them
with the database writes; a child process does (design.md, "Performance notes": 3.7x
fetch-only instead of 6.7x on SQLite). The parent sends the child compact fingerprints of
what the mirror holds, so the child does not even parse a customer that did not change:
a no-change re-sync costs little more than fetching.

The child needs no Django setup and no database: it gets the client's arguments (the key
through its stdin, never its command line) and its job. For the customers pass that is
the crawl's windows: it runs ``crawl.WindowedCrawl`` (a thread per window in flight: they
wait on the network side by side, and one core decodes) and sends back pickled
``PreparedPage`` frames. For the entities pass it is the ``entities.list`` crawl: it runs
``entityreader.read_entity_pages`` and sends back ``ReadEntityPage`` frames (a first
entities pass is mostly building rows: 10,000 entities, SQLite, the pass in one process
spent two thirds of its time reading pages).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Generator, Iterator
from typing import IO, Any

from ...client import AutumnClient
from ...entity_listing import EntityCrawl
from ...exceptions import AutumnError
from . import entityreader
from .crawl import WindowedCrawl
from .entityreader import ReadEntityPage
from .fingerprints import Fingerprints
from .preparer import MirrorState, MirrorView, PreparedPage, StoredMemos
from .records import DATETIME_ROWS, RowForm
from .windows import Window, WindowPlan

# Set to a file path, the prefetch process writes its cProfile statistics there (with its
# job's name before the suffix: ``profile_path``).
PROFILE_ENV = "AUTUMN_DJANGO_PREFETCH_PROFILE"


# glibc's allocator, tuned for this process (other C libraries ignore these). Each of its
# threads (a crawler per window, the capped customers' readers) got an arena of its own,
# and 3 MiB answers and pickled pages came from those heaps once glibc's adaptive
# threshold rose past them: freed memory stayed with the process, in pieces. Measured on a
# first sync with 8 windows at 0 ms, the child's peak RSS went from 231 MiB at 100,000
# customers (160 at 20,000) to 165 (126): two arenas, and large blocks always mapped on
# their own and given back when freed.
CHILD_MALLOC = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "131072"}


def prepared_pages(client: AutumnClient, windows: list[Window], crawlers: int, limit: int,
                   known: MirrorState, memos: StoredMemos, *, form: RowForm = DATETIME_ROWS,
                   fixed: bool = False,
                   ) -> Iterator[PreparedPage]:
    """``crawl.WindowedCrawl.pages`` of ``windows`` run in a child process. Errors raised
    there (an ``AutumnError`` such as an invalid cursor) are raised here."""
    return _from_child(client, {"job": "customers", "windows": [w.as_dict() for w in windows],
                                "crawlers": crawlers, "fixed": fixed, "limit": limit, "form": form},
                       known, memos)


def read_entity_pages(client: AutumnClient, crawl: EntityCrawl, known: MirrorState, memos: StoredMemos,
                      *, form: RowForm = DATETIME_ROWS) -> Generator[ReadEntityPage, None, None]:
    """``entityreader.read_entity_pages`` of ``crawl`` run in a child process (the
    mirror's entities as ``known`` gives them, the stored entity page memos as ``memos``).
    Errors raised there are raised here."""
    return _from_child(client, {"job": "entities", "crawl": crawl, "form": form}, known, memos)


def _from_child(client: AutumnClient, config: dict[str, Any], known: MirrorState, memos: StoredMemos,
                ) -> Generator[Any, None, None]:
    """The pages the child sends for the job ``config`` names; closing the generator
    stops the child."""
    env = dict(os.environ)
    # The parent may import this package from a path only its sys.path knows (manage.py
    # adds the project root); the child must find the same code.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    for name, value in CHILD_MALLOC.items():
        env.setdefault(name, value)  # the project's own choice, if it made one, stands
    child = subprocess.Popen(
        [sys.executable, "-m", "autumn_django.sync.pages.prefetch"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
    )
    ended = False
    frames = _FrameReader(child.stdout)
    try:
        _write_frame(child.stdin, {**config, "client": client.arguments()})
        # Computed while the child already starts (and, for customers, fetches).
        _write_frame(child.stdin, known().to_bytes())
        _write_frame(child.stdin, memos())
        child.stdin.close()
        while True:
            kind, payload = frames.read()
            if kind == "page":
                yield payload
            elif kind == "error":
                raise payload
            else:
                ended = True
                return
    except EOFError:
        code = child.wait()
        raise AutumnError(f"The sync's prefetch process stopped unexpectedly (exit code {code}).") from None
    except UnreadableFrame as exc:
        raise AutumnError(f"The sync could not read what its prefetch process sent ({exc}). Pages "
                          "saved so far are kept; the next run resumes from the last of them.") from None
    finally:
        if ended:  # it exits on its own (a profiled child writes its statistics first)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=_EXIT_WAIT_SECONDS)
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()


# How long a child that sent its last page has to exit before it is killed.
_EXIT_WAIT_SECONDS = 10.0


def _write_frame(stream: IO[bytes], value: Any) -> None:
    _write_bytes(stream, _pickled(value))


def _pickled(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _write_bytes(stream: IO[bytes], data: bytes) -> None:
    """One frame: its length, then ``data``, written whole to ``stream``'s descriptor.

    Not through ``stream.write``: under ``PYTHONUNBUFFERED=1`` (set in most Django
    containers) ``sys.stdout.buffer`` is the raw file, whose ``write`` may write part and
    say so. It did whenever a stop (Ctrl-Z, a profiler attaching) interrupted a write that
    waited for the parent to read: the rest of the frame was lost, and the parent failed
    unpickling the next one."""
    stream.flush()
    descriptor = stream.fileno()
    for part in (struct.pack(">Q", len(data)), data):
        left = memoryview(part)
        while left:
            left = left[os.write(descriptor, left):]


class _FrameSender:
    """Writes the child's frames on a thread, so the child goes on preparing the next page
    while the parent is still busy with the one before and has not read this one.

    Pages vary (capped customers to re-read, changed ones to parse); without this the child
    waited in the write whenever it was ahead and could not bank the time for a slower page
    after. One frame waits here at most, so memory stays bounded. Writing to the pipe
    releases the GIL: the preparing thread goes on meanwhile.
    """

    def __init__(self, sink: IO[bytes]) -> None:
        self._sink = sink
        self._frames: queue.Queue[bytes | None] = queue.Queue(maxsize=1)
        self._failure: OSError | None = None
        self._thread = threading.Thread(target=self._send_all, name="autumn-prefetch-send", daemon=True)
        self._thread.start()

    def send(self, value: Any) -> None:
        """Pickle ``value`` here and queue it; raises the write's error once one failed."""
        self.send_pickled(_pickled(value))

    def send_pickled(self, frame: bytes) -> None:
        """Queue a frame ``_pickled`` already."""
        if self._failure is not None:
            raise self._failure
        self._frames.put(frame)

    def close(self) -> None:
        """Wait until every queued frame is written."""
        self._frames.put(None)
        self._thread.join()
        if self._failure is not None:
            raise self._failure

    def _send_all(self) -> None:
        while (data := self._frames.get()) is not None:
            if self._failure is None:  # after a failure, drain: a put must never block for ever
                try:
                    _write_bytes(self._sink, data)
                except OSError as exc:
                    self._failure = exc


class UnreadableFrame(Exception):
    """A frame whose length or content makes no sense: the stream lost its place (a write
    cut short: e252ffe), or something unpickles only on one side of the pipe."""


# No frame is near this: a page of 1,000 customers is ~5 MB. A length past it is a stream
# out of step, read before it asks for exabytes.
MAX_FRAME_BYTES = 1 << 30


class _FrameReader:
    """Reads the frames of one stream into one buffer, reused. A page's frame is ~5 MB:
    once glibc's allocator had given one back to the system it raised its mmap threshold
    past that size, and every later block up to it came from the heap and stayed there in
    pieces (the sync process's peak RSS, first sync of 30,000 customers on PostgreSQL:
    125.9 -> 120.2 MiB). The stream's end, or a frame cut short, is ``EOFError``; a frame
    that cannot be one is ``UnreadableFrame``."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._buffer = bytearray()

    def read(self) -> Any:
        header = self._stream.read(8)
        if len(header) < 8:
            raise EOFError
        size = struct.unpack(">Q", header)[0]
        if size > MAX_FRAME_BYTES:
            raise UnreadableFrame(f"a frame of {size:,} bytes")
        if len(self._buffer) < size:
            self._buffer = bytearray(size)
        with memoryview(self._buffer) as whole, whole[:size] as frame:
            filled = 0
            while filled < size:
                got = self._stream.readinto(frame[filled:])
                if not got:
                    raise EOFError
                filled += got
            try:
                return pickle.loads(frame)  # noqa: S301  (our own child, over a private pipe)
            except Exception as exc:  # garbage can fail any way: EOFError is not the stream's end
                raise UnreadableFrame(f"{type(exc).__name__}: {str(exc)[:200]}") from None


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="autumn_django prefetch: %(message)s")
    _stay_bound_to_parent()
    incoming = _FrameReader(sys.stdin.buffer)
    config = incoming.read()
    profile_to = os.environ.get(PROFILE_ENV)
    if profile_to:  # the benchmark's --profile: cProfile in the parent cannot see this process
        import cProfile

        cProfile.runctx("_serve(config, incoming)", globals(),
                        {"_serve": _serve, "config": config, "incoming": incoming},
                        profile_path(profile_to, config["job"]))
    else:
        _serve(config, incoming)


def profile_path(path: str, job: str) -> str:
    """Where the child of ``job`` ("customers" or "entities") writes its profile, given
    ``PROFILE_ENV``'s ``path``: the job's name before the suffix."""
    stem, dot, suffix = path.rpartition(".")
    return f"{stem}-{job}.{suffix}" if dot and "/" not in suffix else f"{path}-{job}"


# How often the child checks that its parent is still there.
PARENT_POLL_SECONDS = 0.5


def _stay_bound_to_parent() -> None:
    """The parent decides when this process ends: it stops it when the sync ends, however
    the sync ends. A Ctrl-C or a SIGTERM sent to the whole process group is the parent's
    to handle (it then stops this process), and a parent that died without a word (kill -9,
    an OOM kill) leaves this process to the init process: it notices and exits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="autumn-prefetch-parent", daemon=True).start()


def _serve(config: dict[str, Any], source: _FrameReader) -> None:
    sender = _FrameSender(sys.stdout.buffer)
    try:
        try:
            _send_pages(config, source, sender)
            sender.send(("end", None))
        except AutumnError as exc:
            sender.send(("error", exc))
        finally:
            sender.close()  # every frame queued is written before this process ends
    except BrokenPipeError:
        pass  # the parent stopped reading: it failed or was interrupted, and says why


def _send_pages(config: dict[str, Any], source: _FrameReader, sender: _FrameSender) -> None:
    frames = _JOBS[config["job"]](config, source)
    # Automatic collections while orjson builds a page's ~40,000 containers cost ~7% of
    # this process's time (measured over 20,000 customers), so they are off, and cyclic
    # garbage (a bad record's traceback, an HTTP response's own cycles, which hold the
    # page's bytes) is collected every COLLECT_PAGES pages. A full collection after every
    # page walked every page in flight in the windows' crawlers too: 2.3 of the child's 7.5
    # CPU-seconds on a first sync of 20,000 customers with 8 windows. Young generations
    # only, with a full collection every 64 pages, let garbage promoted while its page
    # was in flight pile up (at 20,000 customers the child peaked 9 MiB higher).
    gc.freeze()
    gc.disable()
    for n, frame in enumerate(frames, 1):
        sender.send_pickled(frame)
        del frame
        if n % COLLECT_PAGES == 0:
            gc.collect()


def _page_frame(page: Any) -> bytes:
    """A page's frame, pickled on the thread that made the page: it waits to be sent half
    the size it has as objects, which then go."""
    return _pickled(("page", page))


def _customer_pages(config: dict[str, Any], source: _FrameReader) -> Iterator[bytes]:
    arguments = config["client"]
    view = MirrorView(lambda: Fingerprints(frozen=source.read()), source.read)
    crawl = WindowedCrawl(WindowPlan([Window.from_dict(w) for w in config["windows"]], fixed=config["fixed"],
                                     crawlers=config["crawlers"]),
                          make_client=lambda: AutumnClient(**arguments), limit=config["limit"],
                          crawlers=config["crawlers"], view=view, form=config["form"], pack=_page_frame)
    crawl.start()  # the first pages are on their way while the mirror's state arrives
    view.load()
    return crawl.pages()


def _entity_pages(config: dict[str, Any], source: _FrameReader) -> Iterator[bytes]:
    known = Fingerprints(frozen=source.read())
    stored = source.read()
    pages = entityreader.read_entity_pages(AutumnClient(**config["client"]), config["crawl"], known, stored,
                                           config["form"])
    return (_page_frame(page.travel_light()) for page in pages)


_JOBS = {"customers": _customer_pages, "entities": _entity_pages}


# How often (in pages) the prefetch child collects cyclic garbage.
COLLECT_PAGES = 8


if __name__ == "__main__":
    main()
