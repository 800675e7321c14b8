"""Whether the process holding a sync run is still alive, so a killed run (``kill -9``, an
OOM kill, a container stopped) does not block the next one until its lease expires.

Two signs, each trusted only where it is sure:
- PostgreSQL: a running run holds a session-level advisory lock on its connection. When
  its process dies, the server ends that session and frees the lock; whoever gets the lock
  while a run is marked running knows that run's process is gone, wherever it ran.
- Any database: a run records its host name and process id. A run on this host whose
  process no longer exists is dead.

Neither ever blocks a run on its own: a lock that cannot be had (held by a connection
pooler's session, say) only means the lease (``AUTUMN_SYNC_LOCK_TIMEOUT``) decides, as it
does for a run on another machine of a database without advisory locks.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import zlib
from dataclasses import dataclass

from django.db import connections

from ..models import SyncRun

logger = logging.getLogger(__name__)

# Tries at the advisory lock, and the wait between them.
ADVISORY_TRIES = 5
ADVISORY_RETRY_SECONDS = 0.1

# The advisory lock's two keys: this app, and the env (pg_advisory_lock(int, int)).
_LOCK_NAMESPACE = zlib.crc32(b"autumn_django.sync") & 0x7FFFFFFF


def this_host() -> str:
    return socket.gethostname()[:255]


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        return True
    return True


@dataclass
class RunHolder:
    """The lock a sync run holds on ``using`` while it runs, on top of its run row."""

    env: str
    using: str
    advisory: bool = False  # whether this process now holds the advisory lock

    @property
    def _connection(self):
        return connections[self.using]

    def _keys(self) -> tuple[int, int]:
        return _LOCK_NAMESPACE, zlib.crc32(self.env.encode()) & 0x7FFFFFFF

    def acquire(self) -> None:
        """Take the advisory lock where the database has one, never waiting for long: a
        few tries over half a second, because the server ends the session of a process
        killed a moment ago only once it notices its connection closed."""
        if self._connection.vendor != "postgresql":
            return
        with self._connection.cursor() as cursor:
            for attempt in range(ADVISORY_TRIES):
                if attempt:
                    time.sleep(ADVISORY_RETRY_SECONDS)
                cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", self._keys())
                self.advisory = bool(cursor.fetchone()[0])
                if self.advisory:
                    return

    def release(self) -> None:
        if not self.advisory:
            return
        self.advisory = False
        try:
            with self._connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", self._keys())
        except Exception as exc:  # the connection is gone: so is the lock
            logger.debug("Could not release the sync's advisory lock: %s", exc)

    def holder_is_gone(self, run: SyncRun) -> bool:
        """True when ``run`` (marked running) certainly has no live process behind it."""
        if run.host == this_host() and run.pid == os.getpid():
            return False  # this very process (another thread, or a caller's own test)
        if self.advisory and run.advisory_lock:
            return True  # its session would still hold the lock we were just given
        return run.host == this_host() and run.pid is not None and not _process_exists(run.pid)


    def identity(self) -> dict[str, object]:
        """What a run records of the process that holds it."""
        return {"host": this_host(), "pid": os.getpid(), "advisory_lock": self.advisory}
