"""OutboxEvent.fan_outs: how many fan-outs of an event have committed.

An event not yet dispatched when this runs may have been fanned out before (an email that
could not be sent reopens it), so it is counted as fanned out once: its next fan-out then
skips the rows made before, as every fan-out did until now.
"""

from django.db import migrations, models


def count_undispatched_as_fanned_out(apps, schema_editor):
    OutboxEvent = apps.get_model("notifications", "OutboxEvent")
    OutboxEvent.objects.filter(dispatched_at__isnull=True).update(fan_outs=1)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0004_outbox_references_unlocked"),
    ]

    operations = [
        migrations.AddField(
            model_name="outboxevent",
            name="fan_outs",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.RunPython(count_undispatched_as_fanned_out, migrations.RunPython.noop),
    ]
