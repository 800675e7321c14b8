"""A bad setting never breaks the host's save: the user receivers log one error saying what
to fix and let the user be saved (issue 13, finding 4)."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from autumn_django.models import Customer

pytestmark = pytest.mark.django_db(transaction=True)
User = get_user_model()


def app_errors(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.name.startswith("autumn_django") and record.levelno >= logging.ERROR]


def email_as_id(user):
    return {"customer_id": user.email, "name": None, "email": user.email}


def broken_mapping(user):
    raise ValueError("this mapping is broken")


NOT_CALLABLE = {"customer_id": "nope"}


def test_a_misspelt_task_mode_does_not_break_signup(settings, caplog):
    settings.AUTUMN_TASK_MODE = "Celery"

    user = User.objects.create_user("typo", "typo@example.com", "x")

    assert User.objects.filter(pk=user.pk, username="typo").exists()
    [error] = app_errors(caplog)
    assert "AUTUMN_TASK_MODE" in error and "'Celery'" in error and "did you mean 'celery'?" in error
    assert settings.AUTUMN_SECRET_KEY not in error


def test_a_misspelt_task_mode_does_not_break_signup_in_a_transaction(settings, caplog):
    settings.AUTUMN_TASK_MODE = 1
    with transaction.atomic():
        user = User.objects.create_user("atomic", "atomic@example.com", "x")
    assert User.objects.filter(pk=user.pk).exists()
    assert len(app_errors(caplog)) == 1


def test_a_misspelt_task_mode_only_speaks_when_there_is_work(settings, caplog):
    user = User.objects.create_user("quiet", "quiet@example.com", "x")
    settings.AUTUMN_TASK_MODE = "Celery"
    user.last_login = user.date_joined  # a login: nothing for Autumn
    user.save()
    assert app_errors(caplog) == []


@pytest.mark.parametrize("mode", ["inline", "celery"])
def test_a_mapping_that_cannot_be_imported_does_not_break_signup_or_profile_changes(settings, caplog, mode):
    settings.AUTUMN_TASK_MODE = mode
    settings.AUTUMN_CUSTOMER_FIELDS = "no.such.module.func"
    settings.AUTUMN_UPDATE_ON_PROFILE_CHANGE = True

    user = User.objects.create_user("nomap", "nomap@example.com", "x")

    assert User.objects.filter(pk=user.pk).exists()
    [error] = app_errors(caplog)
    assert "AUTUMN_CUSTOMER_FIELDS" in error and "no.such.module.func" in error
    caplog.clear()

    user.first_name = "Renamed"
    user.save()

    assert User.objects.get(pk=user.pk).first_name == "Renamed"
    [error] = app_errors(caplog)
    assert "AUTUMN_CUSTOMER_FIELDS" in error and "no.such.module.func" in error
    assert not Customer.objects.exists()


def test_a_mapping_that_cannot_be_imported_does_not_break_a_profile_change_in_off_mode(settings, caplog):
    settings.AUTUMN_CUSTOMER_FIELDS = "no.such.module.func"
    settings.AUTUMN_UPDATE_ON_PROFILE_CHANGE = True
    user = User.objects.create_user("offmode", "off@example.com", "x")
    user.email = "changed@example.com"
    user.save()
    assert User.objects.get(pk=user.pk).email == "changed@example.com"
    [error] = app_errors(caplog)
    assert "AUTUMN_CUSTOMER_FIELDS" in error


@pytest.mark.parametrize(("mapping", "expected"), [
    ("tests.test_settings_safety.broken_mapping", "ValueError: this mapping is broken"),
    ("tests.test_settings_safety.email_as_id", "gave customer_id 'before@example.com'"),
    ("tests.test_settings_safety.NOT_CALLABLE", "AUTUMN_CUSTOMER_FIELDS"),
])
def test_a_mapping_that_fails_does_not_break_a_profile_change(settings, caplog, mapping, expected):
    settings.AUTUMN_UPDATE_ON_PROFILE_CHANGE = True
    user = User.objects.create_user("mapped", "before@example.com", "x")  # off: no signup
    settings.AUTUMN_TASK_MODE = "inline"
    settings.AUTUMN_CUSTOMER_FIELDS = mapping
    caplog.clear()

    user.email = "after@example.com"
    user.save()

    assert User.objects.get(pk=user.pk).email == "after@example.com"
    [error] = app_errors(caplog)
    assert expected in error and "AUTUMN_CUSTOMER_FIELDS" in error


def test_a_mapping_that_raises_does_not_break_an_inline_signup(settings, caplog):
    settings.AUTUMN_TASK_MODE = "inline"
    settings.AUTUMN_CUSTOMER_FIELDS = "tests.test_settings_safety.broken_mapping"

    user = User.objects.create_user("raiser", "raiser@example.com", "x")

    assert User.objects.filter(pk=user.pk).exists()
    [error] = app_errors(caplog)
    assert "ValueError: this mapping is broken" in error
    assert f"autumn_django.create_customer_for_owner({user.pk},) failed" in error


def test_valid_settings_still_send_the_signup(make_standin, settings, caplog):
    server = make_standin(0)
    settings.AUTUMN_TASK_MODE = "inline"
    user = User.objects.create_user("fine", "fine@example.com", "x")
    assert Customer.objects.get(owner=user).autumn_id == f"user_{user.pk}"
    assert server.get_customer(f"user_{user.pk}") is not None
    assert app_errors(caplog) == []


ODD_VALUES = [None, "", "Off", "celery ", 1, 2.5, [], ["inline"], {}, object(), "no.such.module.func",
              "nodots", "tests.test_settings_safety.NOT_CALLABLE"]


@pytest.mark.parametrize("name", ["AUTUMN_TASK_MODE", "AUTUMN_CUSTOMER_FIELDS"])
def test_no_odd_value_breaks_signup(settings, caplog, name):
    settings.AUTUMN_TASK_MODE = "celery"
    for number, value in enumerate(ODD_VALUES):
        setattr(settings, name, value)
        caplog.clear()
        user = User.objects.create_user(f"odd{number}", f"odd{number}@example.com", "x")
        assert User.objects.filter(pk=user.pk).exists()
        [error] = app_errors(caplog)
        assert name in error, (value, error)
