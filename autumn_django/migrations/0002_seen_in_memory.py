# A sync keeps the customers it saw in memory instead of stamping every row with its run:
# unchanged customers are no longer rewritten. How far a run got is kept on the run.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("autumn_django", "0001_initial"),
    ]

    operations = [
        migrations.RemoveField(model_name="customer", name="last_seen_run_id"),
        migrations.AddField(
            model_name="syncrun",
            name="reached_created_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
