"""The app's settings, each read from ``django.conf.settings`` when it is used.

Nothing is read at import time, so ``override_settings`` and pytest-django's ``settings``
fixture work everywhere. ``autumn_settings.PAGE_SIZE`` reads ``settings.AUTUMN_SYNC_PAGE_SIZE``
or falls back to the default below. Every setting is documented in the README, and each
is validated by its rules in ``checks.RULES`` (``manage.py check --tag autumn``); a setting
added here needs a rule there.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULTS: dict[str, Any] = {
    # The secret key decides the environment (sandbox or live) by its prefix.
    "SECRET_KEY": None,
    # One key per environment, {"sandbox": "am_sk_test_...", "live": "am_sk_live_..."}, for
    # a project that mirrors both. AUTUMN_SECRET_KEY counts as well, for the env it names.
    "SECRET_KEYS": None,
    # The environment the project runs in: feature checks, me/, signups, the webhook
    # endpoint without an env in its URL, and syncs not told otherwise. None: "live" when a
    # live key is configured, else "sandbox".
    "ENV": None,
    "API_URL": "https://api.useautumn.com",
    # Autumn's web dashboard, for the admin's links to a customer's page there.
    "DASHBOARD_URL": "https://app.useautumn.com",
    # (connect, read) in seconds for every HTTP call.
    "TIMEOUT": (5.0, 30.0),
    # Retries on 429, 502/503/504 and dropped connections are bounded twice: in attempts
    # and in total seconds spent waiting, whichever runs out first.
    "MAX_RETRIES": 6,
    "RETRY_MAX_SECONDS": 120.0,
    # customers.list page size. Autumn rejects anything above the org's maximum (1000 by
    # default); a sync that is told so uses the maximum Autumn names.
    "SYNC_PAGE_SIZE": 1000,
    # A sync renews its lease after every page; a lease older than this is taken to
    # belong to a run that died, and the next run takes it over and resumes.
    "SYNC_LOCK_TIMEOUT": 300,
    # The Celery workflow's window tasks may wait this long in the broker's queue for a
    # worker: a workflow run with a window queued this recently, and not yet claimed, is
    # not taken for dead when its lease runs out. An hour is Redis's default visibility
    # timeout, after which a message a dead worker had reserved comes back.
    "SYNC_QUEUE_TIMEOUT": 3600,
    # Fetch, decode and parse pages in a child process while this one writes (about twice
    # as fast on two cores); False keeps all of a sync in one process.
    "SYNC_PREFETCH_PROCESS": True,
    # customers.list reads a replica that can lag behind customers.get. A list row that
    # disagrees with a customers.get answer the mirror stored less than this many seconds
    # before its page was requested is not written: the sync reads that customer again
    # with customers.get. 0 trusts the list whenever it was read later.
    "SYNC_REPLICA_LAG_SECONDS": 60,
    # PostgreSQL: how many connections a full sync writes pages on at once. Pages still
    # commit one by one, in order; with 2 the server checks one page's foreign keys while
    # it copies the next page's rows. 1 writes one page at a time. SQLite always uses 1.
    "SYNC_DB_CONNECTIONS": 2,
    # How many created_at windows a full sync crawls at once (customers.list takes
    # created_at_range): each has a page in flight, so a distant Autumn's latency overlaps.
    # 1 crawls with a single cursor. All windows share one rate budget.
    "SYNC_WINDOWS": 8,
    # The mirror may be stale when the last complete sync of the key's env finished longer
    # ago than this: the system check autumn_django.W004 and a banner on the admin's
    # customer list say so. 25 hours leaves a daily sync an hour to run.
    "SYNC_STALE_AFTER_SECONDS": 25 * 3600,
    # How the app's own background work runs (signup, profile updates, admin refreshes,
    # webhook refreshes): "celery" queues tasks, "inline" runs them in-process after the
    # transaction commits (projects without a worker), "off" stops the app from calling
    # Autumn on its own (signup and profile signals do nothing; explicit staff actions and
    # webhooks then run inline).
    "TASK_MODE": "celery",
    # The model whose instances are Autumn customers ("app_label.Model"); None: the user
    # model. Read at import time by the models, as AUTH_USER_MODEL is: see owner_model_label.
    "CUSTOMER_OWNER_MODEL": None,
    # Dotted path to a callable(request) -> owner or None: whose customer a request's
    # feature checks and the API's me/ answer for. The default gives the signed-in user
    # when the owner model is the user model, and None otherwise.
    "OWNER_FROM_REQUEST": "autumn_django.owners.default_owner_from_request",
    # Dotted path to a callable(owner) -> {"customer_id", "name", "email"}.
    "CUSTOMER_FIELDS": "autumn_django.owners.default_customer_fields",
    # A plan Autumn enables for every customer created at signup (e.g. "free").
    "AUTO_ENABLE_PLAN_ID": None,
    # Opt-in: a change of an owner's mapped name or email calls customers.update.
    "UPDATE_ON_PROFILE_CHANGE": False,
    # The signing secret of the webhook endpoint in Autumn's dashboard ("whsec_..."). Unset,
    # the webhook view accepts nothing: an unsigned request could be anyone.
    "WEBHOOK_SECRET": None,
    # One signing secret per environment's endpoint, {"sandbox": "whsec_...", "live": ...}:
    # Autumn sends each env's events from its own Svix app. AUTUMN_WEBHOOK_SECRET is
    # AUTUMN_ENV's.
    "WEBHOOK_SECRETS": None,
    # How far a webhook's signed timestamp may be from now, either way, in seconds. Older
    # deliveries are refused so that a captured request cannot be replayed later.
    "WEBHOOK_TOLERANCE_SECONDS": 300,
}

TASK_MODES = ("celery", "inline", "off")

SECRETS_FROM_ENVIRONMENT = ("SECRET_KEY", "WEBHOOK_SECRET")

ENV_BY_KEY_PREFIX = {"am_sk_test_": "sandbox", "am_sk_live_": "live"}
ENVS = ("sandbox", "live")


class AutumnSettings:
    """Attribute access to ``AUTUMN_*`` settings with defaults, read on each access."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Invalid autumn_django setting: {name!r}")
        value = getattr(settings, f"AUTUMN_{name}", DEFAULTS[name])
        if name in SECRETS_FROM_ENVIRONMENT and not value:
            # Secrets may stay out of the settings file, in the environment.
            value = os.environ.get(f"AUTUMN_{name}") or None
        return value


autumn_settings = AutumnSettings()


def owner_model_label() -> str:
    """The model whose instances are Autumn customers, as "app_label.Model":
    ``AUTUMN_CUSTOMER_OWNER_MODEL``, by default ``AUTH_USER_MODEL``.

    The one place the setting is read. Like ``AUTH_USER_MODEL`` it shapes the schema (the
    target of ``Customer.owner`` and of its migration), so it is read when the models are
    loaded, and must be set before ``autumn_django``'s migration 0014 first runs."""
    label = getattr(settings, "AUTUMN_CUSTOMER_OWNER_MODEL", None)
    return label if isinstance(label, str) and label else settings.AUTH_USER_MODEL


def get_owner_model() -> Any:
    """The owner model class (as ``get_user_model()`` is the user model's), the one
    ``Customer.owner`` points at."""
    from django.apps import apps

    label = owner_model_label()
    try:
        return apps.get_model(label, require_ready=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"AUTUMN_CUSTOMER_OWNER_MODEL must be of the form 'app_label.Model', not {label!r}."
        ) from None
    except LookupError:
        raise ImproperlyConfigured(
            f"AUTUMN_CUSTOMER_OWNER_MODEL refers to model {label!r}, which is not installed."
        ) from None


def env_for_key(secret_key: str) -> str:
    """The Autumn environment a secret key belongs to; it is decided by the prefix alone."""
    for prefix, env in ENV_BY_KEY_PREFIX.items():
        if secret_key.startswith(prefix):
            return env
    raise ImproperlyConfigured(
        "AUTUMN_SECRET_KEY must start with 'am_sk_test_' (sandbox) or 'am_sk_live_' (live)."
    )


def mask_key(secret_key: str | None) -> str:
    """What may be shown of a key: its environment prefix, never any of the secret part."""
    if not secret_key:
        return "<no key>"
    for prefix in ENV_BY_KEY_PREFIX:
        if secret_key.startswith(prefix):
            return prefix + "***"
    return "***"


def _per_env(value: Any) -> dict[str, Any]:
    """The entries of a per-environment setting that name a known env (the checks report
    the rest)."""
    if not isinstance(value, dict):
        return {}
    return {env: value[env] for env in ENVS if value.get(env)}


def secret_keys() -> dict[str, str]:
    """The configured secret key of each environment, in ``ENVS`` order: the entries of
    ``AUTUMN_SECRET_KEYS``, and ``AUTUMN_SECRET_KEY`` (settings or environment variable) for
    the env its prefix names unless ``AUTUMN_SECRET_KEYS`` gives that env a key of its own
    (two different keys for one env: the check autumn_django.E023 says so)."""
    keys = {env: key for env, key in _per_env(autumn_settings.SECRET_KEYS).items() if isinstance(key, str)}
    single = autumn_settings.SECRET_KEY
    if isinstance(single, str):
        for prefix, env in ENV_BY_KEY_PREFIX.items():
            if single.startswith(prefix):
                keys.setdefault(env, single)
    return {env: keys[env] for env in ENVS if env in keys}


def configured_envs() -> tuple[str, ...]:
    """The environments that have a secret key, sandbox first."""
    return tuple(secret_keys())


def secret_key_for(env: str) -> str | None:
    """The secret key of ``env`` ("sandbox" or "live"), or None when it has none."""
    return secret_keys().get(env)


def project_env() -> str:
    """``AUTUMN_ENV``: the environment the project runs in; unset, "live" when a live key
    is configured, else "sandbox". Raises ImproperlyConfigured for another value."""
    env = autumn_settings.ENV
    if env is None:
        return "live" if "live" in secret_keys() else "sandbox"
    if env not in ENVS:
        raise ImproperlyConfigured(f"AUTUMN_ENV must be 'sandbox' or 'live', not {env!r}.")
    return env


def webhook_secret_for(env: str) -> str | None:
    """The signing secret of ``env``'s webhook endpoint: ``AUTUMN_WEBHOOK_SECRETS[env]``, or
    ``AUTUMN_WEBHOOK_SECRET`` (settings or environment variable) when ``env`` is
    ``AUTUMN_ENV``."""
    secret = _per_env(autumn_settings.WEBHOOK_SECRETS).get(env)
    if secret:
        return secret
    try:
        main = project_env()
    except ImproperlyConfigured:
        return None
    return autumn_settings.WEBHOOK_SECRET if env == main else None
