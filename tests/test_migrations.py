"""The models and the shipped migrations agree: a model change without its migration
would build a different schema on a fresh database than the one the code expects."""

from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_every_model_change_has_its_migration():
    out = StringIO()
    try:
        call_command("makemigrations", "autumn_django", check=True, dry_run=True, stdout=out)
    except SystemExit:
        pytest.fail(f"autumn_django's models changed without a migration:\n{out.getvalue()}")
