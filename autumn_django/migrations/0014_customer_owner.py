# The link of a customer to whoever it is in the project: Customer.user becomes
# Customer.owner, a foreign key to AUTUMN_CUSTOMER_OWNER_MODEL (default AUTH_USER_MODEL),
# read when this migration runs, as migrations read AUTH_USER_MODEL.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from autumn_django.conf import owner_model_label


def _owner_is_user_model() -> bool:
    return owner_model_label().lower() == settings.AUTH_USER_MODEL.lower()


def clear_user_links(apps, schema_editor):
    """Before the link points at another model than users: the ids it holds are users',
    which mean nothing there (the next full sync links owners by their mapped ids)."""
    if not _owner_is_user_model():
        Customer = apps.get_model("autumn_django", "Customer")
        Customer.objects.using(schema_editor.connection.alias).update(user=None)


def clear_owner_links(apps, schema_editor):
    """Backwards, before the link points at users again: owners that are not users."""
    if not _owner_is_user_model():
        Customer = apps.get_model("autumn_django", "Customer")
        Customer.objects.using(schema_editor.connection.alias).update(owner=None)


class Migration(migrations.Migration):

    dependencies = [
        ('autumn_django', '0013_read_marks_and_rereads'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        migrations.swappable_dependency(owner_model_label()),
    ]

    operations = [
        migrations.RunPython(clear_user_links, migrations.RunPython.noop, elidable=True),
        migrations.RemoveConstraint(
            model_name='customer',
            name='autumn_customer_user_env_uniq',
        ),
        migrations.RenameField(
            model_name='customer',
            old_name='user',
            new_name='owner',
        ),
        migrations.AlterField(
            model_name='customer',
            name='owner',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='autumn_customers', to=owner_model_label()),
        ),
        migrations.AddConstraint(
            model_name='customer',
            constraint=models.UniqueConstraint(condition=models.Q(('owner__isnull', False)), fields=('owner', 'env'), name='autumn_customer_owner_env_uniq'),
        ),
        migrations.RunPython(migrations.RunPython.noop, clear_owner_links, elidable=True),
    ]
