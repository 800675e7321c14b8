"""System checks: each problem gets its namespaced id and a hint."""

from __future__ import annotations

import pytest
from django.core import checks


def ids() -> list[str]:
    return [message.id for message in checks.run_checks() if message.id.startswith("autumn_django.")]


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
    ("AUTUMN_WEBHOOK_SECRET", "whsec_not base64!", ["autumn_django.E007"]),
    ("AUTUMN_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", []),
])
def test_check(settings, monkeypatch, name, value, expected):
    monkeypatch.delenv("AUTUMN_SECRET_KEY", raising=False)
    setattr(settings, name, value)
    assert ids() == expected
    for message in checks.run_checks():
        if message.id in expected:
            assert message.hint


def test_the_environment_variable_is_the_fallback(settings, monkeypatch):
    settings.AUTUMN_SECRET_KEY = None
    monkeypatch.setenv("AUTUMN_SECRET_KEY", "am_sk_live_fromTheEnvironment123")
    assert ids() == []
    monkeypatch.delenv("AUTUMN_SECRET_KEY")
    assert ids() == ["autumn_django.E001"]


def test_check_messages_never_show_the_key(settings):
    settings.AUTUMN_SECRET_KEY = "am_sk_live_abc def123456"
    for message in checks.run_checks():
        assert "def123456" not in f"{message.msg} {message.hint}"
