"""Signals the app sends when the mirror changes, so a project can react without polling.

The mirror's changes are sent with ``sender=Customer`` after the change is committed, once
per real change: a re-sync that finds a customer unchanged sends nothing.

- ``customer_created(customer)``: a customer appeared in the mirror.
- ``customer_updated(customer)``: its data changed (an undeleted customer counts).
- ``customer_deleted(customer)``: Autumn no longer has it; the row got ``deleted_at``.
- ``balance_changed(customer, feature_id, previous, current)``: one balance of an existing
  customer changed; ``previous``/``current`` are dicts of the balance's fields (granted,
  remaining, usage, unlimited, overage_allowed, max_purchase, next_reset_at), ``None``
  when the balance appeared or went away. Not sent for a new customer's balances:
  ``customer_created`` carries those.

    @receiver(balance_changed)
    def warn_when_exhausted(sender, customer, feature_id, previous, current, **kwargs):
        ran_out = current and not current["unlimited"] and current["remaining"] <= 0
        if ran_out and (previous or {}).get("remaining", 1) > 0:
            ...

The full sync:

- ``sync_finished(run, counts, using)``, ``sender=SyncRun``: a full sync succeeded and its
  last write is committed. ``run`` is the ``SyncRun`` row, ``counts`` a dict of its
  ``created``, ``updated``, ``unchanged``, ``deleted``, ``undeleted``, ``skipped`` and
  ``reread`` (customers), and ``entities_created``, ``entities_updated``,
  ``entities_unchanged``, ``entities_deleted`` and ``entities_skipped``; ``using`` the
  database it wrote. A run that fails sends nothing: its counts
  are partial and the mirror is not complete; the run that resumes it sends the signal when
  it succeeds. A receiver that raises is logged and the run stays succeeded.

Autumn's webhooks (``sender=WebhookEvent``): one signal per event type, sent once per event,
after the event is stored, processed and committed (with Celery, in the worker that
processed it), so a project can mail an upgrade or an ended trial without parsing JSON.
Every one carries:

- ``event``: the ``WebhookEvent`` row (``event.payload`` is the body as received);
- ``customer_id``, ``entity_id``: the ids the event names, or ``None``;
- ``customer``: the customer's mirror row as this event refreshed it, ``None`` when the type
  refreshes nothing, the event names no customer, or Autumn no longer has the customer;
- ``data``: the event's whole ``data`` object;

and the fields of its type, taken from ``data`` (``None`` when absent; lists default to
``[]``). Which types refresh the customer, and why, is in
``autumn_django.webhooks.processing``.

Each signal is the event type with its dots as underscores; its own arguments:

- ``billing_updated``: ``plan_changes`` (``[{action, subscription | purchase, ...}]``),
  ``tags`` (``trial_ended``, ``phase_changed``, ``reconciled``).
- ``balances_limit_reached``: ``feature_id``, ``limit_type``, ``filter``.
- ``balances_usage_alert_triggered``: ``feature_id``, ``usage_alert``.
- ``billing_auto_topup_succeeded``: ``feature_id``, ``quantity_granted``, ``threshold``,
  ``balance_after``, ``invoice_mode``, ``invoice``.
- ``billing_auto_topup_failed``: ``feature_id``, ``reason``, ``quantity``, ``threshold``,
  ``balance``, ``invoice_mode``, ``error``.
- ``invoice_finalized``: ``invoice``.
- ``customer_products_updated`` (legacy): ``scenario``, ``updated_product``, ``entity``.
- ``customer_threshold_reached`` (legacy): ``threshold_type``, ``feature``.
- ``vercel_resources_provisioned``: ``resource``, ``installation_id``, ``access_token``.
- ``vercel_resources_deleted``: ``resource``, ``installation_id``.
- ``vercel_resources_rotate_secrets``: ``resource``, ``installation_id``,
  ``vercel_request_body``.
- ``vercel_webhooks_event``: ``installation_id``, ``vercel_event`` (``data.event``: the name
  ``event`` is the row's).

``webhook_received`` is sent for every event, after its typed signal, and alone for types
this version does not know (stored, acknowledged with 200, status "ignored"): the common
arguments above and ``event_type``.

Not sent for an event that failed (it is sent once a redelivery or "Process again"
processes it), nor for one refused because its body names the other Autumn environment.
A receiver that raises is logged (``autumn_django.webhooks``) and never fails the delivery,
nor keeps the other receivers from running.

    @receiver(billing_updated)
    def mail_upgrades(sender, event, customer, plan_changes, tags, **kwargs):
        if "trial_ended" in tags and customer and customer.owner:
            send_trial_ended_mail(customer.owner)
"""

from django.dispatch import Signal

customer_created = Signal()
customer_updated = Signal()
customer_deleted = Signal()
balance_changed = Signal()

sync_finished = Signal()

# Autumn's webhooks: one per event type (autumn_django.webhooks.processing.EVENT_TYPES).
billing_updated = Signal()
balances_limit_reached = Signal()
balances_usage_alert_triggered = Signal()
billing_auto_topup_succeeded = Signal()
billing_auto_topup_failed = Signal()
invoice_finalized = Signal()
customer_products_updated = Signal()
customer_threshold_reached = Signal()
vercel_resources_provisioned = Signal()
vercel_resources_deleted = Signal()
vercel_resources_rotate_secrets = Signal()
vercel_webhooks_event = Signal()
# Every event, typed or not.
webhook_received = Signal()
