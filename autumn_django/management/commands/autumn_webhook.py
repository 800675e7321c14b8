"""``manage.py autumn_webhook --url https://example.com/autumn/webhooks/live/ [--env live]``:
register the project's webhook endpoint in Autumn (or update it), for one environment.

The endpoint is looked up by URL, so a second run updates it (its events) instead of adding
another. Autumn shows an endpoint's signing secret once, at creation: the run that creates
it prints it, with the settings line to paste, on stdout only (never to a log); later runs
say it was not changed. See ``autumn_django.webhooks.endpoints`` for the API shapes assumed.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

from django.core.management.base import BaseCommand, CommandError

from ...client import AutumnClient
from ...conf import ENVS, project_env
from ...exceptions import AutumnError
from ...webhooks.endpoints import handled_events, register

URL_ENV = re.compile(r"/webhooks/(sandbox|live)/?$")


class Command(BaseCommand):
    help = ("Register this project's webhook endpoint in Autumn (or update it), subscribed to "
            "every event the app handles, for one environment's key. Prints the signing secret "
            "once, when the endpoint is created.")
    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", required=True,
                            help="The endpoint's public URL, e.g. https://example.com/autumn/webhooks/live/")
        parser.add_argument("--env", choices=ENVS,
                            help="The environment whose key registers it (default: the one the URL "
                                 "names, else AUTUMN_ENV).")

    def handle(self, *args, url: str, env: str | None = None, **options) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise CommandError(f"--url must be an http(s) URL, not {url!r}.", returncode=2)
        named = URL_ENV.search(parsed.path)
        url_env = named.group(1) if named else None
        try:
            env = env or url_env or project_env()
        except Exception as exc:  # a bad AUTUMN_ENV
            raise CommandError(str(exc)) from None
        if url_env is not None and url_env != env:
            raise CommandError(
                f"The URL is the {url_env} endpoint (webhooks/{url_env}/), which verifies deliveries "
                f"with the {url_env} secret; registering it with the {env} key would send {env}'s "
                f"events there. Use webhooks/{env}/, or --env {url_env}.", returncode=2)
        try:
            with AutumnClient(env=env) as client:
                registration = register(client, url)
        except AutumnError as exc:
            raise CommandError(f"Could not register the {env} webhook endpoint: {exc}") from None
        endpoint = registration.endpoint
        count = len(endpoint.get("events") or handled_events())
        if not registration.created:
            self.stdout.write(self.style.SUCCESS(
                f"Updated the {env} webhook endpoint {endpoint['id']} at {url} ({count} events). "
                f"Its signing secret was not changed: keep the one in AUTUMN_WEBHOOK_SECRETS['{env}'] "
                "(Autumn shows it only when the endpoint is created)."))
            return
        self.stdout.write(self.style.SUCCESS(
            f"Created the {env} webhook endpoint {endpoint['id']} at {url} ({count} events)."))
        if not registration.secret:
            self.stdout.write(self.style.WARNING(
                "Autumn's answer held no signing secret: copy it from the endpoint in Autumn's dashboard."))
            return
        # stdout only, once: the secret is never logged.
        self.stdout.write(
            "Its signing secret is shown this once. Add it to your settings, beside the other "
            f"environment's entry if there is one:\n\n"
            f"    AUTUMN_WEBHOOK_SECRETS = {{{env!r}: {registration.secret!r}}}\n")
