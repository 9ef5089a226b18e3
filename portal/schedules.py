"""The portal's periodic jobs, created idempotently after every migrate."""

from django.db import connections


def ensure_schedules(*, using="default", **kwargs) -> None:
    """get_or_create by name, so an operator's change to the schedule in the admin is kept."""
    from django_q.models import Schedule

    from portal.tasks import PURGE_SCHEDULE_NAME

    if Schedule._meta.db_table not in connections[using].introspection.table_names():
        return  # a partial migrate before django_q's tables exist
    Schedule.objects.using(using).get_or_create(
        name=PURGE_SCHEDULE_NAME,
        defaults={
            "func": "portal.tasks.purge_idempotency_keys",
            "schedule_type": Schedule.HOURLY,
            "repeats": -1,
        },
    )
