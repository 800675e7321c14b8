"""The full sync's records: its runs, their windows and sightings, and the memos of the
pages they read."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .customers import Env


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
