"""Model fields of the mirror."""

from __future__ import annotations

import functools
from typing import Any

from django.db import models
from django.db.models.fields.json import KeyTransform


class RawJSONField(models.JSONField):
    """JSON kept as received. On PostgreSQL the column is ``json`` (checked text), not
    ``jsonb`` (parsed into a binary tree): parsing a 2-3 KB customer into jsonb cost the
    server ~128 µs, a third of a first sync's time on PostgreSQL (20,000 customers: 7.2 s
    with jsonb, 5.3 s with json; see benchmarks/). Queries read the column as jsonb when
    they need it, so lookups (``raw__metadata__tier="gold"``, ``raw__has_key``,
    ``raw__contains``) work as on any JSONField. Other databases store text either way;
    SQLite's without a JSON_VALID check (see ``db_check``)."""

    def db_type(self, connection) -> str:
        if connection.vendor == "postgresql":
            return "json"
        return super().db_type(connection)

    def db_check(self, connection) -> str | None:
        # SQLite's JSON_VALID check re-parses every value written, ~10 µs for a 2 KB
        # customer: 11-16% of the inserts of a first sync (raw sqlite3, 20,000 customers).
        # What this field stores was encoded by this app's own JSON encoder.
        if connection.vendor == "sqlite":
            return None
        return super().db_check(connection)

    def from_db_value(self, value: Any, expression: Any, connection) -> Any:
        # Django has psycopg return jsonb as text for JSONField to decode; json columns
        # arrive already decoded.
        if isinstance(value, (dict, list)):
            return value
        return super().from_db_value(value, expression, connection)

    def get_transform(self, name: str):
        transform = super().get_transform(name)
        if transform is not None and not isinstance(transform, type):
            return _JsonbKeyTransformFactory(name)  # a key, not a registered transform
        return transform

    def get_lookup(self, lookup_name: str):
        lookup = super().get_lookup(lookup_name)
        return _as_jsonb_lookup(lookup) if lookup is not None else None


def _jsonb(sql: str, connection) -> str:
    return f"({sql})::jsonb" if connection.vendor == "postgresql" else sql


class _JsonbKeyTransform(KeyTransform):
    def preprocess_lhs(self, compiler, connection):
        lhs, params, keys = super().preprocess_lhs(compiler, connection)
        return _jsonb(lhs, connection), params, keys


class _JsonbKeyTransformFactory:
    def __init__(self, key_name: str) -> None:
        self.key_name = key_name

    def __call__(self, *args: Any, **kwargs: Any) -> _JsonbKeyTransform:
        return _JsonbKeyTransform(self.key_name, *args, **kwargs)


@functools.cache
def _as_jsonb_lookup(lookup_class: type) -> type:
    """The lookup with its left-hand side (the column) read as jsonb on PostgreSQL."""

    class JsonbLookup(lookup_class):
        def process_lhs(self, compiler, connection, lhs=None):
            sql, params = super().process_lhs(compiler, connection, lhs)
            return _jsonb(sql, connection), params

    JsonbLookup.__name__ = lookup_class.__name__
    return JsonbLookup
