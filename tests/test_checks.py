"""System checks: each problem gets its namespaced id and a hint, and no value of any type
makes a check raise. Only the app's own checks run (tag "autumn"), so no test here needs
the database (Django 6.1's run_checks() passes every database to the checks that query it)."""

from __future__ import annotations

import math

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from autumn_django.checks import RULES, TAG, setting_problems
from autumn_django.conf import DEFAULTS


def run() -> list[checks.CheckMessage]:
    return checks.run_checks(tags=[TAG])


def ids() -> list[str]:
    return [message.id for message in run()]


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("AUTUMN_SECRET_KEY", "", ["autumn_django.E001"]),
    ("AUTUMN_SECRET_KEY", "pk_live_publishable", ["autumn_django.E002"]),
    ("AUTUMN_SECRET_KEY", "am_sk_live_abc def123456", ["autumn_django.E003"]),
    ("AUTUMN_API_URL", "api.useautumn.com", ["autumn_django.E004"]),
    ("AUTUMN_API_URL", "http://autumn.internal.example", ["autumn_django.W001"]),
    ("AUTUMN_API_URL", "http://127.0.0.1:8787", []),
    ("AUTUMN_SYNC_PAGE_SIZE", 0, ["autumn_django.E005"]),
    ("AUTUMN_SYNC_DB_CONNECTIONS", 0, ["autumn_django.E008"]),
    ("AUTUMN_SYNC_DB_CONNECTIONS", "2", ["autumn_django.E008"]),
    ("AUTUMN_SYNC_DB_CONNECTIONS", 1, []),
    ("AUTUMN_SYNC_LOCK_TIMEOUT", 5, ["autumn_django.E006"]),
    ("AUTUMN_SYNC_LOCK_TIMEOUT", 34, ["autumn_django.W002"]),  # 5 s of retries + 30 s read
    ("AUTUMN_SYNC_QUEUE_TIMEOUT", 0, ["autumn_django.E031"]),
    ("AUTUMN_SYNC_QUEUE_TIMEOUT", "3600", ["autumn_django.E031"]),
    ("AUTUMN_SYNC_QUEUE_TIMEOUT", 30, []),
    ("AUTUMN_WEBHOOK_SECRET", "whsec_not base64!", ["autumn_django.E007"]),
    ("AUTUMN_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", []),
    # Wrong types and values out of range of the settings that had a check already.
    ("AUTUMN_SECRET_KEY", 12345, ["autumn_django.E002"]),
    ("AUTUMN_API_URL", None, ["autumn_django.E004"]),
    ("AUTUMN_API_URL", "http://[::1", ["autumn_django.E004"]),
    ("AUTUMN_SYNC_PAGE_SIZE", "1000", ["autumn_django.E005"]),
    ("AUTUMN_SYNC_PAGE_SIZE", 5001, ["autumn_django.E005"]),
    ("AUTUMN_SYNC_PAGE_SIZE", True, ["autumn_django.E005"]),
    ("AUTUMN_SYNC_LOCK_TIMEOUT", "300", ["autumn_django.E006"]),
    ("AUTUMN_SYNC_LOCK_TIMEOUT", math.nan, ["autumn_django.E006"]),
    ("AUTUMN_SYNC_LOCK_TIMEOUT", math.inf, ["autumn_django.E006"]),
    ("AUTUMN_SYNC_DB_CONNECTIONS", 9, ["autumn_django.E008"]),
    ("AUTUMN_WEBHOOK_SECRET", 12345, ["autumn_django.E007"]),
    # E009 AUTUMN_TIMEOUT: a positive number, or a (connect, read) pair of them.
    ("AUTUMN_TIMEOUT", "thirty", ["autumn_django.E009"]),
    ("AUTUMN_TIMEOUT", None, ["autumn_django.E009"]),
    ("AUTUMN_TIMEOUT", 0, ["autumn_django.E009"]),
    ("AUTUMN_TIMEOUT", -1.5, ["autumn_django.E009"]),
    ("AUTUMN_TIMEOUT", math.inf, ["autumn_django.E009"]),
    ("AUTUMN_TIMEOUT", (5, "30"), ["autumn_django.E009"]),
    ("AUTUMN_TIMEOUT", (5, 0), ["autumn_django.E009"]),
    ("AUTUMN_TIMEOUT", (1, 2, 30), ["autumn_django.E009"]),
    ("AUTUMN_TIMEOUT", 30, []),
    ("AUTUMN_TIMEOUT", [3.5, 30], []),
    # E010 AUTUMN_MAX_RETRIES: a whole number, 0 or more.
    ("AUTUMN_MAX_RETRIES", "6", ["autumn_django.E010"]),
    ("AUTUMN_MAX_RETRIES", 2.5, ["autumn_django.E010"]),
    ("AUTUMN_MAX_RETRIES", -1, ["autumn_django.E010"]),
    ("AUTUMN_MAX_RETRIES", 0, []),
    # E011 AUTUMN_RETRY_MAX_SECONDS: a number of seconds, 0 or more.
    ("AUTUMN_RETRY_MAX_SECONDS", "120", ["autumn_django.E011"]),
    ("AUTUMN_RETRY_MAX_SECONDS", -1, ["autumn_django.E011"]),
    ("AUTUMN_RETRY_MAX_SECONDS", math.nan, ["autumn_django.E011"]),
    ("AUTUMN_RETRY_MAX_SECONDS", 0, []),
    # E012 AUTUMN_TASK_MODE: one of the three modes.
    ("AUTUMN_TASK_MODE", "Celery", ["autumn_django.E012"]),
    ("AUTUMN_TASK_MODE", None, ["autumn_django.E012"]),
    ("AUTUMN_TASK_MODE", ["celery"], ["autumn_django.E012"]),
    ("AUTUMN_TASK_MODE", "inline", []),
    # E013 AUTUMN_CUSTOMER_FIELDS: a dotted path to a callable, or the callable.
    ("AUTUMN_CUSTOMER_FIELDS", 42, ["autumn_django.E013"]),
    ("AUTUMN_CUSTOMER_FIELDS", None, ["autumn_django.E013"]),
    ("AUTUMN_CUSTOMER_FIELDS", "no.such.module.func", ["autumn_django.E013"]),
    ("AUTUMN_CUSTOMER_FIELDS", "nodots", ["autumn_django.E013"]),
    ("AUTUMN_CUSTOMER_FIELDS", "autumn_django.owners.no_such_function", ["autumn_django.E013"]),
    ("AUTUMN_CUSTOMER_FIELDS", "autumn_django.owners.CUSTOMER_ID_PATTERN", ["autumn_django.E013"]),
    ("AUTUMN_CUSTOMER_FIELDS", lambda user: {"customer_id": "x"}, []),
    ("AUTUMN_CUSTOMER_FIELDS", "autumn_django.owners.default_customer_fields", []),
    # E014 AUTUMN_AUTO_ENABLE_PLAN_ID: None or an id Autumn accepts.
    ("AUTUMN_AUTO_ENABLE_PLAN_ID", 5, ["autumn_django.E014"]),
    ("AUTUMN_AUTO_ENABLE_PLAN_ID", "", ["autumn_django.E014"]),
    ("AUTUMN_AUTO_ENABLE_PLAN_ID", "free plan", ["autumn_django.E014"]),
    ("AUTUMN_AUTO_ENABLE_PLAN_ID", "free\n", ["autumn_django.E014"]),
    ("AUTUMN_AUTO_ENABLE_PLAN_ID", "pro_annual:v2", []),
    # E015, E016: the booleans.
    ("AUTUMN_UPDATE_ON_PROFILE_CHANGE", "False", ["autumn_django.E015"]),
    ("AUTUMN_UPDATE_ON_PROFILE_CHANGE", 1, ["autumn_django.E015"]),
    ("AUTUMN_UPDATE_ON_PROFILE_CHANGE", None, ["autumn_django.E015"]),
    ("AUTUMN_UPDATE_ON_PROFILE_CHANGE", True, []),
    ("AUTUMN_SYNC_PREFETCH_PROCESS", "False", ["autumn_django.E016"]),
    ("AUTUMN_SYNC_PREFETCH_PROCESS", 0, ["autumn_django.E016"]),
    ("AUTUMN_SYNC_PREFETCH_PROCESS", False, []),
    # E020 AUTUMN_SYNC_REPLICA_LAG_SECONDS: a number of seconds, 0 (off) or more.
    ("AUTUMN_SYNC_REPLICA_LAG_SECONDS", "60", ["autumn_django.E020"]),
    ("AUTUMN_SYNC_REPLICA_LAG_SECONDS", -1, ["autumn_django.E020"]),
    ("AUTUMN_SYNC_REPLICA_LAG_SECONDS", None, ["autumn_django.E020"]),
    ("AUTUMN_SYNC_REPLICA_LAG_SECONDS", math.inf, ["autumn_django.E020"]),
    ("AUTUMN_SYNC_REPLICA_LAG_SECONDS", 0, []),
    ("AUTUMN_SYNC_REPLICA_LAG_SECONDS", 2.5, []),
    # E017 AUTUMN_DASHBOARD_URL: an http(s) URL (plain http is only a link: no warning).
    ("AUTUMN_DASHBOARD_URL", 3, ["autumn_django.E017"]),
    ("AUTUMN_DASHBOARD_URL", "app.useautumn.com", ["autumn_django.E017"]),
    ("AUTUMN_DASHBOARD_URL", "ftp://app.useautumn.com", ["autumn_django.E017"]),
    ("AUTUMN_DASHBOARD_URL", "http://dashboard.internal.example", []),
    # E018 AUTUMN_WEBHOOK_TOLERANCE_SECONDS: a positive number of seconds.
    ("AUTUMN_WEBHOOK_TOLERANCE_SECONDS", "300", ["autumn_django.E018"]),
    ("AUTUMN_WEBHOOK_TOLERANCE_SECONDS", 0, ["autumn_django.E018"]),
    ("AUTUMN_WEBHOOK_TOLERANCE_SECONDS", -300, ["autumn_django.E018"]),
    ("AUTUMN_WEBHOOK_TOLERANCE_SECONDS", math.inf, ["autumn_django.E018"]),
    ("AUTUMN_WEBHOOK_TOLERANCE_SECONDS", 0.5, []),
    # E019 AUTUMN_SYNC_STALE_AFTER_SECONDS: a positive number of seconds.
    ("AUTUMN_SYNC_STALE_AFTER_SECONDS", "90000", ["autumn_django.E019"]),
    ("AUTUMN_SYNC_STALE_AFTER_SECONDS", 0, ["autumn_django.E019"]),
    ("AUTUMN_SYNC_STALE_AFTER_SECONDS", None, ["autumn_django.E019"]),
    ("AUTUMN_SYNC_STALE_AFTER_SECONDS", math.nan, ["autumn_django.E019"]),
    ("AUTUMN_SYNC_STALE_AFTER_SECONDS", 3600.5, []),
])
def test_check(settings, monkeypatch, name, value, expected):
    monkeypatch.delenv("AUTUMN_SECRET_KEY", raising=False)
    setattr(settings, name, value)
    assert ids() == expected
    for message in run():
        assert message.hint
        assert message.msg.startswith(name)


def test_the_environment_variable_is_the_fallback(settings, monkeypatch):
    settings.AUTUMN_SECRET_KEY = None
    monkeypatch.setenv("AUTUMN_SECRET_KEY", "am_sk_live_fromTheEnvironment123")
    assert ids() == []
    monkeypatch.delenv("AUTUMN_SECRET_KEY")
    assert ids() == ["autumn_django.E001"]


def test_check_messages_never_show_the_key(settings):
    settings.AUTUMN_SECRET_KEY = "am_sk_live_abc def123456"
    settings.AUTUMN_WEBHOOK_SECRET = "whsec_secret part!"
    messages = run()
    assert [message.id for message in messages] == ["autumn_django.E003", "autumn_django.E007"]
    for message in messages:
        assert "def123456" not in f"{message.msg} {message.hint}"
        assert "secret part" not in f"{message.msg} {message.hint}"


def test_a_misspelt_task_mode_names_the_mode_it_resembles(settings):
    settings.AUTUMN_TASK_MODE = " Inline"
    [message] = run()
    assert message.msg == ("AUTUMN_TASK_MODE must be one of 'celery', 'inline', 'off', not ' Inline' "
                           "(did you mean 'inline'?).")


def test_a_mapping_whose_module_fails_to_import_is_reported(settings, tmp_path, monkeypatch):
    (tmp_path / "autumn_broken_mapping.py").write_text("raise RuntimeError('half-configured')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    settings.AUTUMN_CUSTOMER_FIELDS = "autumn_broken_mapping.fields"
    [message] = run()
    assert message.id == "autumn_django.E013"
    assert "RuntimeError: half-configured" in message.msg


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("AUTUMN_SYNC_LOCK_TIMEOUT", 34, ["autumn_django.W002"]),  # the inputs are valid
    ("AUTUMN_TIMEOUT", 29, ["autumn_django.W002"]),  # a single number is the read timeout
    ("AUTUMN_RETRY_MAX_SECONDS", "120", ["autumn_django.E011"]),
    ("AUTUMN_TIMEOUT", "thirty", ["autumn_django.E009"]),
    ("AUTUMN_TIMEOUT", (5, None), ["autumn_django.E009"]),
])
def test_the_lock_budget_warning_runs_only_on_valid_inputs(settings, name, value, expected):
    settings.AUTUMN_SYNC_LOCK_TIMEOUT = 34  # not above 5 s of retries + a 30 s read timeout
    setattr(settings, name, value)
    assert ids() == expected


def test_an_unknown_setting_is_named_with_the_closest_valid_name(settings):
    settings.AUTUMN_SYNC_PAGESIZE = 500
    settings.AUTUMN_COLOUR = "red"
    messages = run()
    assert [(message.id, message.msg) for message in messages] == [
        ("autumn_django.W003", "AUTUMN_COLOUR is not a setting of autumn_django; it is ignored."),
        ("autumn_django.W003", "AUTUMN_SYNC_PAGESIZE is not a setting of autumn_django; "
                               "did you mean AUTUMN_SYNC_PAGE_SIZE?"),
    ]
    assert all(message.hint and message.level == checks.WARNING for message in messages)


class Exploding:
    """A value every operation on which raises."""

    def _raise(self, *args, **kwargs):
        raise RuntimeError("boom")

    __repr__ = __str__ = __bool__ = __eq__ = __lt__ = __le__ = __gt__ = __ge__ = _raise
    __hash__ = __len__ = __iter__ = __getitem__ = __float__ = __int__ = __index__ = _raise


ODD_VALUES = [None, "", " ", "thirty", "120", "False", b"bytes", 0, -1, 1.5, -0.0, math.nan, math.inf,
              10**400, 10**5000, 1j, True, False, [], [1], [1, 2, 3], (), ("a", "b"), {}, {"a": 1},
              {1, 2}, object(), Exploding(), type, lambda *args: None]


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_no_check_raises_whatever_the_value(settings, monkeypatch, name):
    monkeypatch.delenv(f"AUTUMN_{name}", raising=False)
    for value in ODD_VALUES:
        setattr(settings, f"AUTUMN_{name}", value)
        for message in run():
            assert message.id.startswith("autumn_django.") and message.hint, (value, message)
            assert message.msg.startswith(f"AUTUMN_{name}"), (value, message)


def test_every_setting_has_a_rule_and_every_rule_its_own_id():
    assert {rule.setting for rule in RULES} == set(DEFAULTS)
    assert len({rule.id for rule in RULES}) == len(RULES)
    assert all(rule.hint.endswith(".") for rule in RULES)


def test_the_runtime_can_ask_about_some_settings_only(settings):
    settings.AUTUMN_TASK_MODE = "Celery"
    settings.AUTUMN_SYNC_PAGE_SIZE = 0
    assert [message.id for message in setting_problems("TASK_MODE")] == ["autumn_django.E012"]
    assert [message.id for message in setting_problems("CUSTOMER_FIELDS")] == []


def test_manage_py_check_tag_autumn_runs_the_app_checks(settings, capsys):
    call_command("check", tag=[TAG])
    assert "no issues" in capsys.readouterr().out

    settings.AUTUMN_TIMEOUT = "thirty"
    settings.AUTUMN_SYNC_PAGESIZE = 500
    with pytest.raises(SystemCheckError) as raised:
        call_command("check", tag=[TAG])
    assert "autumn_django.E009" in str(raised.value) and "autumn_django.W003" in str(raised.value)


def test_the_checks_are_exactly_the_autumn_tag():
    registered = {check.__name__ for check in checks.registry.registry.get_checks()
                  if TAG in check.tags}
    assert registered == {"check_settings", "check_setting_names", "check_sync_freshness"}
    assert all(check.tags == (TAG,) for check in checks.registry.registry.get_checks()
               if check.__module__ == "autumn_django.checks")
