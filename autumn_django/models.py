"""The mirror: Autumn customers and their entities, with their subscriptions, purchases,
balances and flags; customers' seat pools (licenses); the org's features and plans.

Rows are written by the sync only (``autumn_django.sync``); these models are for reading,
the admin and the schema. Every customer keeps the JSON exactly as Autumn last sent it in
``raw``, so fields this app does not model yet are never lost.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .conf import owner_model_label
from .fields import RawJSONField


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


def _child_owner_constraint(model: str) -> models.CheckConstraint:
    """A child row belongs to a customer or to an entity, never both nor neither."""
    one_owner = (Q(customer__isnull=False, entity__isnull=True)
                 | Q(customer__isnull=True, entity__isnull=False))
    return models.CheckConstraint(condition=one_owner, name=f"autumn_{model}_one_owner")


# A child row has one owner, so each owner's index holds only the rows of its owner
# (partial): a row stored costs one owner-index entry, not two (one of them NULL). Both
# databases use a partial index for ``owner_id = ...`` and ``IN (...)``: the lookup implies
# NOT NULL. Measured on SQLite, 1,000,000 balance rows inserted by pages of 10,000: 15.2
# -> 11.4-12.0 µs a row; the sync writes ~20 child rows a customer.
_OWNERS = {"customer": Q(customer__isnull=False), "entity": Q(entity__isnull=False)}


def _owner_indexes(short: str) -> list[models.Index]:
    """The owner foreign keys' indexes (the fields are ``db_index=False``); ``short`` names
    the model in the index names (at most 30 characters)."""
    return [models.Index(fields=[owner], condition=present, name=f"autumn_{short}_{owner}_idx")
            for owner, present in _OWNERS.items()]


def _owner_feature_uniques(model: str) -> list[models.UniqueConstraint]:
    """One row per feature and owner (names as before they were partial); each index leads
    with its owner, so the foreign keys need none of their own."""
    return [
        models.UniqueConstraint(fields=["customer", "feature_id"], condition=_OWNERS["customer"],
                                name=f"autumn_{model}_feature_uniq"),
        models.UniqueConstraint(fields=["entity", "feature_id"], condition=_OWNERS["entity"],
                                name=f"autumn_{model}_entity_feature_uniq"),
    ]


class Subscription(models.Model):
    """A subscription to a recurring plan. Expired subscriptions are not in Autumn's
    answers, so they are not here either; past-due ones are ``active`` with ``past_due``.

    Belongs to a customer or (``entity``) to an entity. ``scope`` is Autumn's: a customer's
    rows include its entities' plans with ``scope="entity"``, so "customers on plan X"
    is ``subscriptions__plan_id="x", subscriptions__scope="customer"``.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        SCHEDULED = "scheduled", _("Scheduled")

    # Indexed by ``_owner_indexes``.
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="subscriptions",
                                 db_index=False, null=True, blank=True)
    entity = models.ForeignKey(Entity, on_delete=models.CASCADE, related_name="subscriptions",
                               db_index=False, null=True, blank=True)
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.CUSTOMER,
                             db_default=Scope.CUSTOMER)
    subscription_id = models.CharField(max_length=255, null=True, blank=True)
    plan_id = models.CharField(max_length=255)
    status = models.CharField(max_length=16)
    auto_enable = models.BooleanField(default=False)
    add_on = models.BooleanField(default=False)
    past_due = models.BooleanField(default=False)
    quantity = models.IntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    trial_ends_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("subscription")
        indexes = [models.Index(fields=["plan_id"], name="autumn_subscription_plan_idx"),
                   *_owner_indexes("sub")]
        constraints = [_child_owner_constraint("subscription")]

    def __str__(self) -> str:
        return f"{self.plan_id} ({self.status})"


class Purchase(models.Model):
    """A one-off plan the customer (or ``entity``) bought; ``scope`` as on ``Subscription``."""

    # Indexed by ``_owner_indexes``.
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="purchases",
                                 db_index=False, null=True, blank=True)
    entity = models.ForeignKey(Entity, on_delete=models.CASCADE, related_name="purchases",
                               db_index=False, null=True, blank=True)
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.CUSTOMER,
                             db_default=Scope.CUSTOMER)
    plan_id = models.CharField(max_length=255)
    quantity = models.IntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("purchase")
        indexes = [models.Index(fields=["plan_id"], name="autumn_purchase_plan_idx"),
                   *_owner_indexes("purchase")]
        constraints = [_child_owner_constraint("purchase")]

    def __str__(self) -> str:
        return self.plan_id


class Balance(models.Model):
    """A metered (or credit-system) feature's balance, of a customer or an entity. Counts
    can be fractional; when ``unlimited`` is true they carry no meaning."""

    # No index of its own: its (owner, feature_id) unique constraint leads with it.
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="balances",
                                 db_index=False, null=True, blank=True)
    entity = models.ForeignKey(Entity, on_delete=models.CASCADE, related_name="balances",
                               db_index=False, null=True, blank=True)
    feature_id = models.CharField(max_length=255)
    granted = models.FloatField(null=True, blank=True)
    remaining = models.FloatField(null=True, blank=True)
    usage = models.FloatField(null=True, blank=True)
    unlimited = models.BooleanField(default=False)
    overage_allowed = models.BooleanField(default=False)
    max_purchase = models.FloatField(null=True, blank=True)
    next_reset_at = models.DateTimeField(null=True, blank=True)
    breakdown = RawJSONField(default=list, blank=True)

    class Meta:
        verbose_name = _("balance")
        indexes = [models.Index(fields=["feature_id"], name="autumn_balance_feature_idx")]
        constraints = [*_owner_feature_uniques("balance"), _child_owner_constraint("balance")]

    def __str__(self) -> str:
        return self.feature_id


class Flag(models.Model):
    """A boolean feature the customer (or entity) has."""

    # No index of its own: its (owner, feature_id) unique constraint leads with it.
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="flags",
                                 db_index=False, null=True, blank=True)
    entity = models.ForeignKey(Entity, on_delete=models.CASCADE, related_name="flags",
                               db_index=False, null=True, blank=True)
    flag_id = models.CharField(max_length=255, null=True, blank=True)
    feature_id = models.CharField(max_length=255)
    plan_id = models.CharField(max_length=255, null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("flag")
        indexes = [models.Index(fields=["feature_id"], name="autumn_flag_feature_idx")]
        constraints = [*_owner_feature_uniques("flag"), _child_owner_constraint("flag")]

    def __str__(self) -> str:
        return self.feature_id


class License(models.Model):
    """A seat pool a customer's plan grants (``licenses`` at API 2.3): seats granted, in
    use and left. Seats are given to entities with ``licenses.attach``."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="licenses")
    license_plan_id = models.CharField(max_length=255)
    parent_plan_id = models.CharField(max_length=255, null=True, blank=True)
    license_plan_name = models.TextField(null=True, blank=True)
    granted = models.FloatField(null=True, blank=True)
    usage = models.FloatField(null=True, blank=True)
    remaining = models.FloatField(null=True, blank=True)
    paid_quantity = models.FloatField(null=True, blank=True)

    class Meta:
        verbose_name = _("license")
        indexes = [models.Index(fields=["license_plan_id"], name="autumn_license_plan_idx")]

    def __str__(self) -> str:
        return self.license_plan_name or self.license_plan_id


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


class SyncRun(models.Model):
    """One run of the full sync: how far it got, what it did, and the lock.

    At most one run per env is ``running`` (a partial unique constraint, so two processes
    cannot both start one). A running run renews ``heartbeat_at`` after every page; one
    whose process is known to be gone (``host``/``pid``, PostgreSQL's advisory lock), or
    whose heartbeat is older than ``AUTUMN_SYNC_LOCK_TIMEOUT``, died, and the next run
    takes it over and resumes from ``cursor``.
    """

    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    env = models.CharField(max_length=8, choices=Env.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField()
    lease_token = models.CharField(max_length=32, editable=False)
    # Resume point: the cursor after the last committed page (and the created_at start
    # used to get past Autumn's null-cursor defect, when it was needed).
    cursor = models.TextField(blank=True, default="")
    created_at_start = models.BigIntegerField(null=True, blank=True)
    # How far it got: Autumn's created_at of the last customer stored (the crawl ascends).
    reached_created_at = models.DateTimeField(null=True, blank=True)
    page_size = models.PositiveIntegerField()
    attempts = models.PositiveIntegerField(default=1, help_text=_("1 + how often it was resumed"))
    pages = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    undeleted = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    # Problems that did not stop the run: records skipped, warnings.
    errors = models.JSONField(default=list, blank=True)
    # Why the run stopped, when it failed.
    failure = models.TextField(blank=True, default="")
    # Who holds (or last held) the run: a running run whose process is gone is taken over
    # at once (sync/holders.py), not after the lease.
    host = models.CharField(max_length=255, blank=True, default="")
    pid = models.PositiveIntegerField(null=True, blank=True)
    # Customers the run read again through customers.get: at the list's cap of 15 plans,
    # with a balance due to reset, or fresher in the mirror than the list's replica.
    reread = models.PositiveIntegerField(default=0, db_default=0)
    advisory_lock = models.BooleanField(default=False, help_text=_(
        "Whether the run holds PostgreSQL's advisory lock, which its process's death frees."))
    # The partitioned crawl's windows of created_at, each with its committed resume point
    # (sync/pages/windows.py): [{id, start, end, cursor, created_at_start, reached, done}].
    windows = models.JSONField(default=list, blank=True)
    # After the customers, the run crawls entities.list (newest first), with a resume point
    # and counts of its own.
    phase = models.CharField(max_length=16, choices=[("customers", _("Customers")),
                                                     ("entities", _("Entities"))],
                             default="customers", db_default="customers")
    entity_cursor = models.TextField(blank=True, default="", db_default="")
    # The newest-first crawl's lowest created_at stored so far.
    entities_reached_created_at = models.DateTimeField(null=True, blank=True)
    entity_pages = models.PositiveIntegerField(default=0, db_default=0)
    entities_created = models.PositiveIntegerField(default=0, db_default=0)
    entities_updated = models.PositiveIntegerField(default=0, db_default=0)
    entities_unchanged = models.PositiveIntegerField(default=0, db_default=0)
    entities_deleted = models.PositiveIntegerField(default=0, db_default=0)
    entities_skipped = models.PositiveIntegerField(default=0, db_default=0)
    # A run of the Celery workflow (sync/workflow.py): its windows are SyncWindow rows, one
    # task each, and no one process holds it (no host, pid or advisory lock): it is known
    # dead only by its lease. A run resumes only as the kind it was started.
    workflow = models.BooleanField(default=False, db_default=False)
    # A workflow run's last stage (the entities pass and the end), claimed by one task at a
    # time as windows are: renewed with each entities page; older than
    # AUTUMN_SYNC_LOCK_TIMEOUT, a dead worker's, and another task resumes the stage.
    finish_claim = models.CharField(max_length=32, blank=True, default="", db_default="")
    finish_claimed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("sync run")
        get_latest_by = "started_at"
        constraints = [
            models.UniqueConstraint(
                fields=["env"], condition=Q(status="running"), name="autumn_syncrun_one_running_per_env"
            )
        ]

    def __str__(self) -> str:
        return f"{self.env} sync #{self.pk} ({self.status})"

    @property
    def duration(self):
        return (self.finished_at - self.started_at) if self.finished_at else None


class SyncWindow(models.Model):
    """A window of a workflow run (``sync.workflow``), crawled by one Celery task at a time.

    Each task updates only its own window's row, in each page's transaction: workers
    sharing a run cannot lose each other's progress. ``claim`` names the task crawling it,
    renewed with each page (``claimed_at``); a claim older than ``AUTUMN_SYNC_LOCK_TIMEOUT``
    belongs to a dead worker, and the window is taken over from its last committed page.
    """

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="window_rows")
    number = models.PositiveIntegerField()
    start = models.BigIntegerField(null=True, blank=True)  # inclusive epoch ms; None: unbounded
    end = models.BigIntegerField(null=True, blank=True)
    cursor = models.TextField(blank=True, default="")
    created_at_start = models.BigIntegerField(null=True, blank=True)
    reached = models.BigIntegerField(null=True, blank=True)
    done = models.BooleanField(default=False)
    pages = models.PositiveIntegerField(default=0)
    claim = models.CharField(max_length=32, blank=True, default="")
    claimed_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True, default="")  # "host:pid" of the last claim
    # False once a page held a record that might be a mirrored customer garbled: the run
    # then marks no customer deleted.
    identified_everyone = models.BooleanField(default=True)
    errors = models.JSONField(default=list, blank=True)
    # Its bounds are the last complete run's (``sync.partition.plan_windows``): not cut, so
    # its pages, and their memos, stay the same from run to run.
    planned = models.BooleanField(default=False)
    # When its task was last handed to the broker; None: never, or its task may be lost
    # (a worker died between the commit that made the window and the enqueue). A window
    # queued and not yet claimed keeps its run alive for AUTUMN_SYNC_QUEUE_TIMEOUT.
    queued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("sync window")
        constraints = [models.UniqueConstraint(fields=["run", "number"], name="autumn_syncwindow_unique")]

    def __str__(self) -> str:
        return f"window {self.number} of run #{self.run_id}"


class SyncSighting(models.Model):
    """The key fingerprints (``sync.fingerprints``) of one committed page of a workflow run,
    written in the page's transaction: the task settling deletions unions every page's, so
    a window resumed by another worker still counts what the dead one committed. Deleted
    once the run settled its deletions."""

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="sightings")
    window = models.PositiveIntegerField()
    fingerprints = models.BinaryField()

    class Meta:
        verbose_name = _("sync sighting")

    def __str__(self) -> str:
        return f"sightings of window {self.window} of run #{self.run_id}"


class PageMemoRow(models.Model):
    """A page a full sync has read, named by the SHA-256 of its bytes, with a memo of what
    it held: the next pass that reads the same bytes, while the mirror still holds those
    states, does not decode the page. Pages no completed pass has read are pruned."""

    env = models.CharField(max_length=8, choices=Env.choices)
    digest = models.CharField(max_length=64)
    memo = models.BinaryField()
    used_at = models.DateTimeField()

    class Meta:
        abstract = True
        constraints = [
            models.UniqueConstraint(fields=["env", "digest"], name="autumn_%(class)s_env_digest_uniq")
        ]


class SyncedPage(PageMemoRow):
    """A ``customers.list`` page (memo: ``sync.pages.pagememo.PageMemo``): neither decoded
    nor its customers hashed when read again unchanged."""

    class Meta(PageMemoRow.Meta):
        verbose_name = _("synced page")

    def __str__(self) -> str:
        return f"{self.env} page {self.digest[:12]}"


class SyncedEntityPage(PageMemoRow):
    """An ``entities.list`` page a full sync's entities pass has read (memo:
    ``sync.pages.entitypages.EntityPageMemo``).

    A table of its own rather than rows in ``SyncedPage``: the two are pruned at the end of
    different passes (the customers' ends before the entities' begins).
    """

    class Meta(PageMemoRow.Meta):
        verbose_name = _("synced entity page")

    def __str__(self) -> str:
        return f"{self.env} entities page {self.digest[:12]}"


class WebhookEvent(models.Model):
    """A webhook Autumn sent (through Svix), stored before it is processed.

    Only deliveries with a valid signature are stored. ``svix_id`` is unique: Svix resends
    an event with the same id until it gets a 2xx, so a repeat is recognised and not
    processed twice. Processing refreshes the customer the event names; its outcome and
    any error are kept here for the admin.
    """

    class Status(models.TextChoices):
        RECEIVED = "received", _("Received")  # stored, not processed (yet)
        PROCESSED = "processed", _("Processed")
        IGNORED = "ignored", _("Ignored")  # a type this app does not act on
        FAILED = "failed", _("Failed")  # a redelivery is processed again

    svix_id = models.CharField(_("Svix message id"), max_length=255)
    event_type = models.CharField(max_length=255)
    customer_id = models.CharField(_("Autumn customer id"), max_length=255, null=True, blank=True,
                                   db_index=True)
    payload = models.JSONField(_("body as received"))
    # The environment of the endpoint that received it (one Svix app per env): processing
    # it again later refreshes from that env.
    env = models.CharField(max_length=8, choices=Env.choices, blank=True, default="", db_default="")
    signed_at = models.DateTimeField(_("signed by Svix at"))
    received_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveIntegerField(default=0, help_text=_("how often processing ran"))
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        verbose_name = _("webhook event")
        get_latest_by = "received_at"
        constraints = [models.UniqueConstraint(fields=["svix_id"], name="autumn_webhookevent_svix_id_uniq")]
        # The admin lists newest first, often filtered by status ("what failed?").
        indexes = [models.Index(fields=["status", "received_at"], name="autumn_webhookevent_status_idx")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.svix_id}"
