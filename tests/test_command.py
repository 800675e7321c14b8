"""``manage.py autumn_sync``: output, exit codes and one-line messages, run as a user
runs it (a child process, so exit codes and the non-TTY output are real)."""

from __future__ import annotations

import os
import pty
import socket

import pytest
from django.core.management import call_command

from autumn_django.models import Customer, SyncRun
from autumn_django.sync import runs

from .conftest import TEST_KEY, run_manage

pytestmark = pytest.mark.django_db(transaction=True)


def sync_env(server=None, **extra) -> dict[str, str]:
    env = {"AUTUMN_SECRET_KEY": TEST_KEY, "AUTUMN_RETRY_MAX_SECONDS": "2"}
    if server is not None:
        env["AUTUMN_API_URL"] = server.url
    env.update(extra)
    return env


def test_sync_prints_progress_lines_and_a_summary(make_standin):
    server = make_standin(120)
    result = run_manage("autumn_sync", "--page-size", "50", env_extra=sync_env(server))
    assert result.returncode == 0, result.stderr
    assert "page 1: 50 customers" in result.stderr  # not a TTY: plain lines, no bar
    assert "\r" not in result.stderr
    run = SyncRun.objects.get()
    pages = f"{run.pages} page{'s' * (run.pages != 1)}"  # 3 or more: windows cut as they prove large
    assert f"Synced 120 sandbox customers in {pages}" in result.stdout and run.pages >= 3
    assert "created 120, updated 0, unchanged 0, deleted 0, skipped 0." in result.stdout
    assert "Synced 0 sandbox entities in 1 page: created 0" in result.stdout
    assert Customer.objects.count() == 120


def test_progress_bar_on_a_terminal(make_standin):
    server = make_standin(120)
    controller, terminal = pty.openpty()
    child = run_manage("autumn_sync", "--page-size", "50", background=True, env_extra=sync_env(server),
                       stdout=terminal, stderr=terminal)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert child.wait(timeout=60) == 0
    screen = output.decode()
    pages = SyncRun.objects.get().pages
    assert "\r[" + "#" * 30 + f"] 100%  120 customers, {pages} pages" in screen
    assert f"Synced 120 sandbox customers in {pages} pages" in screen


def test_resync_reports_unchanged_and_deleted(make_standin):
    server = make_standin(60)
    assert run_manage("autumn_sync", env_extra=sync_env(server)).returncode == 0
    server.delete_customer(next(c["id"] for c in server.list_customers() if c["id"]))
    result = run_manage("autumn_sync", env_extra=sync_env(server))
    assert result.returncode == 0
    assert "created 0, updated 0, unchanged 59, deleted 1, skipped 0." in result.stdout


def test_one_customer(make_standin):
    server = make_standin(10)
    customer_id = next(c["id"] for c in server.list_customers() if c["id"])
    result = run_manage("autumn_sync", "--customer", customer_id, env_extra=sync_env(server))
    assert result.returncode == 0, result.stderr
    assert f"Refreshed customer '{customer_id}' (sandbox)" in result.stdout
    missing = run_manage("autumn_sync", "--customer", "nobody", env_extra=sync_env(server))
    assert missing.returncode == 0 and "is not in Autumn" in missing.stdout


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_no_key_fails_with_an_actionable_line(make_standin):
    server = make_standin(5)
    result = run_manage("autumn_sync", env_extra=sync_env(server, AUTUMN_SECRET_KEY=""))
    assert result.returncode == 1
    assert last_line(result.stderr) == (
        "CommandError: No Autumn secret key: set AUTUMN_SECRET_KEY in your Django settings or environment.")


def test_bad_key_fails_without_showing_it(make_standin):
    server = make_standin(5, secret_keys={TEST_KEY})
    wrong = "am_sk_test_wrongWRONGwrong987654"
    result = run_manage("autumn_sync", env_extra=sync_env(server, AUTUMN_SECRET_KEY=wrong))
    assert result.returncode == 1
    assert last_line(result.stderr) == (
        "CommandError: Autumn rejected the secret key am_sk_test_*** (invalid_secret_key). "
        "Check AUTUMN_SECRET_KEY.")
    assert "wrongWRONG" not in result.stderr + result.stdout and "987654" not in result.stderr


def test_unreachable_autumn_fails_with_an_actionable_line():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_manage("autumn_sync", env_extra=sync_env(
        AUTUMN_API_URL=f"http://127.0.0.1:{port}", AUTUMN_RETRY_MAX_SECONDS="1"))
    assert result.returncode == 1
    line = last_line(result.stderr)
    assert line.startswith(f"CommandError: Could not reach Autumn at http://127.0.0.1:{port}")
    assert "connection refused" in line and "Check AUTUMN_API_URL" in line
    assert SyncRun.objects.get().status == SyncRun.Status.FAILED


def test_another_sync_running_exits_3(make_standin):
    server = make_standin(5)
    holder = runs.start_run("sandbox", page_size=10)
    result = run_manage("autumn_sync", env_extra=sync_env(server))
    assert result.returncode == 3
    assert f"Another sync of sandbox is running (run #{holder.pk}" in last_line(result.stderr)


def test_bad_page_size_is_a_usage_error():
    with pytest.raises(Exception, match="between 1 and 5000"):
        call_command("autumn_sync", page_size=0)
