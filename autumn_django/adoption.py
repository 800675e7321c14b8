"""Adopting the app in an existing project: give every owner that has no customer yet in an
environment one, through ``customers.get_or_create``, and link it
(``manage.py autumn_sync --create-missing``).

Owners that already have a customer under their mapped id in the mirror are linked first
(``link_owners_to_customers``), so none is created twice. The rest are created a few at a
time (Autumn rate-limits; the client waits out each 429 as Autumn says). What is missing is
recomputed from the database on every run, so a run that is killed leaves linked rows for
what it did and the next one only does the rest; a customer created in Autumn whose answer
was lost is found again by ``get_or_create``, not created twice.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Exists, OuterRef

from .client import AutumnClient
from .conf import autumn_settings, get_owner_model
from .exceptions import InvalidRequestError
from .models import Customer
from .owners import CustomerFields, customer_fields_for, link_owners_to_customers
from .sync.single import store_customer

logger = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 4
# Answers stored per transaction, at most.
STORE_BATCH = 100


@dataclass
class AdoptionResult:
    """What ``create_missing_customers`` did (or, with ``dry_run``, would do) in ``env``.

    ``created``: owners given a customer through ``customers.get_or_create`` (one that
    Autumn already had, not yet in the mirror, is returned by it and counted here too);
    ``linked``: owners linked to the customer the mirror already held under their mapped
    id; ``skipped``: owners left without one, each in ``errors`` (``{"owner": pk,
    "error": text}``): a mapping that fails, or a customer Autumn refused.
    """

    env: str
    dry_run: bool = False
    created: int = 0
    linked: int = 0
    skipped: int = 0
    seconds: float = 0.0
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class AdoptionProgress:
    """Passed to ``progress`` after each owner: ``done`` of ``total`` to create."""

    env: str
    done: int
    total: int
    created: int
    skipped: int
    elapsed: float


def missing_owners(env: str, *, using: str = DEFAULT_DB_ALIAS) -> Any:
    """The owners that have no customer in ``env`` (no ``Customer`` row of ``env`` whose
    ``owner`` is them), by primary key."""
    Owner = get_owner_model()
    return Owner._default_manager.using(using).filter(
        ~Exists(Customer.objects.filter(env=env, owner=OuterRef("pk")))
    ).order_by("pk")


def _mapped(env: str, using: str, result: AdoptionResult) -> Iterator[tuple[Any, CustomerFields]]:
    """Each missing owner with its fields; an owner whose mapping fails is skipped."""
    for owner in missing_owners(env, using=using).iterator(chunk_size=2000):
        try:
            fields = customer_fields_for(owner)
        except Exception as exc:  # the project's mapping: whatever it raises, skip that owner
            _skip(result, owner.pk, f"AUTUMN_CUSTOMER_FIELDS failed: {exc}")
            continue
        yield owner, fields


def _skip(result: AdoptionResult, pk: Any, error: str) -> None:
    result.skipped += 1
    result.errors.append({"owner": pk, "error": error})
    logger.warning("No customer for owner %s: %s", pk, error)


def create_missing_customers(
    env: str | None = None,
    *,
    dry_run: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[AdoptionProgress], None] | None = None,
    client: AutumnClient | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> AdoptionResult:
    """Give every owner (``AUTUMN_CUSTOMER_OWNER_MODEL``) without a customer in ``env``
    (default ``AUTUMN_ENV``) one, with the fields ``AUTUMN_CUSTOMER_FIELDS`` gives it, and
    link it; owners whose mapped id the mirror already holds are only linked.

    ``concurrency`` threads call Autumn, each with its own client and database connection.
    ``dry_run`` counts what would be created and linked and writes nothing (no call to
    Autumn at all). An error that is not about one owner (a bad key, Autumn unreachable or
    rate limiting past the client's retries) stops the run and is raised: what was done is
    kept, and the next run does the rest.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    started = time.monotonic()
    own_client = client is None
    base = client or AutumnClient(env=env)
    try:
        result = AdoptionResult(env=base.env, dry_run=dry_run)
        if dry_run:
            _count_only(result, using)
        else:
            result.linked = link_owners_to_customers(base.env, using=using)
            work = list(_mapped(base.env, using, result))
            _create(work, base, result, concurrency, progress, using, started)
    finally:
        if own_client:
            base.close()
    result.seconds = time.monotonic() - started
    return result


def _count_only(result: AdoptionResult, using: str) -> None:
    """How many ``link_owners_to_customers`` would link and how many would be created."""
    owners_by_id: dict[str, Any] = {}
    for owner, fields in _mapped(result.env, using, result):
        owners_by_id[fields["customer_id"]] = owner.pk
    ids = list(owners_by_id)
    linkable = 0
    for start in range(0, len(ids), 500):
        linkable += Customer.objects.using(using).filter(
            env=result.env, autumn_id__in=ids[start:start + 500], owner__isnull=True).count()
    result.linked = linkable
    result.created = len(owners_by_id) - linkable


def _create(work: list[tuple[Any, CustomerFields]], base: AutumnClient, result: AdoptionResult,
            concurrency: int, progress: Callable[[AdoptionProgress], None] | None, using: str,
            started: float) -> None:
    """Threads call Autumn; this thread stores their answers, a batch per transaction (one
    commit per customer would make the database, not Autumn, the limit)."""
    total = len(work)
    if not total:
        return
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for item in work:
        todo.put(item)
    answers: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()
    arguments = base.arguments()
    plan = autumn_settings.AUTO_ENABLE_PLAN_ID

    def worker() -> None:
        try:
            with AutumnClient(**arguments) as client:
                while not stop.is_set():
                    try:
                        owner, fields = todo.get_nowait()
                    except queue.Empty:
                        return
                    extra = {name: value for name, value in (
                        ("name", fields["name"]), ("email", fields["email"]),
                        ("auto_enable_plan_id", plan)) if value is not None}
                    try:
                        read = client.customers.get_or_create_read(fields["customer_id"], **extra)
                    except InvalidRequestError as exc:  # this owner's fields: skip it
                        answers.put(("skipped", owner, f"Autumn refused {fields['customer_id']!r}: {exc}"))
                        continue
                    answers.put(("created", owner, read))
        except BaseException as exc:  # handed to the calling thread, which raises it
            stop.set()
            answers.put(("failed", None, exc))
        finally:
            connections[using].close()  # none is opened here; a project's hook might

    threads = [threading.Thread(target=worker, name=f"autumn-adopt-{i}", daemon=True)
               for i in range(min(concurrency, total))]
    for thread in threads:
        thread.start()
    failure: BaseException | None = None
    finished = 0
    try:
        while finished < total and failure is None:
            try:
                batch = [answers.get(timeout=0.5)]
            except queue.Empty:
                if not any(thread.is_alive() for thread in threads):
                    break
                continue
            while len(batch) < STORE_BATCH and not answers.empty():
                batch.append(answers.get())
            failure = _store(batch, base.env, result, using)
            finished += sum(1 for outcome, _, _ in batch if outcome != "failed")
            if progress is not None:
                progress(AdoptionProgress(env=result.env, done=finished, total=total,
                                          created=result.created, skipped=result.skipped,
                                          elapsed=time.monotonic() - started))
    finally:
        stop.set()  # Ctrl-C, SIGTERM or a failure: the threads end after their call in flight
        for thread in threads:
            thread.join()
    # Answers that came while the others were stopping are stored too.
    rest = []
    while not answers.empty():
        rest.append(answers.get())
    late_failure = _store(rest, base.env, result, using)
    failure = failure or late_failure
    if failure is not None:
        raise failure


def _store(batch: list[tuple[str, Any, Any]], env: str, result: AdoptionResult,
           using: str) -> BaseException | None:
    """Store and link a batch of answers in one transaction; the first failure, if any."""
    failure = None
    with transaction.atomic(using=using):
        for outcome, owner, detail in batch:
            if outcome == "created":
                store_customer(detail.customer, env=env, owner=owner, using=using,
                               read_at=detail.read_at)
                result.created += 1
            elif outcome == "skipped":
                _skip(result, owner.pk, detail)
            else:
                failure = failure or detail
    return failure
