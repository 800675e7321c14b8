"""The real Redis and `celery worker`/`celery beat` child processes of the Celery tests,
as fixtures shared by every test module (imported into conftest.py): one redis-server per
session, flushed for each test."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from .celery_app import app as celery_app
from .conftest import TEST_KEY, run_manage


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable, timeout: float = 60.0, what: str = "condition", proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the child process exited: {proc.communicate()[1][-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: `apt-get install redis-server` (.ci/run does it)")
    port = free_port()
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    client = redis.Redis.from_url(url)
    wait_for(lambda: _pings(client), timeout=10, what="redis-server")
    yield url
    server.terminate()
    server.wait(timeout=10)


def _pings(client) -> bool:
    try:
        return client.ping()
    except Exception:
        return False


@pytest.fixture
def celery_env(redis_url, settings) -> Iterator[dict[str, str]]:
    """Point the test process's Celery app and settings at a clean Redis."""
    import redis

    redis.Redis.from_url(redis_url).flushall()
    old = (celery_app.conf.broker_url, celery_app.conf.result_backend)
    celery_app.conf.broker_url = celery_app.conf.result_backend = redis_url
    _forget_connections()
    settings.AUTUMN_TASK_MODE = "celery"
    yield {"CELERY_BROKER_URL": redis_url, "CELERY_RESULT_BACKEND": redis_url,
           "AUTUMN_TASK_MODE": "celery", "AUTUMN_SECRET_KEY": TEST_KEY}
    celery_app.conf.broker_url, celery_app.conf.result_backend = old
    _forget_connections()


def _forget_connections() -> None:
    """Have the app connect anew by its configuration of now. Celery keeps its broker
    connections (``close`` drops them) and builds a thread's result backend once
    (``app._local``): a test that published earlier with other settings (test_signup's
    dead broker, no result backend) left this thread ones that lead nowhere."""
    celery_app.close()
    vars(celery_app._local).pop("backend", None)


@pytest.fixture
def start_celery(celery_env, tmp_path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `celery worker` or `celery beat` as a child process with the test settings."""
    children: list[subprocess.Popen] = []

    def start(kind: str, *args: str, **env: str) -> subprocess.Popen:
        command = ["-A", "tests.celery_app", kind, "--loglevel", "INFO"]
        if kind == "worker":
            command += ["--pool", "prefork", "--concurrency", "2", "--without-gossip",
                        "--without-mingle", "--hostname", f"test{len(children)}@%h"]
        else:
            command += ["--schedule", str(tmp_path / "celerybeat-schedule"), "--max-interval", "1"]
        command += args  # last, so a test's own options (e.g. "--pool solo") win
        child = run_manage(*command, background=True, env_extra={**celery_env, **env},
                           module="celery")
        children.append(child)
        return child

    yield start
    for child in children:
        child.terminate()
    for child in children:
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
