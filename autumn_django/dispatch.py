"""Run the app's background work the way ``AUTUMN_TASK_MODE`` says: on Celery, or inline.

Callers never need to know which: signals, admin actions and webhooks all go through
``dispatch``. A broker that is down never breaks the caller (a signup must not fail
because Redis is away); the work is then left to the next full sync, and said so in the log.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from django.db import transaction

from .conf import TASK_MODES, autumn_settings
from .exceptions import AutumnConfigurationError, AutumnError, scrub_secrets

logger = logging.getLogger(__name__)

Outcome = Literal["queued", "ran", "failed", "off"]
BOUNDED_CONNECT = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.2}


def task_mode() -> str:
    mode = autumn_settings.TASK_MODE
    if mode not in TASK_MODES:
        raise AutumnConfigurationError(
            f"AUTUMN_TASK_MODE must be one of {', '.join(TASK_MODES)}, not {mode!r}."
        )
    return mode


def dispatch(task: Any, *args: Any, explicit: bool = False) -> Outcome:
    """Queue ``task`` with ``args``, or run it now, as ``AUTUMN_TASK_MODE`` says.

    ``explicit`` is for work a person or Autumn asked for (an admin action, a webhook): it
    runs inline when the mode is "off", where automatic work (signals) is skipped.
    Returns what happened. Inline work that fails is logged and reported as "failed",
    never raised: the caller is a request that must not break.
    """
    mode = task_mode()
    if mode == "off" and not explicit:
        return "off"
    if mode == "celery":
        try:
            # Kombu's default is to retry connecting for about 6 s before giving up; a
            # signup request must not stall that long on a broker that is down, so this
            # connection tries once (publishing takes ~1 ms on a live broker either way).
            with task.app.connection_for_write(transport_options=BOUNDED_CONNECT) as connection:
                task.apply_async(args=args, retry=False, connection=connection)
        except Exception as exc:  # kombu raises OperationalError, but transports vary
            logger.warning("Could not queue %s (%s); the next full sync will catch up.",
                           task.name, exc)
            return "failed"
        return "queued"
    try:
        task.run(*args)
    except AutumnError as exc:
        logger.warning("%s failed: %s", task.name, exc)
        return "failed"
    return "ran"


def dispatch_on_commit(task: Any, *args: Any, using: str | None = None) -> None:
    """``dispatch`` once the current transaction commits (at once outside one), so a task
    never looks for a row that is not committed yet.

    Whatever the work raises is logged, never raised: it would reach the code that
    committed (a signup's save, an admin edit) after its data is already saved. Autumn's own
    errors are logged by ``dispatch``; this catches the rest (a project's mapping function
    that raises inline, say)."""
    def run() -> None:
        try:
            dispatch(task, *args)
        except Exception as exc:
            logger.error("%s%r failed after the commit that asked for it (that commit stands): %s",
                         task.name, args, scrub_secrets(f"{type(exc).__name__}: {exc}"))

    transaction.on_commit(run, using=using)
