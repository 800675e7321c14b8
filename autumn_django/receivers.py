"""Receivers for the owner model (``AUTUMN_CUSTOMER_OWNER_MODEL``, by default the user
model): a customer for every new owner (a signup, a new organisation), and (opt-in) name
and email changes sent to Autumn. Both only queue work for after the commit, so a
signup never waits on Autumn and never fails because Autumn or the broker is down.

Nor does a save fail because of this app's settings: a bad ``AUTUMN_TASK_MODE``, a mapping
(``AUTUMN_CUSTOMER_FIELDS``) that cannot be imported, raises or gives an id Autumn refuses,
and inline work that fails unexpectedly are logged as one error naming the setting to fix,
and the owner is saved as if the app were not installed. Database errors still propagate:
they are the host's, and a transaction they broke must not be used on as if it were sound.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError

from .checks import setting_problems
from .conf import autumn_settings
from .dispatch import dispatch_on_commit
from .exceptions import AutumnConfigurationError, scrub_secrets

logger = logging.getLogger(__name__)

# Set on the instance in pre_save: the name and email the owner had before this save.
_BEFORE = "_autumn_fields_before_save"

MAPPING_HINT = ("Fix the function AUTUMN_CUSTOMER_FIELDS names: for every owner it must return "
                "{'customer_id', 'name', 'email'} with an id of letters, digits, '_', ':' and '-'.")


def owner_pre_save(sender: type, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    if raw or instance.pk is None or not autumn_settings.UPDATE_ON_PROFILE_CHANGE:
        return
    stored = sender._default_manager.filter(pk=instance.pk).first()
    before = None if stored is None else _profile(stored)
    if before is not None:
        setattr(instance, _BEFORE, before)


def owner_post_save(sender: type, instance: Any, created: bool, raw: bool = False,
                   **kwargs: Any) -> None:
    before = instance.__dict__.pop(_BEFORE, None)
    mode = autumn_settings.TASK_MODE
    if raw or (isinstance(mode, str) and mode == "off"):  # raw: loading fixtures is not a signup
        return
    from .tasks import create_customer_for_owner_task, update_customer_for_owner_task

    if created:
        task = create_customer_for_owner_task
    elif before is not None and before != _profile(instance, before):
        task = update_customer_for_owner_task
    else:
        return  # nothing Autumn needs to hear: no setting is looked at, nothing is logged
    # The rules of `manage.py check`: a bad mode or a mapping that cannot be imported is
    # said once here, where it costs the host nothing, instead of raising into its save.
    if not _misconfigured(instance, "TASK_MODE", "CUSTOMER_FIELDS"):
        dispatch_on_commit(task, instance.pk, using=kwargs.get("using"))


def _misconfigured(owner: Any, *names: str) -> bool:
    """Whether one of the settings ``names`` is bad; if so, logged with the fix."""
    problems = [message for message in setting_problems(*names) if message.is_serious()]
    if problems:
        _log_error(owner, " ".join(f"{message.msg} {message.hint}" for message in problems))
    return bool(problems)


def _profile(owner: Any, unchanged: tuple | None = None) -> tuple | None:
    """The name and email the mapping gives ``owner``; when it fails, the error is logged
    and the answer is ``unchanged``."""
    from .owners import customer_fields_for

    if _misconfigured(owner, "CUSTOMER_FIELDS"):  # cannot be imported, or not callable
        return unchanged
    try:
        fields = customer_fields_for(owner)
    except DatabaseError:
        raise
    except AutumnConfigurationError as exc:  # an id Autumn refuses
        _log_error(owner, f"{exc.message} {MAPPING_HINT}")
        return unchanged
    except Exception as exc:  # the project's function raised
        _log_error(owner, f"AUTUMN_CUSTOMER_FIELDS raised {type(exc).__name__}: {exc}. {MAPPING_HINT}")
        return unchanged
    return fields["name"], fields["email"]


def _log_error(owner: Any, problem: str) -> None:
    logger.error("autumn_django sends nothing to Autumn for this save of %s %s (the save itself "
                 "goes on): %s", owner._meta.model_name, owner.pk, scrub_secrets(problem))
