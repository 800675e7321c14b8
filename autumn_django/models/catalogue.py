"""The org's catalogue: its features and plans."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from .customers import Env


class CatalogueQuerySet(models.QuerySet):
    def present(self):
        return self.filter(deleted_at__isnull=True)


class Feature(models.Model):
    """A feature of the org's catalogue (``features.list``). A credit system's
    ``credit_schema`` says what each member feature costs in its credits."""

    class Type(models.TextChoices):
        BOOLEAN = "boolean", _("Boolean")
        METERED = "metered", _("Metered")
        CREDIT_SYSTEM = "credit_system", _("Credit system")

    env = models.CharField(max_length=8, choices=Env.choices)
    feature_id = models.CharField(max_length=255)
    name = models.TextField(null=True, blank=True)
    # Not limited to ``Type``: Autumn adds types (ai_credit_system) and the mirror keeps them.
    type = models.CharField(max_length=32)
    consumable = models.BooleanField(default=False)
    archived = models.BooleanField(default=False)
    credit_schema = models.JSONField(default=list, blank=True)
    # Where features.list put it (newest first): of several credit systems a member
    # belongs to, a check tries them in this order, as Autumn does.
    position = models.PositiveIntegerField(default=0, db_default=0)
    raw = models.JSONField(_("JSON as received"))
    synced_at = models.DateTimeField(_("last written from Autumn"))
    deleted_at = models.DateTimeField(_("gone from Autumn since"), null=True, blank=True)

    objects = CatalogueQuerySet.as_manager()

    class Meta:
        verbose_name = _("feature")
        constraints = [
            models.UniqueConstraint(fields=["env", "feature_id"], name="autumn_feature_env_id_uniq"),
        ]

    def __str__(self) -> str:
        return self.name or self.feature_id


class Plan(models.Model):
    """A plan of the org's catalogue (``plans.list``)."""

    env = models.CharField(max_length=8, choices=Env.choices)
    plan_id = models.CharField(max_length=255)
    name = models.TextField(null=True, blank=True)
    group = models.CharField(max_length=255, null=True, blank=True)
    version = models.IntegerField(null=True, blank=True)
    add_on = models.BooleanField(default=False)
    auto_enable = models.BooleanField(default=False)
    items = models.JSONField(default=list, blank=True)
    raw = models.JSONField(_("JSON as received"))
    synced_at = models.DateTimeField(_("last written from Autumn"))
    deleted_at = models.DateTimeField(_("gone from Autumn since"), null=True, blank=True)

    objects = CatalogueQuerySet.as_manager()

    class Meta:
        verbose_name = _("plan")
        constraints = [models.UniqueConstraint(fields=["env", "plan_id"], name="autumn_plan_env_id_uniq")]

    def __str__(self) -> str:
        return self.name or self.plan_id
