"""The suite's settings with customers that belong to organisations: the owner tests (and
the other owner-agnostic ones) run under both this and ``tests.settings`` (scripts/test.sh,
"sqlite-org" and "postgres-org")."""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.orgapp"]  # noqa: F405
AUTUMN_CUSTOMER_OWNER_MODEL = "orgapp.Organization"
AUTUMN_OWNER_FROM_REQUEST = "tests.orgapp.owners.organization_of"
