"""Receivers for the project's user model: a customer for every signup, and (opt-in)
name and email changes sent to Autumn. Both only queue work for after the commit, so a
signup never waits on Autumn and never fails because Autumn or the broker is down."""

from __future__ import annotations

from typing import Any

from .conf import autumn_settings
from .dispatch import dispatch_on_commit, task_mode

# Set on the instance in pre_save: the name and email the user had before this save.
_BEFORE = "_autumn_fields_before_save"


def user_pre_save(sender: type, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    if raw or instance.pk is None or not autumn_settings.UPDATE_ON_PROFILE_CHANGE:
        return
    stored = sender._default_manager.filter(pk=instance.pk).first()
    if stored is not None:
        setattr(instance, _BEFORE, _profile(stored))


def user_post_save(sender: type, instance: Any, created: bool, raw: bool = False,
                   **kwargs: Any) -> None:
    if raw or task_mode() == "off":  # raw: loading fixtures is not a signup
        return
    from .tasks import create_customer_for_user_task, update_customer_for_user_task

    if created:
        dispatch_on_commit(create_customer_for_user_task, instance.pk, using=kwargs.get("using"))
        return
    before = instance.__dict__.pop(_BEFORE, None)
    if before is not None and before != _profile(instance):
        dispatch_on_commit(update_customer_for_user_task, instance.pk, using=kwargs.get("using"))


def _profile(user: Any) -> tuple:
    from .users import customer_fields_for

    fields = customer_fields_for(user)
    return fields["name"], fields["email"]
