"""Errors raised by the Autumn client and the sync.

Every error carries a message a person can act on. None of them ever holds the secret key:
Autumn's own 401 messages echo part of the key, so messages from the server pass through
``scrub_secrets`` before they are stored here.
"""

from __future__ import annotations

import re

# A key, whole or partly masked; the bare prefixes (as in help texts) are left alone.
_KEY_PATTERN = re.compile(r"am_sk_(?:test|live)_[\w.*…-]+|am_sk_(?!test_|live_)[\w.*…-]+")


def scrub_secrets(text: str) -> str:
    """Replace anything that looks like an Autumn secret key (even partly masked)."""
    return _KEY_PATTERN.sub("am_sk_***", text)


class AutumnError(Exception):
    """Base class of every error this app raises about Autumn."""

    def __init__(self, message: str) -> None:
        self.message = scrub_secrets(message)
        super().__init__(self.message)

    def __reduce__(self):
        # Pickle by state, not by constructor arguments (subclasses take keyword-only
        # ones): the sync's prefetch process sends its errors to the parent this way.
        return _restore, (type(self), self.args, self.__dict__)


def _restore(cls: type, args: tuple, state: dict) -> Exception:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class AutumnConfigurationError(AutumnError):
    """The app is not set up to talk to Autumn (no key, a malformed key, a bad URL)."""


class AutumnConnectionError(AutumnError):
    """Autumn could not be reached, or did not answer in time, after every retry."""


class AutumnResponseError(AutumnError):
    """Autumn answered with something that is not the JSON this app expects."""


class AutumnAPIError(AutumnError):
    """Autumn answered with an error status.

    ``status`` is the HTTP status, ``code`` Autumn's error code (``"invalid_inputs"``,
    ``"customer_not_found"`` ...) or ``None`` when the body was not Autumn's JSON.
    """

    def __init__(self, message: str, *, status: int, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    def __str__(self) -> str:
        code = f" {self.code}" if self.code else ""
        return f"Autumn answered {self.status}{code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, message={self.message!r})"


class AuthenticationError(AutumnAPIError):
    """401: the secret key is missing or wrong; 403: it lacks a scope."""


class NotFoundError(AutumnAPIError):
    """404: no such customer."""


class InvalidRequestError(AutumnAPIError):
    """400: Autumn rejected the request's inputs."""


class InvalidCursorError(InvalidRequestError):
    """400 ``invalid_cursor``: a stored cursor that Autumn can no longer decode."""


class ConflictError(AutumnAPIError):
    """409: e.g. renaming a customer to an id that is taken."""


class RateLimitError(AutumnAPIError):
    """429 after every retry; ``retry_after`` is Autumn's advice in seconds, if it gave one."""

    def __init__(self, message: str, *, status: int = 429, code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class ServerError(AutumnAPIError):
    """5xx after every retry."""


class SyncAlreadyRunning(AutumnError):
    """Another sync of the same environment holds the lock."""


class StopRequested(KeyboardInterrupt):
    """A stop signal (SIGTERM: ``docker stop``, Kubernetes, systemd) reached a running sync.
    It ends the sync as Ctrl-C does: the page in flight is not kept, the lock is let go and
    the run keeps its resume point."""

    def __init__(self, signal_name: str = "SIGTERM") -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
