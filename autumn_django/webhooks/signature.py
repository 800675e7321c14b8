"""Svix's webhook signature scheme, with the standard library only.

Svix signs ``"{svix-id}.{svix-timestamp}.{body}"`` with HMAC-SHA256, keyed by the
base64-decoded part of the endpoint secret after ``whsec_``, and sends the base64 digest in
``svix-signature`` as space-separated ``v1,<signature>`` entries (more than one while a
secret is being rotated). ``svix-timestamp`` is in Unix seconds; a delivery too far from
now, either way, is refused so that a captured request cannot be replayed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

SECRET_PREFIX = "whsec_"  # noqa: S105  (a prefix, not a secret)


class SignatureError(Exception):
    """The request is not a genuine, current Svix delivery. The message says why and never
    holds the secret or a signature."""


class SecretError(ValueError):
    """The configured secret is not a Svix secret (the message never holds it)."""


@dataclass(frozen=True)
class VerifiedDelivery:
    svix_id: str
    timestamp: int


def secret_bytes(secret: str) -> bytes:
    """The HMAC key a ``whsec_...`` secret stands for."""
    encoded = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SecretError("the webhook secret is not valid base64 after 'whsec_'") from None
    if not key:
        raise SecretError("the webhook secret is empty")
    return key


def sign(secret: str, svix_id: str, timestamp: int, body: bytes) -> str:
    """The ``svix-signature`` entry Svix would send for this delivery (``v1,<base64>``).
    For tests and local tools that post signed webhooks."""
    signed = f"{svix_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, tolerance: float,
           now: float | None = None) -> VerifiedDelivery:
    """Check a delivery's headers and body against ``secret``; raise ``SignatureError``
    unless it is signed with it and its timestamp is within ``tolerance`` seconds of now.

    ``headers`` is looked up case-insensitively by the caller (Django's ``request.headers``).
    Raises ``SecretError`` when the secret itself is malformed.
    """
    svix_id = headers.get("svix-id") or ""
    timestamp_text = headers.get("svix-timestamp") or ""
    signatures = headers.get("svix-signature") or ""
    if not (svix_id and timestamp_text and signatures):
        raise SignatureError("missing svix-id, svix-timestamp or svix-signature header")
    try:
        timestamp = int(timestamp_text)
    except ValueError:
        raise SignatureError("svix-timestamp is not a number of seconds") from None
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise SignatureError("svix-timestamp is outside the accepted window")
    expected = sign(secret, svix_id, timestamp, body).encode("ascii")
    # Whole entries are compared, in constant time: "v1," included, so entries of other
    # schemes (Svix's asymmetric "v1a") simply never match.
    for entry in signatures.split():
        if hmac.compare_digest(entry.encode("ascii", "replace"), expected):
            return VerifiedDelivery(svix_id, timestamp)
    raise SignatureError("no valid v1 signature")
