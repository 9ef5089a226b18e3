"""Count the holds of the current month that were placed before spend controls existed, so a
budget set right after the upgrade sees the month so far. Older months are left uncounted (no
budget can refuse anything in them any more)."""

from django.db import migrations


def backfill(apps, schema_editor):
    from billing.months import month_bounds, month_of

    Hold = apps.get_model("billing", "Hold")
    Transfer = apps.get_model("billing", "Transfer")
    MonthUsage = apps.get_model("billing", "MonthUsage")
    month = month_of()
    start, end = month_bounds(month)
    holds = Hold.objects.filter(team_usage__isnull=True, created_at__gte=start, created_at__lt=end)
    placed_by = dict(
        Transfer.objects.filter(kind="hold", hold__in=holds).values_list(
            "hold_id", "caused_by_user_id"
        )
    )
    for hold in holds.only("pk", "team_id", "amount_cents", "released_cents"):
        rest = hold.amount_cents - hold.released_cents
        team_row, _ = MonthUsage.objects.get_or_create(team_id=hold.team_id, user=None, month=month)
        hold.team_usage_id = team_row.pk
        user_id = placed_by.get(hold.pk)
        rows = [team_row.pk]
        if user_id is not None:
            member_row, _ = MonthUsage.objects.get_or_create(
                team_id=hold.team_id, user_id=user_id, month=month
            )
            hold.member_usage_id = member_row.pk
            rows.append(member_row.pk)
        hold.save(update_fields=["team_usage", "member_usage"])
        for pk in rows:
            row = MonthUsage.objects.get(pk=pk)
            row.used_cents += rest
            row.save(update_fields=["used_cents"])


class Migration(migrations.Migration):
    dependencies = [("billing", "0005_spend_controls")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
