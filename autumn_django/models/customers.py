"""Customers and their entities: who the mirror's rows belong to."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from ..conf import owner_model_label
from ..fields import RawJSONField


class Env(models.TextChoices):
    SANDBOX = "sandbox", _("Sandbox")
    LIVE = "live", _("Live")


class CustomerQuerySet(models.QuerySet):
    def present(self) -> CustomerQuerySet:
        """Customers that Autumn still has (the last completed sync saw them)."""
        return self.filter(deleted_at__isnull=True)

    def for_env(self, env: str) -> CustomerQuerySet:
        return self.filter(env=env)


class Customer(models.Model):
    """An Autumn customer.

    Keyed by ``(env, autumn_id)``. Autumn also has customers without an id (created by
    email alone); those are keyed by ``(env, email)``, which a partial unique index keeps
    unique among id-less rows.
    """

    env = models.CharField(max_length=8, choices=Env.choices)
    autumn_id = models.CharField(_("Autumn id"), max_length=255, null=True, blank=True)
    name = models.TextField(null=True, blank=True)
    email = models.CharField(max_length=320, null=True, blank=True)
    fingerprint = models.TextField(null=True, blank=True)
    stripe_id = models.CharField(max_length=255, null=True, blank=True)
    send_email_receipts = models.BooleanField(default=False)
    created_at = models.DateTimeField(_("created in Autumn"), db_index=True)
    # Who the customer is in this project: a user by default, or the model
    # AUTUMN_CUSTOMER_OWNER_MODEL names (an organisation), read here as AUTH_USER_MODEL is.
    # No index of its own: the partial unique (owner, env) below leads with it and serves
    # every lookup by owner, and most customers have no owner, so it is also the smaller.
    owner = models.ForeignKey(
        owner_model_label(),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="autumn_customers",
        db_index=False,
    )
    raw = RawJSONField(_("JSON as received"))
    raw_hash = models.CharField(max_length=32, editable=False)
    synced_at = models.DateTimeField(_("last written from Autumn"))
    deleted_at = models.DateTimeField(_("gone from Autumn since"), null=True, blank=True)
    # When the data in this row was read from Autumn (the request's start) and by which
    # call: customers.list reads a replica that lags customers.get, and a page is written
    # a while after it was read, so data read earlier must never overwrite data read later.
    read_at = models.DateTimeField(_("read from Autumn at"), null=True, blank=True)
    # db_default: the sync's own SQL (sync/bulk.py) inserts rows without naming every column.
    read_via = models.CharField(_("read through"), max_length=8, blank=True, default="", db_default="",
                                choices=[("list", "customers.list"), ("get", "customers.get")])

    objects = CustomerQuerySet.as_manager()

    class Meta:
        verbose_name = _("customer")
        # Indexes in Meta rather than db_index on text columns: on PostgreSQL db_index adds
        # a second, varchar_pattern_ops index for LIKE 'prefix%', which nothing here asks
        # and every sync insert pays for.
        indexes = [
            models.Index(fields=["email"], name="autumn_customer_email_idx"),
            # A re-sync cuts its windows at every Nth present customer by created_at
            # (``partition.spread_by_mirror``): with this index an OFFSET walks the index
            # alone. Without it, 3.1 s at 100,000 customers on SQLite; with it, 0.08 s.
            models.Index(fields=["env", "created_at"], condition=Q(deleted_at__isnull=True),
                         name="autumn_customer_present_idx"),
            # Before each page is written the sync asks which of its customers
            # customers.get read lately (``MirrorWriter.read_by_get_between``): an index of
            # those rows alone answers from a few entries. PostgreSQL, first sync of 100,000
            # customers (pg_stat_statements): 41 ms of the server's time a page without it,
            # ~1,300 table blocks read each time; 0.6 ms with it.
            models.Index(fields=["env", "autumn_id"], condition=Q(read_via="get"),
                         name="autumn_customer_got_idx"),
        ]
        # The admin's "Refresh from Autumn" and "Sync now" call Autumn and rewrite the mirror:
        # a right of its own, apart from viewing customers and editing their owner link.
        permissions = [("sync_customers", _("Can sync customers from Autumn"))]
        constraints = [
            models.UniqueConstraint(fields=["env", "autumn_id"], name="autumn_customer_env_id_uniq"),
            models.UniqueConstraint(
                fields=["env", "email"],
                condition=Q(autumn_id__isnull=True),
                name="autumn_customer_idless_email_uniq",
            ),
            models.UniqueConstraint(
                fields=["owner", "env"],
                condition=Q(owner__isnull=False),
                name="autumn_customer_owner_env_uniq",
            ),
        ]

    def __str__(self) -> str:
        return self.autumn_id or self.email or f"customer {self.pk}"

    @property
    def metadata(self) -> dict:
        return self.raw.get("metadata") or {}

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class Scope(models.TextChoices):
    """Whom a subscription or purchase belongs to. At API 2.3 a customer's answer folds in
    its entities' plans (``scope: "entity"``); an entity's answer adds its customer's."""

    CUSTOMER = "customer", _("Customer")
    ENTITY = "entity", _("Entity")


class Entity(models.Model):
    """An Autumn entity: a sub-customer (a seat, a workspace, a project) with its own plans,
    balances and flags, as ``entities.list`` answers for it.

    Its subscriptions, purchases, balances and flags are the rows of the customer's child
    models whose ``entity`` is this one (their ``customer`` is then empty), and hold what
    Autumn's entity answer holds: the entity's own (``scope="entity"``), then what it
    inherits from its customer (``scope="customer"``, balances and flags pooled in), so a
    check for an entity reads its rows alone. An entity's Autumn id can be null, as a
    customer's can; such entities are told apart by ``created_at`` and name.
    """

    env = models.CharField(max_length=8, choices=Env.choices)
    autumn_id = models.CharField(_("Autumn id"), max_length=255, null=True, blank=True)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="entities")
    name = models.TextField(null=True, blank=True)
    # The feature the entity counts against (seats, workspaces).
    feature_id = models.CharField(max_length=255, null=True, blank=True)
    created_at = models.DateTimeField(_("created in Autumn"), db_index=True)
    raw = RawJSONField(_("JSON as received"))
    raw_hash = models.CharField(max_length=32, editable=False)
    synced_at = models.DateTimeField(_("last written from Autumn"))
    deleted_at = models.DateTimeField(_("gone from Autumn since"), null=True, blank=True)
    read_at = models.DateTimeField(_("read from Autumn at"), null=True, blank=True)

    class Meta:
        verbose_name = _("entity")
        verbose_name_plural = _("entities")
        indexes = [models.Index(fields=["feature_id"], name="autumn_entity_feature_idx")]
        constraints = [
            models.UniqueConstraint(fields=["customer", "autumn_id"], name="autumn_entity_customer_id_uniq"),
        ]

    def __str__(self) -> str:
        return self.autumn_id or self.name or f"entity {self.pk}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None
