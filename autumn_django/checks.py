"""System checks (``manage.py check --tag autumn``), namespaced ``autumn_django.<level><number>``.

Every setting's validation is declared once, in ``RULES``. The rules of one setting run in
order and stop at its first problem; a rule that reads several settings (W002) runs only
when none of them has a problem. No rule raises, whatever a value's type: a value that makes
one fail is reported under that rule's id. The user receivers run the same rules at run time
(``setting_problems``) to say what to fix instead of failing a save.

One check reads the database, ``check_sync_freshness`` (W004: the last complete sync is
older than ``AUTUMN_SYNC_STALE_AFTER_SECONDS``), and only the databases Django passes it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.utils.module_loading import import_string
from django.utils.timesince import timesince

from .conf import DEFAULTS, ENV_BY_KEY_PREFIX, ENVS, TASK_MODES, autumn_settings, project_env, secret_keys
from .owners import CUSTOMER_ID_PATTERN
from .webhooks.signature import SECRET_PREFIX, SecretError, secret_bytes

TAG = "autumn"
KNOWN_SETTINGS = tuple(f"AUTUMN_{name}" for name in DEFAULTS)
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")

# What is wrong with the values of a rule's settings, as the end of a sentence that starts
# with the first setting's name; None when nothing is.
Problem = Callable[..., "str | None"]


@dataclass(frozen=True)
class Rule:
    setting: str  # without "AUTUMN_"; the message starts with it
    id: str  # "E005": autumn_django.E005
    problem: Problem  # called with the values of setting and needs, in that order
    hint: str
    level: type[CheckMessage] = Error
    needs: tuple[str, ...] = ()  # further settings the rule reads


def _short(text: str) -> str:
    return text if len(text) <= 80 else f"{text[:77]}..."


def _shown(value: Any) -> str:
    """A short repr of a value of any type, even one whose repr fails."""
    try:
        return _short(repr(value))
    except Exception:
        return f"<{type(value).__name__} object>"


def _must_be(wanted: str, valid: Callable[[Any], bool]) -> Problem:
    def problem(value: Any) -> str | None:
        return None if valid(value) else f"must be {wanted}, not {_shown(value)}"
    return problem


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seconds(value: Any) -> bool:
    """An int or float (a bool is neither, here) that is finite as a float, as time needs."""
    if not (_whole(value) or isinstance(value, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _timeout(value: Any) -> bool:
    pair = isinstance(value, (tuple, list)) and len(value) == 2
    return all(_seconds(part) and part > 0 for part in (value if pair else [value]))


def _autumn_id(value: Any) -> bool:
    return isinstance(value, str) and CUSTOMER_ID_PATTERN.fullmatch(value) is not None


def _not_http_url(url: Any) -> str | None:
    try:
        parsed = urlparse(url) if isinstance(url, str) else None
    except ValueError:  # "http://[::1" and the like
        parsed = None
    if parsed is not None and parsed.scheme in ("http", "https") and parsed.netloc:
        return None
    return f"{_shown(url)} is not an http(s) URL"


def _clear_text(url: str) -> str | None:
    parsed = urlparse(url)
    if parsed.scheme == "https" or parsed.hostname in LOCAL_HOSTS:
        return None
    return f"{_shown(url)} does not use https: the secret key would cross the network in clear text"


def _no_key(key: Any, keys: Any) -> str | None:
    if key or (isinstance(keys, dict) and keys):
        return None  # AUTUMN_SECRET_KEYS alone will do: its own rules check it
    return "is not set, in the settings or in the environment"


def _not_a_key(key: Any) -> str | None:
    if key is None or (isinstance(key, str) and key.startswith(tuple(ENV_BY_KEY_PREFIX))):
        return None  # None: AUTUMN_SECRET_KEYS gives the keys (E001 when neither does)
    return "is not an Autumn secret key"  # never the value: it may be a real secret


def _white_space(key: Any) -> str | None:
    return "contains white space" if isinstance(key, str) and any(ch.isspace() for ch in key) else None


def _not_per_env(value: Any) -> str | None:
    """A per-environment setting: None, or a dict whose keys are "sandbox" and "live"."""
    if value is None:
        return None
    if not isinstance(value, dict):
        return f"must be a dict of 'sandbox' and/or 'live' to values, not {_shown(value)}"
    unknown = [name for name in value if name not in ENVS]
    if not unknown:
        return None
    name = unknown[0]
    close = (difflib.get_close_matches(name.strip().lower(), ENVS, n=1, cutoff=0.5)
             if isinstance(name, str) else [])
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"names an unknown environment {_shown(name)}{hint}: Autumn's are 'sandbox' and 'live'"


def _key_of_another_env(keys: Any) -> str | None:
    """Each key of AUTUMN_SECRET_KEYS is an Autumn secret key of the env it is given for."""
    for env, key in (keys or {}).items():
        if not isinstance(key, str) or not key.startswith(tuple(ENV_BY_KEY_PREFIX)):
            return f"[{env!r}] is not an Autumn secret key"  # never the value
        if any(ch.isspace() for ch in key):
            return f"[{env!r}] contains white space"
        key_env = next(e for prefix, e in ENV_BY_KEY_PREFIX.items() if key.startswith(prefix))
        if key_env != env:
            return f"[{env!r}] is a {key_env} key: its prefix decides its environment"
    return None


def _two_keys_for_one_env(keys: Any, key: Any) -> str | None:
    """AUTUMN_SECRET_KEY counts for the env its prefix names: it must not differ from that
    env's entry in AUTUMN_SECRET_KEYS."""
    if not keys or not isinstance(key, str):
        return None
    for prefix, env in ENV_BY_KEY_PREFIX.items():
        if key.startswith(prefix) and keys.get(env) and keys[env] != key:
            return (f"[{env!r}] and AUTUMN_SECRET_KEY (settings or environment) are two different "
                    f"{env} keys")
    return None


def _not_an_env(env: Any) -> str | None:
    if env is None or env in ENVS:
        return None
    close = (difflib.get_close_matches(env.strip().lower(), ENVS, n=1, cutoff=0.5)
             if isinstance(env, str) else [])
    problem = f"must be 'sandbox' or 'live', not {_shown(env)}"
    return f"{problem} (did you mean {close[0]!r}?)" if close else problem


def _env_without_key(env: Any, keys: Any, key: Any) -> str | None:
    """AUTUMN_ENV (or its default) has a key. Read through conf, as the app reads them."""
    main = project_env()
    if main in secret_keys():
        return None
    return (f"is {main!r}{'' if env else ' (its default)'} but no {main} secret key is configured "
            "(AUTUMN_SECRET_KEYS, AUTUMN_SECRET_KEY)")


def _not_signing_secrets(secrets: Any) -> str | None:
    for env, secret in (secrets or {}).items():
        if _not_a_signing_secret(secret):
            return f"[{env!r}] is not a webhook signing secret: every {env} webhook would be refused"
    return None


def _not_a_signing_secret(secret: Any) -> str | None:
    if not secret:
        return None  # webhooks are optional; the view refuses every delivery until it is set
    if isinstance(secret, str) and secret.startswith(SECRET_PREFIX):
        try:
            secret_bytes(secret)
            return None
        except SecretError:
            pass
    return "is not a webhook signing secret: every webhook would be refused"


def _not_a_task_mode(mode: Any) -> str | None:
    if isinstance(mode, str) and mode in TASK_MODES:
        return None
    problem = f"must be one of {', '.join(map(repr, TASK_MODES))}, not {_shown(mode)}"
    close = difflib.get_close_matches(mode.strip().lower(), TASK_MODES, n=1) if isinstance(mode, str) else []
    return f"{problem} (did you mean {close[0]!r}?)" if close else problem


def _not_an_installed_model(label: Any) -> str | None:
    if label is None:
        return None  # the user model
    if not isinstance(label, str) or label.count(".") != 1 or not all(label.split(".")):
        return f"must be 'app_label.Model', not {_shown(label)}"
    from django.apps import apps

    try:
        apps.get_model(label, require_ready=False)
    except LookupError:
        return f"{_shown(label)} is not an installed model"
    return None


def _owners_are_not_found(path: Any, label: Any) -> str | None:
    """The default request callable with an owner model other than users: every request's
    feature checks and me/ would answer as for nobody."""
    user_model = settings.AUTH_USER_MODEL.lower()
    if label is None or str(label).lower() == user_model or path != DEFAULTS["OWNER_FROM_REQUEST"]:
        return None
    return (f"is not set, and customers belong to {label}, not to users: no request has an owner, "
            "so feature checks by request and the API's me/ find no customer")


def _not_a_mapper(path: Any) -> str | None:
    if callable(path):
        return None
    if not isinstance(path, str):
        return f"must be a dotted path to a callable, or the callable, not {_shown(path)}"
    try:
        mapper = import_string(path)
    except Exception as exc:  # ImportError, or whatever the module raises as it is imported
        return f"{_shown(path)} cannot be imported ({_short(f'{type(exc).__name__}: {exc}')})"
    return None if callable(mapper) else f"{_shown(path)} is not callable (it is {_shown(mapper)})"


def _lock_shorter_than_a_page(lock_timeout: float, retry_max_seconds: float, timeout: Any) -> str | None:
    # A page (with its retries) must fit in the lease, or a slow but live run would be
    # taken for dead and overtaken.
    read_timeout = timeout[-1] if isinstance(timeout, (tuple, list)) else timeout
    budget = retry_max_seconds + read_timeout
    if lock_timeout > budget:
        return None
    return (f"({lock_timeout} s) is not longer than one page may take with retries "
            f"(AUTUMN_RETRY_MAX_SECONDS + read timeout = {budget:g} s)")


_BOOL_HINT = "Use the Python values True or False: a string such as 'False' counts as true."

RULES: tuple[Rule, ...] = (
    Rule("SECRET_KEY", "E001", _no_key,
         "Set AUTUMN_SECRET_KEY in your settings or in the environment (an API key from the "
         "Autumn dashboard), or AUTUMN_SECRET_KEYS with one key per environment.",
         needs=("SECRET_KEYS",)),
    Rule("SECRET_KEY", "E002", _not_a_key,
         "Secret keys start with 'am_sk_test_' (sandbox) or 'am_sk_live_' (live). "
         "A publishable key or a key of another service will not work."),
    Rule("SECRET_KEY", "E003", _white_space,
         "Copy the key again without surrounding spaces or line breaks."),
    Rule("SECRET_KEYS", "E021", _not_per_env,
         "Give {'sandbox': 'am_sk_test_...', 'live': 'am_sk_live_...'}, either or both."),
    Rule("SECRET_KEYS", "E022", _key_of_another_env,
         "A key's prefix decides its environment: 'am_sk_test_' keys are sandbox's, "
         "'am_sk_live_' keys live's. Copy each key from that environment's API keys page."),
    Rule("SECRET_KEYS", "E023", _two_keys_for_one_env,
         "Give each environment one key: drop AUTUMN_SECRET_KEY (or unset the environment "
         "variable), or make it the same key as the entry in AUTUMN_SECRET_KEYS.",
         needs=("SECRET_KEY",)),
    Rule("ENV", "E024", _not_an_env,
         "AUTUMN_ENV is the environment the project runs in: 'sandbox' or 'live'; unset, "
         "'live' when a live key is configured, else 'sandbox'."),
    Rule("ENV", "E025", _env_without_key,
         "Add that environment's key to AUTUMN_SECRET_KEYS, or set AUTUMN_ENV to an "
         "environment whose key is configured: feature checks, me/, signups and the webhook "
         "endpoint without an env in its URL use AUTUMN_ENV.",
         needs=("SECRET_KEYS", "SECRET_KEY")),
    Rule("API_URL", "E004", _not_http_url, "Leave it unset for https://api.useautumn.com."),
    Rule("API_URL", "W001", _clear_text,
         "Use an https:// URL; plain http is only fine for a local stand-in.", level=Warning),
    Rule("DASHBOARD_URL", "E017", _not_http_url,
         "Leave it unset for https://app.useautumn.com (the admin's links to customers go there)."),
    Rule("TIMEOUT", "E009",
         _must_be("a positive number of seconds or a (connect, read) pair of them", _timeout),
         "For example 30, or (5.0, 30.0) (the default)."),
    Rule("MAX_RETRIES", "E010", _must_be("a whole number, 0 or more", lambda v: _whole(v) and v >= 0),
         "0 turns retries off; the default is 6. AUTUMN_RETRY_MAX_SECONDS bounds them as well."),
    Rule("RETRY_MAX_SECONDS", "E011",
         _must_be("a number of seconds, 0 or more", lambda v: _seconds(v) and v >= 0),
         "The total a call may spend waiting to retry; the default is 120."),
    Rule("SYNC_PAGE_SIZE", "E005",
         _must_be("a whole number from 1 to 5000", lambda v: _whole(v) and 1 <= v <= 5000),
         "The default, 1000, is Autumn's usual per-org maximum."),
    Rule("SYNC_LOCK_TIMEOUT", "E006",
         _must_be("a number of seconds of at least 30", lambda v: _seconds(v) and v >= 30),
         "It must exceed the longest a single page can take, retries included."),
    Rule("SYNC_QUEUE_TIMEOUT", "E031",
         _must_be("a positive number of seconds", lambda v: _seconds(v) and v > 0),
         "The default, 3600, lets a Celery workflow's window tasks wait an hour in a busy "
         "queue before their run is taken for dead."),
    Rule("SYNC_PREFETCH_PROCESS", "E016", _must_be("True or False", lambda v: isinstance(v, bool)),
         _BOOL_HINT),
    Rule("SYNC_STALE_AFTER_SECONDS", "E019",
         _must_be("a positive number of seconds", lambda v: _seconds(v) and v > 0),
         "The default, 90000 (25 hours), leaves a daily sync an hour to run before "
         "autumn_django.W004 and the customer list say the mirror may be stale."),
    Rule("SYNC_DB_CONNECTIONS", "E008",
         _must_be("a whole number from 1 to 8", lambda v: _whole(v) and 1 <= v <= 8),
         "2 (the default) overlaps one page's commit with the next page's writes on "
         "PostgreSQL; 1 writes one page at a time, on one connection."),
    Rule("SYNC_WINDOWS", "E030",
         _must_be("a whole number from 1 to 64", lambda v: _whole(v) and 1 <= v <= 64),
         "8 (the default) keeps 8 pages in flight against a distant Autumn; 1 crawls with "
         "one cursor. Autumn allows about 50 list requests a second per org."),
    Rule("SYNC_REPLICA_LAG_SECONDS", "E020",
         _must_be("a number of seconds, 0 or more", lambda v: _seconds(v) and v >= 0),
         "The default, 60, re-reads with customers.get a customer whose list row disagrees "
         "with a customers.get answer stored less than a minute before its page was "
         "requested; 0 turns that off."),
    Rule("TASK_MODE", "E012", _not_a_task_mode,
         "'celery' queues the app's work for your Celery worker, 'inline' runs it in-process "
         "after the commit (no worker), 'off' stops the app from calling Autumn on its own."),
    Rule("CUSTOMER_OWNER_MODEL", "E028", _not_an_installed_model,
         "Give the 'app_label.Model' of an installed model whose instances are your Autumn "
         "customers, e.g. 'accounts.Organization'; unset, they are users (AUTH_USER_MODEL)."),
    Rule("CUSTOMER_FIELDS", "E013", _not_a_mapper,
         "Give the dotted path of a function (or the function) that takes an owner (a user by "
         "default) and returns {'customer_id', 'name', 'email'}; unset, it is "
         "autumn_django.owners.default_customer_fields."),
    Rule("OWNER_FROM_REQUEST", "E029", _not_a_mapper,
         "Give the dotted path of a function (or the function) that takes a request and returns "
         "its owner (an instance of AUTUMN_CUSTOMER_OWNER_MODEL) or None; unset, it is "
         "autumn_django.owners.default_owner_from_request (the signed-in user)."),
    Rule("OWNER_FROM_REQUEST", "W005", _owners_are_not_found,
         "Set AUTUMN_OWNER_FROM_REQUEST to a function (request) -> owner or None, e.g. one "
         "that returns the signed-in user's organisation.",
         level=Warning, needs=("CUSTOMER_OWNER_MODEL",)),
    Rule("AUTO_ENABLE_PLAN_ID", "E014",
         _must_be("None or a plan id (letters, digits, '_', ':' and '-')",
                  lambda v: v is None or _autumn_id(v)),
         "Give the id of a plan in your Autumn dashboard, e.g. 'free', or None to enable none."),
    Rule("UPDATE_ON_PROFILE_CHANGE", "E015", _must_be("True or False", lambda v: isinstance(v, bool)),
         _BOOL_HINT),
    Rule("WEBHOOK_SECRET", "E007", _not_a_signing_secret,
         "Copy the endpoint's signing secret from Autumn's webhook settings: 'whsec_' "
         "followed by base64, without spaces or line breaks."),
    Rule("WEBHOOK_SECRETS", "E026", _not_per_env,
         "Give {'sandbox': 'whsec_...', 'live': 'whsec_...'}: each environment's endpoint "
         "has its own signing secret."),
    Rule("WEBHOOK_SECRETS", "E027", _not_signing_secrets,
         "Copy each endpoint's signing secret from that environment's webhook settings (or "
         "from `manage.py autumn_webhook`): 'whsec_' followed by base64."),
    Rule("WEBHOOK_TOLERANCE_SECONDS", "E018",
         _must_be("a positive number of seconds", lambda v: _seconds(v) and v > 0),
         "The default, 300, accepts deliveries signed up to five minutes before or after now."),
    # Last: it runs only when the settings it reads passed their own rules above.
    Rule("SYNC_LOCK_TIMEOUT", "W002", _lock_shorter_than_a_page,
         "Raise AUTUMN_SYNC_LOCK_TIMEOUT or lower AUTUMN_RETRY_MAX_SECONDS.",
         level=Warning, needs=("RETRY_MAX_SECONDS", "TIMEOUT")),
)


def setting_problems(*names: str) -> list[CheckMessage]:
    """The messages of every rule, or with ``names`` of the rules that read only those
    settings (``"TASK_MODE"``, without the prefix). Never raises."""
    messages: list[CheckMessage] = []
    reported: set[str] = set()
    for rule in RULES:
        reads = (rule.setting, *rule.needs)
        if (names and not set(reads) <= set(names)) or reported.intersection(reads):
            continue
        try:
            problem = rule.problem(*(getattr(autumn_settings, name) for name in reads))
        except Exception as exc:  # a value no rule foresaw must not crash `manage.py check`
            problem = f"could not be checked ({type(exc).__name__})"
        if problem is not None:
            reported.add(rule.setting)
            messages.append(rule.level(f"AUTUMN_{rule.setting} {problem}.", hint=rule.hint,
                                       id=f"autumn_django.{rule.id}"))
    return messages


def unknown_setting_warnings() -> list[CheckMessage]:
    """A warning for each ``AUTUMN_*`` setting this app does not have (a typo is otherwise
    silently ignored), with the closest name it has."""
    try:
        names = sorted(name for name in dir(settings) if name.startswith("AUTUMN_"))
    except Exception:
        return []
    warnings: list[CheckMessage] = []
    for name in names:
        if name in KNOWN_SETTINGS:
            continue
        # Compared without the prefix every name shares, which would make all of them "close".
        close = difflib.get_close_matches(name.removeprefix("AUTUMN_"), DEFAULTS, n=1)
        warnings.append(Warning(
            f"{name} is not a setting of autumn_django"
            + (f"; did you mean AUTUMN_{close[0]}?" if close else "; it is ignored."),
            hint="Check the name against the settings in autumn_django's README. If it is your "
                 "project's own setting, add 'autumn_django.W003' to SILENCED_SYSTEM_CHECKS.",
            id="autumn_django.W003",
        ))
    return warnings


@register(TAG)
def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    return setting_problems()


@register(TAG)
def check_setting_names(app_configs: Sequence[AppConfig] | None = None,
                        **kwargs: Any) -> list[CheckMessage]:
    return unknown_setting_warnings()


STALE_HINT = ("Run `manage.py autumn_sync`, and schedule it (autumn_django.schedules.sync_schedule): "
              "webhooks refresh the customers they name, but only a full sync sees every change "
              "and deletion. Failed runs are listed under Sync runs in the admin.")


@register(TAG)
def check_sync_freshness(app_configs: Sequence[AppConfig] | None = None,
                         databases: Sequence[str] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """W004: the last complete sync of a configured env finished longer ago than
    ``AUTUMN_SYNC_STALE_AFTER_SECONDS``, or none has. Reads only the databases Django
    passes (none: nothing is read), and says nothing when it cannot read them (no table
    before ``migrate``, a database that is down) or the settings it needs are bad (their own
    checks say so). Never raises."""
    try:
        if not databases or setting_problems("SECRET_KEY", "SECRET_KEYS", "ENV", "SYNC_STALE_AFTER_SECONDS"):
            return []
        return [warning for env in secret_keys() if (warning := _stale_warning(env, databases))]
    except Exception:  # a check never raises
        return []


def _stale_warning(env: str, databases: Sequence[str]) -> CheckMessage | None:
    """W004 for one configured env, or None when its mirror is fresh or cannot be read."""
    from .freshness import freshness_in

    state = freshness_in(env, databases)
    if state is None or not state.stale:
        return None
    if state.finished_at is None:
        text = (f"No complete sync of the {env} customers has finished yet: the mirror may be "
                "stale or empty.")
    else:
        text = (f"The last complete sync of the {env} customers finished "
                f"{timesince(state.finished_at, state.now).replace(chr(0xA0), ' ')} ago "
                f"({state.finished_at.isoformat(timespec='minutes')}, run #{state.last_complete.pk}), "
                f"longer ago than AUTUMN_SYNC_STALE_AFTER_SECONDS "
                f"({state.stale_after.total_seconds():g} s): the mirror may be stale.")
    return Warning(text, hint=STALE_HINT, id="autumn_django.W004")
