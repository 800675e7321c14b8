"""The stand-in's answers to armed faults (``faults.py``) and its rate-limit replies: the
bodies and headers the real API and the proxies in front of it send."""

from __future__ import annotations

import math

from .endpoints import Reply, error_reply
from .faults import Fault

# ratelimit-limit header values per endpoint (the real per-second limits).
RATE_LIMITS = {"customers.list": 50, "entities.list": 50, "customers.update": 25}
# One rate bucket per org and env for these, as on Autumn (autumn-api.md, "Errors").
LIST_BUCKET = frozenset({"customers.list", "entities.list"})
TEXT_429 = b"Too many requests, please try again later."
PROXY_BODIES = {502: b"502 Bad Gateway", 504: b"504 Gateway Timeout"}
FAULT_CODES = {
    400: "invalid_request", 401: "invalid_secret_key", 403: "insufficient_scopes",
    404: "customer_not_found", 409: "customer_already_exists", 429: "rate_limit_exceeded",
}  # fmt: skip


def text_429(endpoint: str, retry_after: int) -> Reply:
    """The main limiter's 429: a text/plain body with ``retry-after`` and ``ratelimit-*``."""
    ra = str(math.ceil(retry_after))
    limit = str(RATE_LIMITS.get(endpoint, 1000))
    return Reply(
        429, TEXT_429, "text/plain; charset=utf-8",
        {"retry-after": ra, "ratelimit-limit": limit, "ratelimit-remaining": "0",
         "ratelimit-reset": ra},
    )  # fmt: skip


def fault_reply(fault: Fault, endpoint: str, env: str) -> Reply | None:
    """What the stand-in answers for an armed ``fault`` (None: drop the connection)."""
    if fault.kind == "drop":
        return None
    if fault.kind == "cut":  # larger than a socket write, so the client has begun reading it
        return Reply(200, b'{"list":[' + b" " * 200_000 + b'],"next_cursor":null}', cut=True)
    if fault.kind == "malformed":
        return Reply(fault.status, fault.body, fault.content_type)
    if fault.kind == "rate_limit":
        if fault.rate_kind == "json":
            return error_reply(
                429, "rate_limit_exceeded", "Rate limit exceeded, please try again later", env
            )
        return text_429(endpoint, fault.retry_after)
    status = fault.status
    if status in PROXY_BODIES:
        return Reply(status, PROXY_BODIES[status], "text/plain; charset=utf-8")
    if status == 503:
        return error_reply(
            503, "service_unavailable", "Service temporarily unavailable", env,
            **{"Retry-After": str(fault.retry_after)},
        )  # fmt: skip
    code = FAULT_CODES.get(status, "internal_error")
    if status == 404 and endpoint.startswith("entities."):
        code = "entity_not_found"
    return error_reply(status, code, f"Injected {status} error", env)
