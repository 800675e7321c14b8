"""Celery tasks. Names are explicit and stable: beat schedules and queued messages refer to
them, so renaming a function must not orphan them.

Queue them through ``autumn_django.dispatch.dispatch``, which honours ``AUTUMN_TASK_MODE``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from .client import AutumnClient
from .conf import autumn_settings, get_owner_model
from .exceptions import (
    AutumnConnectionError,
    NotFoundError,
    RateLimitError,
    ServerError,
    SyncAlreadyRunning,
)
from .owners import customer_fields_for, owner_is_user_model
from .sync import get_or_create_customer, sync_all_customers, sync_customer, update_customer

logger = logging.getLogger(__name__)

# Autumn or the network being unwell: worth another try later. Anything else (a bad key,
# a rejected input) would fail the same way again.
TRANSIENT_ERRORS = (AutumnConnectionError, RateLimitError, ServerError)
RETRY_OPTIONS: dict[str, Any] = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 10,
}


@shared_task(name="autumn_django.sync_all_customers")
def sync_all_customers_task(restart: bool = False, env: str | None = None) -> dict[str, Any]:
    """The full sync of ``env`` ("sandbox" or "live"; default ``AUTUMN_ENV``). A run that
    finds another of its env running ends at once and says so; a run that fails is resumed
    by the next one, so this task is not retried."""
    try:
        with AutumnClient(env=env) as client:
            run = sync_all_customers(client=client, restart=restart)
    except SyncAlreadyRunning as exc:
        logger.info("Full sync skipped: %s", exc.message)
        return {"status": "skipped", "reason": exc.message}
    return {"status": run.status, "run": run.pk, "env": run.env, "created": run.created,
            "updated": run.updated, "unchanged": run.unchanged, "deleted": run.deleted,
            "skipped": run.skipped}


@shared_task(name="autumn_django.sync_all_customers_workflow")
def sync_all_customers_workflow_task(restart: bool = False, env: str | None = None) -> dict[str, Any]:
    """The full sync of ``env`` as a workflow (``sync.workflow``): this task takes the
    env's lock and queues one ``autumn_django.sync_window`` task per window; any number of
    workers crawl them, and the last to finish settles deletions, crawls the entities and
    finishes the run. Skipped, like the in-process sync, while another run of the env is live."""
    from .sync import workflow

    try:
        with AutumnClient(env=env) as client:
            run, pending = workflow.start_workflow(client, restart=restart)
            # Resumed after its customers were all crawled: settle them if not yet done,
            # and leave the last stage to a task acknowledged late.
            if not pending and workflow.settle_if_last(run.pk, run.lease_token):
                sync_workflow_finish_task.delay(run.pk, run.lease_token)
    except SyncAlreadyRunning as exc:
        logger.info("Full sync skipped: %s", exc.message)
        return {"status": "skipped", "reason": exc.message}
    _queue_windows(run.pk, run.lease_token, pending)
    return {"status": run.status, "run": run.pk, "env": run.env, "windows": pending}


# A copy of a window's message redelivered while a live task still crawls the window
# (the broker's visibility timeout passed) looks again this often, until the window is
# done or its claim is stale (a dead worker's). The same for the run's last stage.
WINDOW_BUSY_RETRY_SECONDS = 5


def _busy_countdown() -> int:
    return min(WINDOW_BUSY_RETRY_SECONDS, max(1, autumn_settings.SYNC_LOCK_TIMEOUT // 4))


def _queue_windows(run_pk: int, lease_token: str, numbers: list[int]) -> None:
    """Queue these windows' tasks, then record it (``SyncWindow.queued_at``): a window
    queued and not yet claimed keeps its run alive while its task waits for a worker."""
    from .sync import workflow

    for number in numbers:
        sync_window_task.delay(run_pk, number, lease_token)
        # Each at once: a task that finishes meanwhile would queue the others again.
        workflow.mark_queued(run_pk, [number])


@shared_task(name="autumn_django.sync_window", bind=True, acks_late=True, reject_on_worker_lost=True,
             max_retries=None)
def sync_window_task(self: Any, run_pk: int, number: int, lease_token: str) -> dict[str, Any]:
    """Crawl window ``number`` of workflow run ``run_pk`` from its committed position.
    Acknowledged late, so a worker killed mid-window leaves its message to another worker,
    which resumes the window from its last committed page. The task that finds every
    window done settles the run and runs its last stage (``finish_workflow``): killed
    there, its message, redelivered, resumes that stage."""
    from .sync import workflow

    claimed = workflow.claim_window(run_pk, number, lease_token)
    if claimed == "busy":
        raise self.retry(countdown=_busy_countdown())
    if claimed == "stale":
        return {"status": "stale", "run": run_pk, "window": number}
    with AutumnClient(env=workflow.run_env(run_pk)) as client:
        if not isinstance(claimed, str):
            run, row = claimed
            workflow.crawl_window(client, run, row, lambda n: _queue_windows(run_pk, lease_token, [n]))
        # Windows whose task a dead worker never queued (it died after the commit that cut them).
        _queue_windows(run_pk, lease_token, workflow.unqueued_windows(run_pk, lease_token))
        if not workflow.settle_if_last(run_pk, lease_token):
            return {"status": "crawled", "run": run_pk, "window": number}
        finished = workflow.finish_workflow(client, run_pk, lease_token)
    if finished == "busy" and claimed == "done":
        # This message may be a redelivered copy of the one whose task runs the last stage
        # (its only copy, should that worker die): wait for the stage to end or go stale.
        # A task that crawled its window itself cannot be that copy, and lets go.
        raise self.retry(countdown=_busy_countdown())
    if isinstance(finished, str):
        return {"status": finished, "run": run_pk, "window": number}
    return {"status": finished.status, "run": run_pk, "window": number, "settled": True}


@shared_task(name="autumn_django.sync_workflow_finish", bind=True, acks_late=True,
             reject_on_worker_lost=True, max_retries=None)
def sync_workflow_finish_task(self: Any, run_pk: int, lease_token: str) -> dict[str, Any]:
    """The last stage of workflow run ``run_pk`` whose customers are settled: the entities
    pass, resumed from the run's saved cursor, and the end of the run. Acknowledged late:
    a worker killed mid-stage leaves its message to another, which resumes the stage once
    the dead one's claim is stale."""
    from .sync import workflow

    with AutumnClient(env=workflow.run_env(run_pk)) as client:
        finished = workflow.finish_workflow(client, run_pk, lease_token)
    if finished == "busy":
        raise self.retry(countdown=_busy_countdown())
    if isinstance(finished, str):
        return {"status": finished, "run": run_pk}
    return {"status": finished.status, "run": run_pk}


@shared_task(name="autumn_django.sync_customer", **RETRY_OPTIONS)
def sync_customer_task(customer_id: str, env: str | None = None) -> str:
    """Refresh one customer of ``env`` (default ``AUTUMN_ENV``) through customers.get."""
    with AutumnClient(env=env) as client:
        row = sync_customer(customer_id, client=client)
    return "deleted" if row is None else "synced"


@shared_task(name="autumn_django.process_webhook_event", **RETRY_OPTIONS)
def process_webhook_event_task(event_pk: int, env: str | None = None) -> str:
    """Process a stored Autumn webhook (``webhooks.processing.process_event``): refresh its
    customer in ``env``, the environment of the endpoint that received it (default
    ``AUTUMN_ENV``), then send its signals here, in the worker. Autumn's transient errors
    are retried with backoff; past the retries the event stays failed for "Process again"."""
    from .webhooks.processing import process_event

    return process_event(event_pk, env=env, reraise=TRANSIENT_ERRORS).status


@shared_task(name="autumn_django.create_customer_for_owner", acks_late=True, **RETRY_OPTIONS)
def create_customer_for_owner_task(owner_pk: Any) -> str | None:
    """``customers.get_or_create`` for a new owner (``AUTUMN_CUSTOMER_OWNER_MODEL``: a user
    by default), stored and linked. Idempotent, so it is acknowledged late: a worker that
    dies mid-task leaves it to be run again."""
    owner = get_owner_model()._default_manager.filter(pk=owner_pk).first()
    if owner is None:
        return None  # deleted before the task ran
    fields = customer_fields_for(owner)
    extra = _given(name=fields["name"], email=fields["email"],
                   auto_enable_plan_id=autumn_settings.AUTO_ENABLE_PLAN_ID)
    return get_or_create_customer(fields["customer_id"], owner=owner, **extra).autumn_id


@shared_task(name="autumn_django.update_customer_for_owner", acks_late=True, **RETRY_OPTIONS)
def update_customer_for_owner_task(owner_pk: Any) -> str | None:
    """Send an owner's current name and email to Autumn and refresh the mirror row."""
    owner = get_owner_model()._default_manager.filter(pk=owner_pk).first()
    if owner is None:
        return None
    fields = customer_fields_for(owner)
    with AutumnClient() as client:
        # The owner's customer in the key's env: an owner linked in sandbox and live has
        # one in each, and only this one's id means anything to the key.
        linked = (owner.autumn_customers.filter(env=client.env).exclude(autumn_id=None)
                  .values_list("autumn_id", flat=True).first())
        customer_id = linked or fields["customer_id"]
        profile = _given(name=fields["name"], email=fields["email"])
        try:
            row = update_customer(customer_id, client=client, **profile)
        except NotFoundError:  # never created (signup was off or failed): create it now
            row = get_or_create_customer(fields["customer_id"], owner=owner, client=client, **profile)
    return row.autumn_id


# The names before owners (0.x): messages an earlier version queued still run, when users
# are still the owners (a user's pk means nothing to another owner model).
@shared_task(name="autumn_django.create_customer_for_user", acks_late=True, **RETRY_OPTIONS)
def create_customer_for_user_task(user_pk: Any) -> str | None:
    return create_customer_for_owner_task.run(user_pk) if owner_is_user_model() else None


@shared_task(name="autumn_django.update_customer_for_user", acks_late=True, **RETRY_OPTIONS)
def update_customer_for_user_task(user_pk: Any) -> str | None:
    return update_customer_for_owner_task.run(user_pk) if owner_is_user_model() else None


def _given(**fields: Any) -> dict[str, Any]:
    """Leave out what the owner lacks: Autumn reads a null as "remove", or rejects it."""
    return {name: value for name, value in fields.items() if value is not None}
