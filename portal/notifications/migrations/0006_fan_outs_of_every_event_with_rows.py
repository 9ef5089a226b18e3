"""Every event that has notifications or deliveries counts as fanned out at least once.

Migration 0005 counted only the events not yet dispatched; those already dispatched kept 0
although their rows exist. A fan-out trusts 0 to mean that no row of the event exists (it then
inserts without skipping conflicts), so such an event, were it ever reopened, could never be
fanned out again. Stored state now says what happened.
"""

from django.db import migrations
from django.db.models import Exists, OuterRef, Q


def count_events_with_rows_as_fanned_out(apps, schema_editor):
    OutboxEvent = apps.get_model("notifications", "OutboxEvent")
    Notification = apps.get_model("notifications", "Notification")
    WebhookDelivery = apps.get_model("notifications", "WebhookDelivery")
    OutboxEvent.objects.filter(fan_outs=0).filter(
        Q(Exists(Notification.objects.filter(event=OuterRef("pk"))))
        | Q(Exists(WebhookDelivery.objects.filter(event=OuterRef("pk"))))
    ).update(fan_outs=1)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0005_fan_outs_counted"),
    ]

    operations = [
        migrations.RunPython(count_events_with_rows_as_fanned_out, migrations.RunPython.noop),
    ]
