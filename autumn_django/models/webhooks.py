"""Webhooks Autumn sent, stored before they are processed."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from .customers import Env


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
