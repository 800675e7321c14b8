"""The HTTP client against the real stand-in: typed errors, retries, paging, secrecy."""

from __future__ import annotations

import logging
import socket

import pytest

from autumn_django.client import AutumnClient
from autumn_django.exceptions import (
    AuthenticationError,
    AutumnConfigurationError,
    AutumnConnectionError,
    AutumnResponseError,
    ConflictError,
    InvalidCursorError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    ServerError,
)

from .conftest import TEST_KEY


class Sleeps(list):
    """Records the client's waits instead of sleeping them, so backoff is checked exactly."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def server(make_standin):
    return make_standin(40)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(server, sleeps):
    with AutumnClient(sleep=sleeps) as client:
        yield client


def test_pages_cover_every_customer_once_in_ascending_order(server, client):
    pages = list(client.customers.iter_pages(limit=7))
    seen = [c["id"] or c["email"] for page in pages for c in page.customers]
    expected = [c["id"] or c["email"] for c in server.list_customers()]
    assert seen == expected
    assert len(pages) == 6 and pages[-1].next_position is None
    assert all(body["sort_order"] == "asc" for e, body in server.requests if e == "customers.list")


def test_page_size_is_lowered_to_the_org_maximum_autumn_names(make_standin, sleeps):
    server = make_standin(25, org_max_limit=10)
    with AutumnClient(sleep=sleeps) as client:
        pages = list(client.customers.iter_pages(limit=5000))
    assert [len(p.customers) for p in pages] == [10, 10, 5]
    assert pages[0].limit == 10
    assert sum(len(p.customers) for p in pages) == len(server.list_customers())


def test_errors_are_typed_with_status_and_code(server, client):
    with pytest.raises(NotFoundError) as not_found:
        client.customers.get("nobody_here")
    assert (not_found.value.status, not_found.value.code) == (404, "customer_not_found")
    with pytest.raises(InvalidRequestError) as invalid:
        client.customers.get_or_create("has space", email="a@example.com")
    assert invalid.value.code == "invalid_inputs" and "customer_id" in invalid.value.message
    with pytest.raises(InvalidCursorError):
        client.customers.list(start_cursor="garbage!")
    existing = [c["id"] for c in server.list_customers() if c["id"]]
    with pytest.raises(ConflictError) as conflict:
        client.customers.update(existing[0], new_customer_id=existing[1])
    assert conflict.value.code == "customer_already_exists"


def test_wrong_key_is_an_authentication_error_that_never_shows_the_key(make_standin, caplog):
    make_standin(5, secret_keys={TEST_KEY})
    secret = "am_sk_test_thisIsTheSecretPart0123456789"
    caplog.set_level(logging.DEBUG)
    client = AutumnClient(secret, sleep=Sleeps())
    with pytest.raises(AuthenticationError) as caught:
        client.customers.get("x")
    error = caught.value
    assert error.status == 401 and error.code == "invalid_secret_key"
    for text in (str(error), repr(error), error.message, repr(client), caplog.text):
        assert "thisIsTheSecretPart" not in text and "0123456789" not in text


def test_missing_and_malformed_keys_are_configuration_errors(settings):
    settings.AUTUMN_SECRET_KEY = None
    with pytest.raises(AutumnConfigurationError, match="No Autumn secret key"):
        AutumnClient()
    with pytest.raises(AutumnConfigurationError, match="must start with 'am_sk_test_'"):
        AutumnClient("sk_live_stripe_key_by_mistake")


def test_503_is_retried_until_it_succeeds(server, client, sleeps):
    server.faults.fail_next(2, status=503, retry_after=1)
    customer_id = next(c["id"] for c in server.list_customers() if c["id"])
    assert client.customers.get(customer_id)["id"] == customer_id
    assert len(sleeps) == 2 and all(1 <= s <= 1.3 for s in sleeps)
    assert [e for e, _ in server.requests].count("customers.get") == 3


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_errors_are_retried_with_backoff(server, client, sleeps, status):
    server.faults.fail_next(3, status=status)
    assert client.customers.list(limit=5)["list"]
    assert len(sleeps) == 3
    # Full jitter: each wait lies within its exponential ceiling.
    assert all(0 <= s <= 0.5 * 2 ** i for i, s in enumerate(sleeps))


def test_429_honours_retry_after(server, client, sleeps):
    server.faults.rate_limit_next(1, retry_after=3, kind="text")
    assert client.customers.list(limit=5)["list"]
    assert len(sleeps) == 1 and 3 <= sleeps[0] <= 3.5


def test_json_429_without_retry_after_backs_off(server, client, sleeps):
    server.faults.rate_limit_next(2, kind="json")
    customer_id = next(c["id"] for c in server.list_customers() if c["id"])
    assert client.customers.get(customer_id)["id"] == customer_id
    assert len(sleeps) == 2 and all(s <= 1.0 for s in sleeps)


def test_retries_are_bounded_in_attempts(server, sleeps):
    server.faults.rate_limit_next(10, retry_after=1, kind="text")
    with AutumnClient(max_retries=3, sleep=sleeps) as client, pytest.raises(RateLimitError) as caught:
        client.customers.list(limit=5)
    assert caught.value.retry_after == 1 and len(sleeps) == 3
    assert [e for e, _ in server.requests].count("customers.list") == 4


def test_retries_are_bounded_in_total_time(server, sleeps):
    server.faults.rate_limit_next(1, retry_after=60, kind="text")
    with AutumnClient(retry_max_seconds=10, sleep=sleeps) as client, pytest.raises(RateLimitError):
        client.customers.list(limit=5)
    assert sleeps == [], "a wait that would pass the time budget is not started"


def test_dropped_connection_is_retried(server, client, sleeps):
    server.faults.drop_next(1)
    assert client.customers.list(limit=5)["list"]
    assert len(sleeps) == 1


def test_an_answer_cut_off_half_way_is_retried(server, client, sleeps):
    # The client reads a body after the headers came (``_read_whole``): a connection lost
    # there is a connection error like any other, and the next attempt gets the page.
    server.faults.cut_next(1, endpoint="customers.list")
    assert len(client.customers.list(limit=5)["list"]) == 5
    assert len(sleeps) == 1 and [e for e, _ in server.requests].count("customers.list") == 2


def test_an_answer_cut_off_every_time_ends_in_a_connection_error(server, sleeps):
    server.faults.cut_next(3, endpoint="customers.list")
    with AutumnClient(max_retries=2, sleep=sleeps) as client, pytest.raises(
            AutumnConnectionError, match="closed before the whole answer arrived"):
        client.customers.list(limit=5)
    assert len(sleeps) == 2


def test_timeout_becomes_a_connection_error_after_retries(server, sleeps):
    server.faults.delay(1.0, endpoint="customers.list")
    with AutumnClient(timeout=(1.0, 0.2), max_retries=1, sleep=sleeps) as client, \
            pytest.raises(AutumnConnectionError, match="timed out"):
        client.customers.list(limit=5)
    assert len(sleeps) == 1


@pytest.mark.parametrize("setting", [0.2, [1.0, 0.2]], ids=["one-number", "list"])
def test_the_timeout_setting_takes_every_form_the_check_accepts(server, settings, sleeps, setting):
    """AUTUMN_TIMEOUT = 30 passed the system check, then broke every call (a number was
    turned into a tuple)."""
    settings.AUTUMN_TIMEOUT = setting
    server.faults.delay(1.0, endpoint="customers.list")
    with AutumnClient(max_retries=0, sleep=sleeps) as client, \
            pytest.raises(AutumnConnectionError, match="timed out"):
        client.customers.list(limit=5)


def test_unreachable_autumn_is_a_connection_error(settings, sleeps):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again at once: nothing listens there
    client = AutumnClient(TEST_KEY, api_url=f"http://127.0.0.1:{port}", max_retries=2, sleep=sleeps)
    with client, pytest.raises(AutumnConnectionError, match="connection refused"):
        client.customers.list()
    assert len(sleeps) == 2


def test_500_is_not_retried(server, client, sleeps):
    server.faults.fail_next(1, status=500)
    with pytest.raises(ServerError) as caught:
        client.customers.list(limit=5)
    assert caught.value.status == 500 and sleeps == []


def test_body_that_is_not_json_is_a_response_error(server, client):
    server.faults.malformed_next(1, body=b"<html>maintenance</html>", content_type="text/html")
    with pytest.raises(AutumnResponseError, match=r"not JSON \(text/html\)"):
        client.customers.list(limit=5)


def test_json_of_the_wrong_shape_is_a_response_error(server, client):
    server.faults.malformed_next(1, body=b'{"data": []}', content_type="application/json")
    with pytest.raises(AutumnResponseError, match=r"customers\.list answer is not"):
        client.customers.list(limit=5)


def test_update_merges_metadata_and_returns_the_customer(server, client):
    customer_id = next(c["id"] for c in server.list_customers() if c["id"])
    client.customers.update(customer_id, metadata={"a": 1, "b": 2})
    updated = client.customers.update(customer_id, metadata={"b": None}, name="New Name")
    assert updated["metadata"].get("a") == 1 and "b" not in updated["metadata"]
    assert updated["name"] == "New Name"
