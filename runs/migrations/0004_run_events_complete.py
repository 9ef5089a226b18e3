from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0003_run_upstream_numbers_bigint"),
    ]

    operations = [
        # Runs that exist already count as complete: a deploy must not backfill every old
        # run's stream at once. New runs start incomplete.
        migrations.AddField(
            model_name="run",
            name="events_complete",
            field=models.BooleanField(default=True),
        ),
        migrations.AlterField(
            model_name="run",
            name="events_complete",
            field=models.BooleanField(default=False),
        ),
    ]
