"""The org's catalogue as the sync read it: features (``features.list``) and plans
(``plans.list``). Read-only lists, small (one or two pages of Autumn's), each row's page
showing the JSON as received."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from ..models import Feature, Plan
from . import display, names
from .base import ReadOnlyAdmin
from .filters import DeletedFilter


def _names_by_env(features: QuerySet) -> dict[tuple[str, str], str]:
    return {(env, feature_id): name for env, feature_id, name
            in features.order_by().values_list("env", "feature_id", "name") if name}


def _credit_line(entry: object, env: str, members: dict[tuple[str, str], str]):
    """One member of a credit system: "ai_tokens (AI tokens): 0.5 credits each"."""
    if not isinstance(entry, dict) or not isinstance(entry.get("metered_feature_id"), str):
        return display.pretty_json(entry)  # not the documented shape: shown as it is
    member = entry["metered_feature_id"]
    cost = entry.get("credit_cost")
    amount = display.format_amount(cost) if isinstance(cost, (int, float)) and not isinstance(
        cost, bool) else str(cost)
    return format_html("{}: {}", names.labelled(member, members.get((env, member))),
                       _("%(cost)s credits each") % {"cost": amount})


class FeatureChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # Credit systems name their member features: every feature's name, in one query
        # for the page, not one per credit system.
        if any(feature.credit_schema for feature in self.result_list):
            members = _names_by_env(Feature.objects.all())
            for feature in self.result_list:
                feature.member_names = members


def _flag(value: bool) -> str:
    # Words, not boolean icons: a red cross on most rows reads as an error.
    return _("yes") if value else ""


@admin.register(Feature)
class FeatureAdmin(ReadOnlyAdmin):
    list_display = ("feature_id", "name", "kind", "credit_costs", "consumable_marker", "archived_marker",
                    "env", "deleted")
    list_filter = ("type", "env", DeletedFilter)
    search_fields = ("=feature_id", "name")
    search_help_text = _("Feature id (exact) or part of its name.")
    ordering = ("env", "feature_id")
    fields = ("feature_id", "name", "env", "kind", "credit_costs", "consumable", "archived",
              "synced_at", "deleted_at", "raw_json")
    readonly_fields = fields

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return FeatureChangeList

    @admin.display(description=_("type"), ordering="type")
    def kind(self, feature: Feature) -> str:
        # The mirror keeps types this app does not know (Autumn adds them): shown as sent.
        known = dict(Feature.Type.choices)
        return str(known.get(feature.type, feature.type))

    @admin.display(description=_("credit costs"))
    def credit_costs(self, feature: Feature):
        """A credit system's schema, readable: what one use of each member costs."""
        schema = feature.credit_schema if isinstance(feature.credit_schema, list) else []
        if feature.type != Feature.Type.CREDIT_SYSTEM and not schema:
            return ""
        if not schema:
            return display.EMPTY
        members = getattr(feature, "member_names", None)
        if members is None:  # its own page: one feature, one query
            members = _names_by_env(Feature.objects.filter(env=feature.env))
        return format_html('<ul class="autumn-credit-schema">{}</ul>', format_html_join(
            "", "<li>{}</li>", ((_credit_line(entry, feature.env, members),) for entry in schema)))

    @admin.display(description=_("consumable"), ordering="consumable")
    def consumable_marker(self, feature: Feature) -> str:
        return _flag(feature.consumable)

    @admin.display(description=_("archived"), ordering="archived")
    def archived_marker(self, feature: Feature) -> str:
        return _flag(feature.archived)

    @admin.display(description=_("deleted"), ordering="deleted_at")
    def deleted(self, feature: Feature):
        return display.deleted_mark(feature)

    @admin.display(description=_("JSON as received"))
    def raw_json(self, feature: Feature):
        return display.folded_json(feature.raw, _("Show the feature object Autumn sent"))


@admin.register(Plan)
class PlanAdmin(ReadOnlyAdmin):
    list_display = ("plan_id", "name", "group", "add_on_marker", "auto_enable_marker", "version",
                    "items_count", "env", "deleted")
    list_filter = ("add_on", "auto_enable", "env", DeletedFilter)
    search_fields = ("=plan_id", "name", "=group")
    search_help_text = _("Plan id (exact), part of its name, or its group (exact).")
    ordering = ("env", "group", "plan_id")
    fields = ("plan_id", "name", "env", "group", "version", "add_on", "auto_enable", "synced_at",
              "deleted_at", "items_json", "raw_json")
    readonly_fields = fields

    @admin.display(description=_("add-on"), ordering="add_on")
    def add_on_marker(self, plan: Plan) -> str:
        return _flag(plan.add_on)

    @admin.display(description=_("auto-enable"), ordering="auto_enable")
    def auto_enable_marker(self, plan: Plan) -> str:
        return _flag(plan.auto_enable)

    @admin.display(description=_("items"))
    def items_count(self, plan: Plan) -> int:
        return len(plan.items) if isinstance(plan.items, list) else 0

    @admin.display(description=_("deleted"), ordering="deleted_at")
    def deleted(self, plan: Plan):
        return display.deleted_mark(plan)

    @admin.display(description=_("items"))
    def items_json(self, plan: Plan):
        return display.pretty_json(plan.items)

    @admin.display(description=_("JSON as received"))
    def raw_json(self, plan: Plan):
        return display.folded_json(plan.raw, _("Show the plan object Autumn sent"))
