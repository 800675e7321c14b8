"""The one module that speaks HTTP to Autumn.

``AutumnClient`` keeps one ``requests.Session`` (connections are reused), sends
``x-api-version: 2.3``, retries what is worth retrying (429 honouring ``Retry-After``,
502/503/504, dropped connections and timeouts) with exponential backoff and full jitter,
bounded both in attempts and in total seconds, and turns every failure into a typed
``AutumnError``. The secret key lives only in the session's headers: it is never part of a
repr, an exception or a log line.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple, Protocol

import requests

from . import __version__, jsonlib
from .conf import autumn_settings, configured_envs, env_for_key, project_env, secret_key_for
from .exceptions import (
    AuthenticationError,
    AutumnAPIError,
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
from .listing import ListCrawl, ListPosition, Window, crawl_key, created_at_ms

logger = logging.getLogger(__name__)

API_VERSION = "2.3"
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0

_ERROR_CLASSES: dict[int, type[AutumnAPIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitError,
}


class PagedCrawl(Protocol):
    """A cursor crawl of a list endpoint (``listing.ListCrawl``, ``entity_listing.EntityCrawl``)."""

    limit: int

    def request(self) -> dict[str, Any]:
        """The body of the next request."""

    def lower_limit(self, message: str) -> int | None:
        """The org's maximum page size named by a 400's ``message``, if below the limit asked
        (the crawl then asks for it); None: the 400 is not about the limit."""


@dataclass
class ListPage:
    """A decoded page of ``customers.list`` (``customers.iter_pages``)."""

    customers: list[Any]
    position: ListPosition
    next_position: ListPosition | None  # None: this was the last page
    limit: int
    warnings: list[str] = field(default_factory=list)
    # When the request that returned this page was sent (UTC): what the page says was true
    # then or later. None only for a page built by hand.
    requested_at: datetime | None = None


class CustomerRead(NamedTuple):
    """A customer as one call answered it, and when that call's request was sent (UTC).

    Autumn has no version or ``updated_at`` on a customer: the time a client asked is all
    it can know of how fresh an answer is, and the mirror never lets data read earlier
    overwrite data read later."""

    customer: dict[str, Any]
    read_at: datetime


class AutumnClient:
    """A client for Autumn's customers API (``client.customers``), entities
    (``client.entities``) and catalogue (``client.features``, ``client.plans``).

    Arguments left out come from the ``AUTUMN_*`` settings. Without ``secret_key``, the key
    is ``env``'s ("sandbox" or "live"; default ``AUTUMN_ENV``): ``AUTUMN_SECRET_KEYS[env]``,
    or ``AUTUMN_SECRET_KEY`` when it is of that env. Use as a context manager, or call
    ``close()``, to release pooled connections.
    """

    def __init__(
        self,
        secret_key: str | None = None,
        *,
        env: str | None = None,
        api_url: str | None = None,
        timeout: tuple[float, float] | float | None = None,
        max_retries: int | None = None,
        retry_max_seconds: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not secret_key:
            secret_key = _configured_key(env)
        try:
            self.env = env_for_key(secret_key)
        except Exception as exc:
            raise AutumnConfigurationError(str(exc)) from None
        if env is not None and env != self.env:
            raise AutumnConfigurationError(
                f"The secret key given for the {env} environment is a {self.env} key "
                f"({'am_sk_live_' if env == 'live' else 'am_sk_test_'}... is {env}'s prefix)."
            )
        self.api_url = (api_url or autumn_settings.API_URL).rstrip("/")
        if timeout is None:
            timeout = autumn_settings.TIMEOUT
        # requests takes a number or a (connect, read) tuple; a list from settings is a pair.
        self.timeout = tuple(timeout) if isinstance(timeout, list) else timeout
        self.max_retries = max_retries if max_retries is not None else autumn_settings.MAX_RETRIES
        self.retry_max_seconds = (
            retry_max_seconds if retry_max_seconds is not None else autumn_settings.RETRY_MAX_SECONDS
        )
        self._sleep = sleep
        self._gate = RateGate.of(self.api_url, self.env)
        self._own_pause = 0.0  # the end of the last pause this client set (it sleeps that out itself)
        self._secret_key = secret_key  # for arguments(); never shown (see __repr__)
        self._session = requests.Session()
        self._session.headers.update(
            {
                "Authorization": f"Bearer {secret_key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "x-api-version": API_VERSION,
                "User-Agent": f"autumn-django/{__version__} {requests.utils.default_user_agent()}",
            }
        )
        self.customers = CustomersAPI(self)
        # Entities and the catalogue live in resources.py, which builds on this module.
        from .resources import EntitiesAPI, FeaturesAPI, PlansAPI

        self.entities = EntitiesAPI(self)
        self.features = FeaturesAPI(self)
        self.plans = PlansAPI(self)

    def __repr__(self) -> str:
        return f"<AutumnClient env={self.env} api_url={self.api_url!r}>"

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments that build an equal client (in another process). They
        hold the secret key: pass them over a private channel, never a command line."""
        return {"secret_key": self._secret_key, "api_url": self.api_url, "timeout": self.timeout,
                "max_retries": self.max_retries, "retry_max_seconds": self.retry_max_seconds}

    def __enter__(self) -> AutumnClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def post(self, endpoint: str, body: dict[str, Any]) -> Any:
        """POST ``body`` to ``/v1/<endpoint>`` and return the decoded JSON answer."""
        return decode_answer(self.post_for_response(endpoint, body), endpoint)

    def page_for_response(self, endpoint: str, crawl: PagedCrawl) -> requests.Response:
        """The answer to ``crawl``'s next request to the list ``endpoint``, undecoded. A
        limit above the org's maximum (Autumn's 400 names it) is lowered and asked again."""
        while True:
            body = crawl.request()
            try:
                return self.post_for_response(endpoint, body)
            except InvalidRequestError as exc:
                if crawl.lower_limit(exc.message) is None:
                    raise
                logger.warning("Page size %d is above this org's maximum; using %d",
                               body["limit"], crawl.limit)

    def post_for_response(self, endpoint: str, body: dict[str, Any]) -> requests.Response:
        """POST ``body`` to ``/v1/<endpoint>``, retrying what is worth it; the successful
        response, its body not yet decoded (``decode_answer``). Its ``requested_at`` is
        when the attempt that got it was sent (an aware UTC datetime)."""
        url = f"{self.api_url}/v1/{endpoint}"
        payload = jsonlib.dumps_bytes(body)
        deadline = time.monotonic() + self.retry_max_seconds
        attempt = 0
        while True:
            attempt += 1
            self._gate.wait(self._sleep, self._own_pause)
            started = time.monotonic()
            requested_at = datetime.now(timezone.utc)
            try:
                response = self._session.post(url, data=payload, timeout=self.timeout, stream=True)
                _read_whole(response)
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                error: Exception = AutumnConnectionError(
                    f"Could not reach Autumn at {self.api_url} ({endpoint}): {_describe(exc)}"
                )
                retry_after = None
            except requests.RequestException as exc:  # bad URL and the like: retrying won't help
                raise AutumnConfigurationError(
                    f"Cannot send a request to {self.api_url!r}: {_describe(exc)}. Check AUTUMN_API_URL."
                ) from None
            else:
                logger.debug("%s -> %s in %.0f ms", endpoint, response.status_code,
                             (time.monotonic() - started) * 1000)
                if response.status_code < 400:
                    response.requested_at = requested_at
                    return response
                error = _api_error(response, endpoint)
                if response.status_code not in RETRYABLE_STATUSES:
                    raise error
                retry_after = _retry_after(response)
                if retry_after is not None and response.status_code == 429:
                    self._own_pause = self._gate.pause(retry_after)
            wait = _backoff(attempt, retry_after)
            if attempt > self.max_retries or time.monotonic() + wait > deadline:
                raise error
            logger.warning("Autumn %s failed (%s); retry %d in %.1f s", endpoint, error, attempt, wait)
            self._sleep(wait)


class RateGate:
    """One pause for every request of an org and env in this process: when Autumn answers
    one with 429 and ``Retry-After``, the others (a partitioned crawl's windows, on their
    own threads and sessions) wait it out too, instead of each spending a request to learn
    the same. Autumn's budget is per org and env (autumn-api.md, "Errors")."""

    _gates: dict[tuple[str, str], RateGate] = {}
    _gates_lock = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0  # time.monotonic() before which nothing is sent

    @classmethod
    def of(cls, api_url: str, env: str) -> RateGate:
        with cls._gates_lock:
            return cls._gates.setdefault((api_url, env), cls())

    def pause(self, seconds: float) -> float:
        """Pause every request for ``seconds``; returns when the pause ends."""
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)
            return self._until

    def wait(self, sleep: Callable[[float], None], own_pause: float = 0.0) -> None:
        """Wait out a pause another client learnt; not one this client set itself
        (``own_pause``: it waits that out in its own backoff)."""
        with self._lock:
            until = self._until
        if until > own_pause and (left := until - time.monotonic()) > 0:
            sleep(left)


def _configured_key(env: str | None) -> str:
    """The configured key of ``env`` (default ``AUTUMN_ENV``), or an actionable error."""
    if env is None and not configured_envs() and not autumn_settings.SECRET_KEY:
        raise AutumnConfigurationError(
            "No Autumn secret key: set AUTUMN_SECRET_KEY in your Django settings or environment."
        )
    try:
        env = env or project_env()
    except Exception as exc:  # AUTUMN_ENV is neither "sandbox" nor "live"
        raise AutumnConfigurationError(str(exc)) from None
    if env not in ("sandbox", "live"):
        raise AutumnConfigurationError(f"Unknown Autumn environment {env!r}: 'sandbox' or 'live'.")
    key = secret_key_for(env)
    if key:
        return key
    single = autumn_settings.SECRET_KEY
    if single and not configured_envs():  # a key of no known env: env_for_key says so
        return single
    raise AutumnConfigurationError(
        f"No Autumn secret key for the {env} environment: set AUTUMN_SECRET_KEYS = "
        f"{{'{env}': '{'am_sk_live_' if env == 'live' else 'am_sk_test_'}...'}} (or an "
        f"AUTUMN_SECRET_KEY of that environment)."
    )


class CustomersAPI:
    """``client.customers``: the four customer endpoints."""

    def __init__(self, client: AutumnClient) -> None:
        self._client = client

    def list(self, *, start_cursor: str = "", limit: int | None = None,
             sort_order: str = "asc", **filters: Any) -> dict[str, Any]:
        """One page of ``customers.list``: ``{"list": [...], "next_cursor": str | None}``."""
        return list_answer(self._list(start_cursor=start_cursor, limit=limit, sort_order=sort_order,
                                       **filters))

    def _list(self, *, start_cursor: str, limit: int | None, sort_order: str = "asc",
              **filters: Any) -> requests.Response:
        body = {"start_cursor": start_cursor, "sort_order": sort_order, **filters}
        if limit is not None:
            body["limit"] = limit
        return self._client.post_for_response("customers.list", body)

    def iter_pages(self, *, limit: int | None = None, position: ListPosition | None = None,
                   window: Window | None = None, **filters: Any) -> Iterator[ListPage]:
        """Crawl every customer in ascending ``(created_at, id)`` order, page by page, by the
        rules of ``listing.ListCrawl`` (the org's maximum page size, the null-cursor defect).
        With ``window``, only customers created within its bounds (``created_at_range``,
        inclusive epoch ms), read anew before each request."""
        crawl = ListCrawl(limit or autumn_settings.SYNC_PAGE_SIZE, position or ListPosition(), window,
                          filters)
        while not crawl.done:
            response = self.page_response(crawl)
            answer = list_answer(response)
            rows = answer["list"]
            step = crawl.advance(answer["next_cursor"],
                                 [(crawl_key(row, n), created_at_ms(row)) for n, row in enumerate(rows)])
            warnings = [] if step.stuck_at is None else self.crowding_warnings(step.stuck_at, crawl.limit,
                                                                               filters)
            yield ListPage(step.kept(rows), step.position, step.next_position, crawl.limit, warnings,
                           response.requested_at)

    def page_response(self, crawl: ListCrawl) -> requests.Response:
        """The answer to ``crawl``'s next request, undecoded: the caller decodes it and tells
        the crawl where it leads (``AutumnClient.page_for_response``)."""
        return self._client.page_for_response("customers.list", crawl)

    def crowding_warnings(self, created_at: int, limit: int, filters: dict[str, Any]) -> list[str]:
        """The crawl had to step past ``created_at`` from a full page of customers created
        then (ending on one without an id). Customers were missed only if more than
        ``limit`` share that instant: one request for ``limit + 1`` of them says whether."""
        crowded_range = {**filters.get("created_at_range", {}), "start": created_at, "end": created_at}
        try:
            crowd = len(self.list(limit=limit + 1, created_at_range=crowded_range)["list"])
        except InvalidRequestError:  # limit + 1 is above the org's maximum: cannot tell
            crowd = None
        if crowd is not None and crowd <= limit:
            return []  # the page held every one of them
        return [f"More than {limit} customers share created_at={created_at} and the page ended "
                "on one without an id; some of them may have been missed. Re-run with a larger page size."]

    def get(self, customer_id: str, *, expand: list[str] | None = None) -> dict[str, Any]:
        return self.get_read(customer_id, expand=expand).customer

    def get_read(self, customer_id: str, *, expand: list[str] | None = None) -> CustomerRead:
        """``get``, with when its request was sent."""
        body: dict[str, Any] = {"customer_id": customer_id}
        if expand:
            body["expand"] = list(expand)
        return self._customer_read("customers.get", body)

    def get_or_create(self, customer_id: str | None, *, expand: list[str] | None = None,
                      **fields: Any) -> dict[str, Any]:
        """Fetch the customer, creating it if needed. An existing customer is returned as it
        is: name and email given here are not applied to it (use ``update``)."""
        return self.get_or_create_read(customer_id, expand=expand, **fields).customer

    def get_or_create_read(self, customer_id: str | None, *, expand: list[str] | None = None,
                           **fields: Any) -> CustomerRead:
        """``get_or_create``, with when its request was sent."""
        body: dict[str, Any] = {"customer_id": customer_id, **fields}
        if expand:
            body["expand"] = list(expand)
        return self._customer_read("customers.get_or_create", body)

    def update(self, customer_id: str, **fields: Any) -> dict[str, Any]:
        return self.update_read(customer_id, **fields).customer

    def update_read(self, customer_id: str, **fields: Any) -> CustomerRead:
        """``update``, with when its request was sent."""
        return self._customer_read("customers.update", {"customer_id": customer_id, **fields})

    def _customer_read(self, endpoint: str, body: dict[str, Any]) -> CustomerRead:
        response = self._client.post_for_response(endpoint, body)
        return CustomerRead(_customer(decode_answer(response, endpoint), endpoint), response.requested_at)


def list_answer(response: requests.Response) -> dict[str, Any]:
    page = decode_answer(response, "customers.list")
    if (not isinstance(page, dict) or not isinstance(page.get("list"), list)
            or not isinstance(page.get("next_cursor"), (str, type(None)))):
        raise AutumnResponseError(
            "Autumn's customers.list answer is not {list: [...], next_cursor: ...}: "
            f"{_preview(page)}"
        )
    return page


def _customer(value: Any, endpoint: str) -> dict[str, Any]:
    if not isinstance(value, dict) or "id" not in value:
        raise AutumnResponseError(f"Autumn's {endpoint} answer is not a customer: {_preview(value)}")
    return value


def decode_answer(response: requests.Response, endpoint: str) -> Any:
    try:
        return jsonlib.loads(response.content)
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        raise AutumnResponseError(
            f"Autumn answered {endpoint} with {response.status_code} but the body is not JSON "
            f"({kind}): {_preview(response.text)}"
        ) from None


def _api_error(response: requests.Response, endpoint: str) -> AutumnAPIError:
    status = response.status_code
    code = message = None
    try:
        body = jsonlib.loads(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = body.get("code") if isinstance(body.get("code"), str) else None
        message = body.get("message") if isinstance(body.get("message"), str) else None
    if message is None:
        message = response.text.strip()[:200] or response.reason or "no details"
    message = f"{message} ({endpoint})"
    if status == 400 and code == "invalid_cursor":
        return InvalidCursorError(message, status=status, code=code)
    if status == 429:
        return RateLimitError(message, code=code, retry_after=_retry_after(response))
    cls = _ERROR_CLASSES.get(status, ServerError if status >= 500 else AutumnAPIError)
    return cls(message, status=status, code=code)


def _read_whole(response: requests.Response) -> None:
    """Read the body, as ``response.content`` then gives it, in as few reads as the
    server's framing allows. requests reads a body 10 KiB at a time through Python: a
    3 MB page of 1,000 customers took 11.2 ms of CPU to read, 3.0 ms this way. Errors
    while reading are requests' own, as without ``stream=True``; ``_content`` is where
    requests keeps a body it has read."""
    try:
        response._content = b"".join(response.iter_content(chunk_size=None))
    except BaseException:
        response.close()  # its connection goes, not back to the pool half-read
        raise


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare enough to fall back to backoff


def _backoff(attempt: int, retry_after: float | None) -> float:
    """Seconds to wait before retry ``attempt``: Autumn's advice plus a little jitter, or
    exponential backoff with full jitter (so that many workers do not retry in step)."""
    if retry_after is not None:
        return retry_after + random.uniform(0, 0.1 + retry_after * 0.1)
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)))


def _describe(exc: BaseException) -> str:
    """A short reason; requests' own messages are long and mostly pool internals."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):  # its text is urllib3's internals
        return "the connection closed before the whole answer arrived"
    text = str(exc)
    for needle, reason in (("refused", "connection refused"),
                           ("Name or service not known", "host name not found"),
                           ("name resolution", "host name not found"),
                           ("RemoteDisconnected", "connection closed without an answer"),
                           ("reset by peer", "connection reset")):
        if needle in text:
            return reason
    return type(exc).__name__


def _preview(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text[:200] + ("…" if len(text) > 200 else "")
