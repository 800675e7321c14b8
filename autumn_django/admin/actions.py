"""Staff-triggered syncs: "Refresh from Autumn" for chosen customers and "Sync now".

Both go through ``dispatch(..., explicit=True)``, which honours ``AUTUMN_TASK_MODE``: with
Celery the work is queued and the request returns at once (a full sync never runs inside a
request then); in "inline" mode (and "off", where staff requests still run) it runs now.
The functions return what to tell the person who asked, as ``(level, text)`` messages
for ``ModelAdmin.message_user``: every outcome, failures included.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from django.contrib.messages import ERROR, SUCCESS, WARNING
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from ..conf import autumn_settings, configured_envs, env_for_key, project_env, secret_key_for
from ..dispatch import dispatch, task_mode
from ..exceptions import AutumnConfigurationError
from ..models import SyncRun
from ..tasks import sync_all_customers_task, sync_customer_task

SYNC_PERMISSION = "autumn_django.sync_customers"
# One refresh is one customers.get call (inline) or one task message (Celery); past this,
# a full sync is the cheaper way to refresh them.
MAX_REFRESH = 100

Message = tuple[int, str]


def has_sync_permission(request: HttpRequest) -> bool:
    return request.user.has_perm(SYNC_PERMISSION)


def configured_env() -> str:
    """``AUTUMN_ENV``, the env "Sync now" syncs, when its key is configured."""
    if not configured_envs():
        key = autumn_settings.SECRET_KEY
        if not key:
            raise ImproperlyConfigured(_("No Autumn secret key is configured (AUTUMN_SECRET_KEY)."))
        return env_for_key(key)  # not an Autumn key: says so
    env = project_env()
    if secret_key_for(env) is None:
        raise ImproperlyConfigured(_("No Autumn secret key is configured for AUTUMN_ENV (%(env)s).")
                                   % {"env": env})
    return env


def refresh_customers(customers: Iterable[tuple[str | None, str]]) -> list[Message]:
    """Refresh ``(autumn_id, env)`` customers through ``customers.get``; say how it went.

    Customers without an id cannot be looked up (customers.get takes an id), and customers
    of an env without a configured key cannot be reached: both are skipped, and said so.
    Each other customer is refreshed with its own env's key.
    """
    customers = list(customers)
    if len(customers) > MAX_REFRESH:
        return [(ERROR, _(
            "Select at most %(max)d customers to refresh; to refresh them all, use Sync now."
        ) % {"max": MAX_REFRESH})]
    try:
        env = configured_env()
        mode = task_mode()
    except (ImproperlyConfigured, AutumnConfigurationError) as exc:
        return [(ERROR, str(exc))]
    envs = configured_envs() or (env,)
    ids = [(autumn_id, row_env) for autumn_id, row_env in customers if autumn_id and row_env in envs]
    idless = sum(1 for autumn_id, _env in customers if not autumn_id)
    elsewhere = len(customers) - len(ids) - idless
    env = " and ".join(envs)
    outcomes: Counter[str] = Counter()
    for done, (autumn_id, row_env) in enumerate(ids):
        outcome = dispatch(sync_customer_task, autumn_id, row_env, explicit=True)
        outcomes[outcome] += 1
        if outcome == "failed" and mode == "celery":
            # A broker that refused one message refuses the next, each after seconds of
            # connection attempts: do not keep the person waiting for the same answer.
            outcomes["failed"] += len(ids) - done - 1
            break

    report: list[Message] = []
    if outcomes["ran"]:
        report.append((SUCCESS, ngettext(
            "Refreshed %(count)d customer from Autumn.",
            "Refreshed %(count)d customers from Autumn.", outcomes["ran"]) % {"count": outcomes["ran"]}))
    if outcomes["queued"]:
        report.append((SUCCESS, ngettext(
            "Queued the refresh of %(count)d customer; a Celery worker will run it.",
            "Queued the refresh of %(count)d customers; a Celery worker will run them.",
            outcomes["queued"]) % {"count": outcomes["queued"]}))
    if outcomes["failed"]:
        if mode == "celery":
            text = ngettext(
                "Could not queue the refresh of %(count)d customer: the Celery broker did not "
                "take it (see the log). The next full sync will catch up.",
                "Could not queue the refresh of %(count)d customers: the Celery broker did not "
                "take them (see the log). The next full sync will catch up.", outcomes["failed"])
        else:
            text = ngettext(
                "The refresh of %(count)d customer failed: Autumn could not be asked (see the log).",
                "The refresh of %(count)d customers failed: Autumn could not be asked (see the log).",
                outcomes["failed"])
        report.append((ERROR, text % {"count": outcomes["failed"]}))
    if idless:
        report.append((WARNING, ngettext(
            "Skipped %(count)d customer without an Autumn id: Autumn looks customers up by id "
            "only. The next full sync refreshes it.",
            "Skipped %(count)d customers without an Autumn id: Autumn looks customers up by id "
            "only. The next full sync refreshes them.", idless) % {"count": idless}))
    if elsewhere:
        report.append((WARNING, ngettext(
            "Skipped %(count)d customer of another environment: the secret key is for %(env)s.",
            "Skipped %(count)d customers of another environment: the secret key is for %(env)s.",
            elsewhere) % {"count": elsewhere, "env": env}))
    return report


def sync_all() -> Message:
    """Start a full sync of the key's env; say how it went."""
    try:
        env = configured_env()
        mode = task_mode()
    except (ImproperlyConfigured, AutumnConfigurationError) as exc:
        return ERROR, str(exc)
    asked_at = timezone.now()
    outcome = dispatch(sync_all_customers_task, explicit=True)
    if outcome == "queued":
        return SUCCESS, _("Queued a full sync; a Celery worker will run it.")
    if outcome == "failed" and mode == "celery":
        return ERROR, _("Could not queue the full sync: the Celery broker did not take it "
                        "(see the log). Nothing ran.")
    # It ran here. The task's result does not come back through dispatch, but its run
    # record does: the newest run of the env is this one (or one it took over), unless
    # another sync was running and this one stepped aside.
    run = SyncRun.objects.filter(env=env).order_by("-pk").first()
    if outcome == "failed":
        ours = run is not None and run.finished_at is not None and run.finished_at >= asked_at
        failure = run.failure if ours and run.status == SyncRun.Status.FAILED else ""
        return ERROR, _("The full sync failed: %(failure)s") % {
            "failure": failure or _("Autumn could not be asked (see the log).")}
    if run is None or run.status == SyncRun.Status.RUNNING:
        return WARNING, _("Another sync of the %(env)s customers is running, so this one did not "
                          "start.") % {"env": env}
    return SUCCESS, _(
        "Synced the %(env)s customers: %(created)d created, %(updated)d updated, %(unchanged)d "
        "unchanged, %(deleted)d deleted, %(skipped)d skipped."
    ) % {"env": env, "created": run.created, "updated": run.updated, "unchanged": run.unchanged,
         "deleted": run.deleted, "skipped": run.skipped}
