"""System checks (``manage.py check``), namespaced ``autumn_django.<level><number>``."""

from __future__ import annotations

from urllib.parse import urlparse

from django.core.checks import Error, Tags, Warning, register

from .conf import ENV_BY_KEY_PREFIX, autumn_settings
from .webhooks.signature import SECRET_PREFIX, SecretError, secret_bytes


@register(Tags.compatibility)
def check_secret_key(app_configs=None, **kwargs) -> list:
    key = autumn_settings.SECRET_KEY
    if not key:
        return [Error(
            "No Autumn secret key is configured.",
            hint="Set AUTUMN_SECRET_KEY in your settings or in the environment "
                 "(an API key from the Autumn dashboard).",
            id="autumn_django.E001",
        )]
    if not isinstance(key, str) or not key.startswith(tuple(ENV_BY_KEY_PREFIX)):
        return [Error(
            "AUTUMN_SECRET_KEY is not an Autumn secret key.",
            hint="Secret keys start with 'am_sk_test_' (sandbox) or 'am_sk_live_' (live). "
                 "A publishable key or a key of another service will not work.",
            id="autumn_django.E002",
        )]
    if key.strip() != key or any(ch.isspace() for ch in key):
        return [Error(
            "AUTUMN_SECRET_KEY contains white space.",
            hint="Copy the key again without surrounding spaces or line breaks.",
            id="autumn_django.E003",
        )]
    return []


@register(Tags.compatibility)
def check_api_url(app_configs=None, **kwargs) -> list:
    url = autumn_settings.API_URL
    parsed = urlparse(url if isinstance(url, str) else "")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return [Error(
            f"AUTUMN_API_URL {url!r} is not an http(s) URL.",
            hint="Leave it unset for https://api.useautumn.com.",
            id="autumn_django.E004",
        )]
    if parsed.scheme != "https" and parsed.hostname not in ("localhost", "127.0.0.1", "::1"):
        return [Warning(
            f"AUTUMN_API_URL {url!r} does not use https: the secret key would cross the "
            "network in clear text.",
            hint="Use an https:// URL; plain http is only fine for a local stand-in.",
            id="autumn_django.W001",
        )]
    return []


@register(Tags.compatibility)
def check_sync_settings(app_configs=None, **kwargs) -> list:
    errors = []
    page_size = autumn_settings.SYNC_PAGE_SIZE
    if not isinstance(page_size, int) or isinstance(page_size, bool) or not 1 <= page_size <= 5000:
        errors.append(Error(
            f"AUTUMN_SYNC_PAGE_SIZE must be a whole number from 1 to 5000, not {page_size!r}.",
            hint="The default, 1000, is Autumn's usual per-org maximum.",
            id="autumn_django.E005",
        ))
    lanes = autumn_settings.SYNC_DB_CONNECTIONS
    if not isinstance(lanes, int) or isinstance(lanes, bool) or not 1 <= lanes <= 8:
        errors.append(Error(
            f"AUTUMN_SYNC_DB_CONNECTIONS must be a whole number from 1 to 8, not {lanes!r}.",
            hint="2 (the default) overlaps one page's commit with the next page's writes on "
                 "PostgreSQL; 1 writes one page at a time, on one connection.",
            id="autumn_django.E008",
        ))
    timeout = autumn_settings.SYNC_LOCK_TIMEOUT
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout < 30:
        errors.append(Error(
            f"AUTUMN_SYNC_LOCK_TIMEOUT must be a number of seconds of at least 30, not {timeout!r}.",
            hint="It must exceed the longest a single page can take, retries included.",
            id="autumn_django.E006",
        ))
    else:
        # A page (with its retries) must fit in the lease, or a slow but live run would
        # be taken for dead and overtaken.
        read_timeout = _read_timeout(autumn_settings.TIMEOUT)
        page_budget = autumn_settings.RETRY_MAX_SECONDS + read_timeout
        if timeout <= page_budget:
            errors.append(Warning(
                f"AUTUMN_SYNC_LOCK_TIMEOUT ({timeout} s) is not longer than one page may take with "
                f"retries (AUTUMN_RETRY_MAX_SECONDS + read timeout = {page_budget:g} s).",
                hint="Raise AUTUMN_SYNC_LOCK_TIMEOUT or lower AUTUMN_RETRY_MAX_SECONDS.",
                id="autumn_django.W002",
            ))
    return errors


def _read_timeout(timeout) -> float:
    if isinstance(timeout, (tuple, list)):
        return float(timeout[-1])
    return float(timeout)


@register(Tags.compatibility)
def check_webhook_secret(app_configs=None, **kwargs) -> list:
    secret = autumn_settings.WEBHOOK_SECRET
    if not secret:
        return []  # webhooks are optional; the view refuses every delivery until it is set
    if isinstance(secret, str) and secret.startswith(SECRET_PREFIX):
        try:
            secret_bytes(secret)
            return []
        except SecretError:
            pass
    return [Error(
        "AUTUMN_WEBHOOK_SECRET is not a webhook signing secret: every webhook would be refused.",
        hint="Copy the endpoint's signing secret from Autumn's webhook settings: 'whsec_' "
             "followed by base64, without spaces or line breaks.",
        id="autumn_django.E007",
    )]
