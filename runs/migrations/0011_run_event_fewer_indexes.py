"""Two fewer indexes to write for every stored event: the run's own (the unique (run, seq) leads
with it) and the actor's, now only where an actor is set.

Only the indexes change in the database (no constraint is dropped and made again, which would
check every event row of a large table again): the fields' db_index in the state, DROP INDEX
in the database."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def _drop(index: str, column: str) -> migrations.RunSQL:
    return migrations.RunSQL(
        f'DROP INDEX IF EXISTS "{index}"',
        reverse_sql=f'CREATE INDEX "{index}" ON "runs_runevent" ("{column}")',
    )


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0010_one_delivery_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="runevent",
                    name="actor",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="runevent",
                    name="run",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="runs.run",
                    ),
                ),
            ],
            database_operations=[
                _drop("runs_runevent_actor_id_104c5df7", "actor_id"),
                _drop("runs_runevent_run_id_8bd13aa7", "run_id"),
            ],
        ),
        migrations.AddIndex(
            model_name="runevent",
            index=models.Index(
                condition=models.Q(("actor__isnull", False)),
                fields=["actor"],
                name="run_event_actor",
            ),
        ),
    ]
