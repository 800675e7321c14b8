"""JSON decoding and encoding in one place, using orjson when it is installed.

orjson parses Autumn's pages about 1.5x faster than the standard library (measured in the
design notes), which matters to a sync of 100,000 customers; it stays optional so that the
app's hard dependencies remain Django, DRF, requests and Celery.
"""

from __future__ import annotations

import json
from typing import Any

try:  # pragma: no cover - which branch runs depends on the environment
    import orjson
except ImportError:  # pragma: no cover
    orjson = None


def loads(data: bytes | str) -> Any:
    if orjson is not None:
        return orjson.loads(data)
    return json.loads(data)


def dumps(value: Any) -> str:
    """Compact JSON text with keys sorted, so equal objects give equal text."""
    return dumps_sorted_bytes(value).decode()


def dumps_sorted_bytes(value: Any) -> bytes:
    """``dumps`` as UTF-8 bytes: what a hash needs, without a round trip through str."""
    if orjson is not None:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def dumps_bytes(value: Any) -> bytes:
    if orjson is not None:
        return orjson.dumps(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
