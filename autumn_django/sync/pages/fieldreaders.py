"""Reading one field of an Autumn object for ``records``: each reader checks the type and
raises ``_FieldError`` naming the field relative to the object it was read from (``records``
prefixes the object's place). Absent and null are the same to every reader.
"""

from __future__ import annotations

from typing import Any

from .timeforms import MsConverter

# Autumn's ``scope`` of a subscription or purchase (absent or null: the customer's own).
SCOPES = ("customer", "entity")


class _FieldError(ValueError):
    """A bad field of ``item`` (the customer, or one of its rows), named relative to it."""

    def __init__(self, item: Any, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}" if name else problem)
        self.item, self.name, self.problem = item, name, problem

    def within(self, place: str) -> _FieldError:
        return _FieldError(None, f"{place}.{self.name}" if self.name else place, self.problem)


def _object(item: Any) -> dict:
    if not isinstance(item, dict):
        raise _FieldError(item, "", f"expected an object, got {type(item).__name__}")
    return item


def _list(data: dict, name: str) -> list:
    value = data.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _FieldError(data, name, f"expected a list, got {type(value).__name__}")
    return value


def _mapping(data: dict, name: str) -> dict:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _FieldError(data, name, f"expected an object, got {type(value).__name__}")
    return value


def _text(obj: dict, name: str, *, required: bool = False, limit: int | None = None) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise _FieldError(obj, name, "missing")
        return None
    if not isinstance(value, str):
        raise _FieldError(obj, name, f"expected a string, got {value!r:.40}")
    if limit is not None and len(value) > limit:
        raise _FieldError(obj, name, f"longer than {limit} characters")
    return value


def _flag(obj: dict, name: str) -> bool:
    value = obj.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _FieldError(obj, name, f"expected true or false, got {value!r:.40}")
    return value


def _scope(obj: dict) -> str:
    # Autumn sends "customer" or "entity" at 2.3; older answers leave it out.
    value = obj.get("scope")
    if value is None:
        return "customer"
    if value not in SCOPES:  # also a non-string: "in" compares, never hashes
        raise _FieldError(obj, "scope", f'expected "customer" or "entity", got {value!r:.40}')
    return value


def _number(obj: dict, name: str) -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _FieldError(obj, name, f"expected a number, got {value!r:.40}")
    return float(value)


def _integer(obj: dict, name: str) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _FieldError(obj, name, f"expected a whole number, got {value!r:.40}")
    return value


def _time(obj: dict, name: str, to_time: MsConverter, *, required: bool = False) -> Any:
    """Autumn's times are epoch milliseconds."""
    value = obj.get(name)
    if value is None:
        if required:
            raise _FieldError(obj, name, "missing")
        return None
    if type(value) is int or isinstance(value, float):
        try:
            return to_time(value)
        except (OverflowError, ValueError):
            raise _FieldError(obj, name, f"{value} is not a usable time") from None
    raise _FieldError(obj, name, f"expected epoch milliseconds, got {value!r:.40}")
