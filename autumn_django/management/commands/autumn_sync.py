"""``manage.py autumn_sync``: bring the mirror in step with Autumn."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.management.base import BaseCommand, CommandError

from ...adoption import DEFAULT_CONCURRENCY, AdoptionResult, create_missing_customers
from ...client import AutumnClient
from ...conf import ENVS, autumn_settings, configured_envs, mask_key, project_env, secret_key_for
from ...exceptions import (
    AuthenticationError,
    AutumnConfigurationError,
    AutumnConnectionError,
    AutumnError,
    RateLimitError,
    StopRequested,
    SyncAlreadyRunning,
)
from ...models import Customer
from ...sync import sync_all_customers, sync_customer
from ..progress import AdoptionReporter, ProgressReporter

# Exit statuses besides 0; 2 is argparse's for bad usage; 128 + the signal when stopped.
EXIT_FAILED = 1
EXIT_ALREADY_RUNNING = 3
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM


class Command(BaseCommand):
    help = (
        "Bring the Autumn mirror in step with Autumn: every customer of one environment "
        "(--env; default AUTUMN_ENV), of each configured one (--env all), or one customer "
        "with --customer. An interrupted run is resumed. --create-missing: give every owner "
        "without a customer in the environment one (customers.get_or_create) and link it."
    )
    # The command checks its own configuration and fails with one actionable line (the
    # same problems the autumn_django.* system checks report under `manage.py check`).
    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--customer", metavar="ID",
                            help="Refresh only this customer (through customers.get).")
        parser.add_argument("--page-size", type=int, metavar="N",
                            help="Customers per customers.list page (default "
                                 "AUTUMN_SYNC_PAGE_SIZE; lowered to the org maximum if needed).")
        parser.add_argument("--restart", action="store_true",
                            help="Start a fresh pass instead of resuming an unfinished run.")
        parser.add_argument("--env", choices=[*ENVS, "all"],
                            help="The environment to sync, with its key (default AUTUMN_ENV); "
                                 "'all': each configured environment in turn, each with its own lock.")
        parser.add_argument("--create-missing", action="store_true",
                            help="Instead of a sync: link owners (AUTUMN_CUSTOMER_OWNER_MODEL) to "
                                 "the customer their mapped id names, and create one through "
                                 "customers.get_or_create for every other owner without one. "
                                 "An interrupted run is resumed.")
        parser.add_argument("--dry-run", action="store_true",
                            help="With --create-missing: say how many would be created and "
                                 "linked, and change nothing.")
        parser.add_argument("--concurrency", type=int, metavar="N",
                            help="With --create-missing: calls to Autumn at a time "
                                 f"(default {DEFAULT_CONCURRENCY}).")

    def handle(self, *args, customer: str | None = None, page_size: int | None = None,
               restart: bool = False, env: str | None = None, create_missing: bool = False,
               dry_run: bool = False, concurrency: int | None = None, **options) -> None:
        self.verbosity = options["verbosity"]
        if create_missing and (customer or restart or page_size is not None):
            raise CommandError("--create-missing takes no --customer, --restart or --page-size.",
                               returncode=2)
        if (dry_run or concurrency is not None) and not create_missing:
            raise CommandError("--dry-run and --concurrency go with --create-missing.", returncode=2)
        concurrency = DEFAULT_CONCURRENCY if concurrency is None else concurrency
        if not 1 <= concurrency <= 32:
            raise CommandError("--concurrency must be between 1 and 32.", returncode=2)
        self.adoption = (dry_run, concurrency) if create_missing else None
        if page_size is not None and not 1 <= page_size <= 5000:
            raise CommandError("--page-size must be between 1 and 5000.", returncode=2)
        envs: list[str | None] = [env] if env != "all" else list(configured_envs())
        if not envs:
            raise CommandError("--env all: no environment has a secret key (AUTUMN_SECRET_KEYS, "
                               "AUTUMN_SECRET_KEY).", returncode=EXIT_FAILED)
        failure: CommandError | None = None
        for one in envs:
            try:
                self._sync_env(one, customer, page_size, restart)
            except CommandError as exc:
                if len(envs) == 1 or exc.returncode not in (EXIT_FAILED, EXIT_ALREADY_RUNNING):
                    raise  # one env, or stopped (Ctrl-C, SIGTERM): nothing more runs
                # --env all: say it, go on with the next env, fail at the end.
                self.stderr.write(f"{one}: {exc}")
                failure = failure or exc
        if failure is not None:
            raise failure

    def _sync_env(self, env: str | None, customer: str | None, page_size: int | None,
                  restart: bool) -> None:
        try:
            client = AutumnClient(env=env)
            with client, _stop_on_sigterm():
                if self.adoption is not None:
                    self._create_missing(client, *self.adoption)
                elif customer:
                    self._sync_one(client, customer)
                else:
                    self._sync_all(client, page_size, restart)
        except SyncAlreadyRunning as exc:
            raise CommandError(exc.message, returncode=EXIT_ALREADY_RUNNING) from None
        except AutumnError as exc:
            raise CommandError(_explain(exc, env), returncode=EXIT_FAILED) from None
        except KeyboardInterrupt as exc:
            by, code = ((exc.signal_name, EXIT_TERMINATED) if isinstance(exc, StopRequested)
                        else ("Ctrl-C", EXIT_INTERRUPTED))
            if self.adoption is not None:
                raise CommandError(
                    f"Stopped by {by}. Owners done so far are linked; the next autumn_sync "
                    "--create-missing does the rest.", returncode=code) from None
            raise CommandError(
                f"Stopped by {by}. Nothing of the page in flight was kept; the next autumn_sync "
                "resumes from the last saved page.", returncode=code) from None

    def _create_missing(self, client: AutumnClient, dry_run: bool, concurrency: int) -> None:
        reporter = None
        if self.verbosity > 0 and not dry_run:
            reporter = AdoptionReporter(self.stderr, is_tty=self.stderr.isatty())
        try:
            result = create_missing_customers(client.env, dry_run=dry_run, concurrency=concurrency,
                                              progress=reporter, client=client)
        finally:
            if reporter:
                reporter.close()
        self.stdout.write(self.style.SUCCESS(adoption_summary(result)))
        if self.verbosity > 0:
            for problem in result.errors:
                self.stdout.write(self.style.WARNING(
                    f"  skipped owner {problem['owner']}: {problem['error']}"))

    def _sync_one(self, client: AutumnClient, customer_id: str) -> None:
        row = sync_customer(customer_id, client=client)
        if row is None:
            self.stdout.write(self.style.WARNING(
                f"Customer {customer_id!r} is not in Autumn ({client.env}); "
                "its mirror row, if any, is marked deleted."))
        else:
            self.stdout.write(self.style.SUCCESS(
                f"Refreshed customer {customer_id!r} ({client.env}): "
                f"{row.subscriptions.count()} subscriptions, {row.balances.count()} balances."))

    def _sync_all(self, client: AutumnClient, page_size: int | None, restart: bool) -> None:
        verbosity = self.verbosity
        reporter = None
        if verbosity > 0:
            expected = Customer.objects.filter(env=client.env).present().count()
            reporter = ProgressReporter(self.stderr, is_tty=self.stderr.isatty(),
                                        expected_total=expected)
        started = time.monotonic()
        try:
            run = sync_all_customers(client=client, page_size=page_size, restart=restart,
                                     progress=reporter)
        finally:
            if reporter:
                reporter.close()
        seconds = time.monotonic() - started
        seen = run.created + run.updated + run.unchanged + run.skipped
        resumed = f" (resumed run #{run.pk}, attempt {run.attempts})" if run.attempts > 1 else ""
        self.stdout.write(self.style.SUCCESS(
            f"Synced {seen:,} {client.env} customers in {_pages(run.pages)}, {seconds:.1f} s{resumed}: "
            f"created {run.created:,}, updated {run.updated:,}, unchanged {run.unchanged:,}, "
            f"deleted {run.deleted:,}, skipped {run.skipped:,}. Read again through customers.get: "
            f"{run.reread:,}."))
        entities = run.entities_created + run.entities_updated + run.entities_unchanged + run.entities_skipped
        self.stdout.write(self.style.SUCCESS(
            f"Synced {entities:,} {client.env} entities in {_pages(run.entity_pages)}: created "
            f"{run.entities_created:,}, updated {run.entities_updated:,}, unchanged "
            f"{run.entities_unchanged:,}, deleted {run.entities_deleted:,}, "
            f"skipped {run.entities_skipped:,}."))
        for problem in run.errors:
            if verbosity > 0:
                self.stdout.write(self.style.WARNING("  " + _problem_line(problem)))


def _pages(count: int) -> str:
    return f"{count:,} page{'' if count == 1 else 's'}"


def _problem_line(problem: dict) -> str:
    if "error" not in problem:
        return f"warning: {problem['warning']}"
    who = problem.get("customer") or problem.get("entity")
    return f"skipped {who}: {problem['error']}"


def adoption_summary(result: AdoptionResult) -> str:
    """The line ``--create-missing`` ends with."""
    if result.dry_run:
        return (f"Dry run ({result.env}): would create {result.created:,} customers for owners "
                f"and link {result.linked:,} existing, skip {result.skipped:,}. Nothing was changed.")
    return (f"Created {result.created:,} {result.env} customers for owners, linked "
            f"{result.linked:,} existing, skipped {result.skipped:,}, in {result.seconds:.1f} s.")


@contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM (``docker stop``, Kubernetes, systemd) into ``StopRequested`` while the
    command runs, so a stopped sync lets its lock go at once, as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread (call_command elsewhere)
        return

    def stop(signum, frame):
        # A second SIGTERM must not interrupt the clean-up the first one started.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise StopRequested("SIGTERM")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _explain(exc: AutumnError, env: str | None = None) -> str:
    """One line that says what went wrong and what to do about it."""
    resume = " The next run resumes where this one stopped."
    if isinstance(exc, AuthenticationError):
        try:
            env = env or project_env()
        except Exception:
            env = None
        secret_key = secret_key_for(env) if env else None
        key = mask_key(secret_key or autumn_settings.SECRET_KEY)
        if exc.status == 403:
            return (f"Autumn refused the secret key {key}: it lacks a scope ({exc.message}). "
                    "Use a key with customers:read and customers:write.")
        where = ("AUTUMN_SECRET_KEY" if secret_key in (None, autumn_settings.SECRET_KEY)
                 else f"AUTUMN_SECRET_KEYS[{env!r}]")
        return f"Autumn rejected the secret key {key} ({exc.code}). Check {where}."
    if isinstance(exc, AutumnConnectionError):
        return f"{exc.message}. Check AUTUMN_API_URL and the network.{resume}"
    if isinstance(exc, RateLimitError):
        return f"Autumn kept rate limiting the sync ({exc.message}). Try again later.{resume}"
    if isinstance(exc, AutumnConfigurationError):
        return exc.message
    text = str(exc)
    return f"{text}{'' if text.endswith('.') else '.'}{resume}"
