"""Autumn's webhooks, delivered through Svix: verified, stored, then processed.

    path("autumn/webhooks/", include("autumn_django.webhooks.urls"))

Every event this app knows names a customer; processing refreshes that customer through
``customers.get`` (queued or inline, per ``AUTUMN_TASK_MODE``). The events are in the admin
with their status and error once ``autumn_django.webhooks.admin`` is imported.
"""
