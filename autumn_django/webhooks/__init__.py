"""Autumn's webhooks, delivered through Svix: verified, stored, then processed.

    path("autumn/webhooks/", include("autumn_django.webhooks.urls"))

Every event that can change a customer's plans or balances refreshes that customer through
``customers.get`` (in a Celery worker, or inline within Svix's delivery timeout, per
``AUTUMN_TASK_MODE``); then every event, typed or not, is sent as a signal
(``autumn_django.signals``). ``processing`` says what each type does and why. The events
are in the admin with their status and error, and "Process again", once
``autumn_django.webhooks.admin`` is imported.
"""
