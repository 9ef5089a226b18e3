"""The hourly purge job's function moved from `portal.tasks` to `portal.core.tasks`.

Schedules are created once and then left to operators (portal.core.periodic), so an existing
database keeps the old path: point it at the new one. Only that path is rewritten; an operator's
interval or pause stays as it is.
"""

from django.db import migrations

OLD = "portal.tasks.purge_idempotency_keys"
NEW = "portal.core.tasks.purge_idempotency_keys"


def forwards(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.using(schema_editor.connection.alias).filter(func=OLD).update(func=NEW)


def backwards(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.using(schema_editor.connection.alias).filter(func=NEW).update(func=OLD)


class Migration(migrations.Migration):

    dependencies = [
        ("core", "0001_initial"),
        ("django_q", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
