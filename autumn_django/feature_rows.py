"""The query behind a feature check: a customer or an entity joined to its balances for
the feature and for the credit systems that list it, to its flag for the feature, and to
the org's catalogue (``Feature`` rows), in one statement, compiled once per kind of
subject, env, feature and entity id (``fetch``). ``autumn_django.features`` decides from
the rows."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.db import connections, models
from django.db.models import (
    Case,
    Exists,
    F,
    FilteredRelation,
    Func,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)

from . import jsonlib
from .models import Customer, Entity, Feature

CREDIT_SYSTEM = Feature.Type.CREDIT_SYSTEM.value


class _RawMember(Func):
    """One top-level member of a stored answer's ``raw`` as JSON text: the database picks it
    out of the stored JSON, so only that member crosses the wire and is decoded here."""

    output_field = models.TextField()

    def __init__(self, member: str, raw: str = "raw") -> None:
        super().__init__(F(raw))
        self.member = member

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list]:
        raw, params = compiler.compile(self.source_expressions[0])
        if connection.vendor == "postgresql":  # raw is json there: no cast to jsonb needed
            return f"(({raw}) -> %s)::text", [*params, self.member]
        return f"JSON_EXTRACT({raw}, %s)", [*params, f"$.{self.member}"]


class _SchemaLists(Func):
    """True when a feature's ``credit_schema`` has an entry for ``feature_id``."""

    output_field = models.BooleanField()

    def __init__(self, feature_id: str) -> None:
        super().__init__(F("credit_schema"))
        self.feature_id = feature_id

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list]:
        schema, params = compiler.compile(self.source_expressions[0])
        if connection.vendor == "postgresql":  # jsonb containment: an entry with that member
            entry = jsonlib.dumps([{"metered_feature_id": self.feature_id}])
            return f"({schema} @> %s::jsonb)", [*params, entry]
        # SQLite: one of the schema's entries names it. Only the compiled column is put in
        # the text; the feature id is a parameter.
        sql = (f"EXISTS (SELECT 1 FROM json_each({schema}) AS schema_item "  # noqa: S608
               "WHERE json_extract(schema_item.value, '$.metered_feature_id') = %s)")
        return sql, [*params, self.feature_id]


# A credit system archived sorts after the others, as the server's sortFeatures.ts orders
# ctx.features (which features.list returns too); otherwise in features.list's order.
_ARCHIVED_RANK = 1 << 48


@dataclass(frozen=True)
class Kind:
    """Where a check's subject is read from: the model the query starts at, the path from
    it to the balances' and flags' owner, and where the owning customer's columns are."""

    model: type[models.Model]
    owner: str  # "" (the model's own rows) or the FilteredRelation that is the entity
    customer: str  # the path to the customer's columns ("" for the model itself)
    parent_raw: str | None  # whose billing controls an entity inherits, None for a customer

    def rows(self, env: str, feature_id: str, entity_id: str | None) -> QuerySet:
        return _rows_query(self, env, feature_id, entity_id)


CUSTOMER = Kind(Customer, owner="", customer="", parent_raw=None)
CUSTOMER_ENTITY = Kind(Customer, owner="ent", customer="", parent_raw="raw")
ENTITY = Kind(Entity, owner="", customer="customer", parent_raw="customer__raw")


@functools.lru_cache(maxsize=1024)
def _rows_query(kind: Kind, env: str, feature_id: str, entity_id: str | None) -> QuerySet:
    """The check's query but for the subject, built once per kind, env, feature (and entity
    id): building it (the joins, the annotations) costs the ORM more than running it."""
    query = kind.model._default_manager.all()
    if kind.model is Customer:
        query = query.filter(env=env)
    if kind.owner:
        query = query.annotate(**{kind.owner: FilteredRelation(
            "entities", condition=Q(entities__autumn_id=entity_id))})
    at = f"{kind.owner}__" if kind.owner else ""
    of_customer = f"{kind.customer}__" if kind.customer else ""
    catalogue = Feature.objects.filter(env=env, deleted_at__isnull=True)
    members_of = (catalogue.filter(type=CREDIT_SYSTEM).filter(_SchemaLists(feature_id))
                  .exclude(feature_id=feature_id).values("feature_id"))
    balances, flags = f"{at}balances", f"{at}flags"
    held = catalogue.filter(feature_id=OuterRef("bal__feature_id"), type=CREDIT_SYSTEM)
    has_balance = Q(bal__isnull=False)
    raw = f"{at}raw"
    fields: dict[str, Any] = {
        "c_deleted": F(f"{of_customer}deleted_at"), "c_id": F(f"{of_customer}autumn_id"),
        "b_feature": F("bal__feature_id"), "b_unlimited": F("bal__unlimited"), "b_granted": F("bal__granted"),
        "b_remaining": F("bal__remaining"), "b_overage_allowed": F("bal__overage_allowed"),
        "b_next_reset_at": F("bal__next_reset_at"), "b_breakdown": F("bal__breakdown"),
        "f_pk": F("flg__pk"), "f_expires": F("flg__expires_at"),
        "controls": Case(When(has_balance, then=_RawMember("billing_controls", raw)), default=None),
        "plans": Case(When(has_balance, then=_RawMember("subscriptions", raw)), default=None),
        # The credit system a balance is of, if it is one: its schema and its catalogue rank.
        "cs_schema": Subquery(held.values("credit_schema")[:1]),
        "cs_rank": Subquery(held.annotate(rank=Case(
            When(archived=True, then=F("position") + Value(_ARCHIVED_RANK)), default=F("position"),
            output_field=models.BigIntegerField())).values("rank")[:1]),
        "known": Exists(catalogue.filter(feature_id=feature_id)),
        "catalogued": Exists(catalogue),
    }
    if kind.parent_raw is not None:
        inherited = _RawMember("billing_controls", kind.parent_raw)
        fields["parent_controls"] = Case(When(has_balance, then=inherited), default=None)
        fields["e_pk"], fields["e_deleted"] = F(f"{at}pk"), F(f"{at}deleted_at")
    return query.annotate(
        bal=FilteredRelation(balances, condition=Q(**{f"{balances}__feature_id": feature_id})
                             | Q(**{f"{balances}__feature_id__in": Subquery(members_of)})),
        flg=FilteredRelation(flags, condition=Q(**{f"{flags}__feature_id": feature_id})),
    ).values(**fields)


class _Plan(NamedTuple):
    """A check's query compiled once: its SQL and parameters, which parameter holds the
    subject's key (the last), and what turns the columns into Python values."""

    sql: str
    params: tuple
    slot: int
    names: tuple[str, ...]
    columns: tuple[Any, ...]  # the select expressions, for their converters


_PLANS: dict[tuple, _Plan] = {}
_MAX_PLANS = 1024


def fetch(kind: Kind, env: str, feature_id: str, entity_id: str | None,
          lookup: dict[str, Any]) -> list[dict[str, Any]]:
    """The subject's rows (``kind.rows(...).filter(**lookup)``: ``lookup`` is ``{"pk": ...}``
    or ``{"owner": ...}``) as dicts, compiling the SQL once per query and kind of key:
    compiling (the joins, the subqueries of the catalogue) costs the ORM about three times
    what running the query does. The key's value is the plan's last parameter; should the
    compiled query ever not end with it, the ORM runs the query as usual."""
    ((name, value),) = lookup.items()
    rows = kind.rows(env, feature_id, entity_id)
    connection = connections[rows.db]
    field = _key_field(rows.model, name)
    key = (kind, env, feature_id, entity_id, name, rows.db)
    prepped = field.get_db_prep_value(getattr(value, "pk", value) if name == "owner" else value, connection)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _plan(rows.filter(**lookup), prepped)
        if plan is None:
            return list(rows.filter(**lookup))
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        _PLANS[key] = plan
    params = list(plan.params)
    params[plan.slot] = prepped
    with connection.cursor() as cursor:
        cursor.execute(plan.sql, params)
        results = cursor.fetchall()
    compiler = rows.query.get_compiler(rows.db)
    converters = compiler.get_converters(plan.columns)
    found = compiler.apply_converters(results, converters) if converters else results
    return [dict(zip(plan.names, row, strict=True)) for row in found]


def _key_field(model: type[models.Model], name: str) -> models.Field:
    if name == "pk":
        return model._meta.pk
    return model._meta.get_field(name).target_field  # "owner": the owner model's key


def _plan(query: QuerySet, prepped: Any) -> _Plan | None:
    compiler = query.query.get_compiler(query.db)
    sql, params = compiler.as_sql()
    # The key is the query's last filter, so its parameter is the last one: the rest of the
    # WHERE clause comes before it, and nothing (no ORDER BY, no LIMIT) after.
    last = params[-1] if params else None
    if type(last) is not type(prepped) or last != prepped or not sql.endswith("%s)"):
        return None
    selected = getattr(query.query, "selected", None)
    names = list(selected) if selected else [*query.query.extra_select, *query.query.values_select,
                                             *query.query.annotation_select]
    columns = tuple(column[0] for column in compiler.select[:compiler.col_count])
    return _Plan(sql, tuple(params), len(params) - 1, tuple(names), columns)
