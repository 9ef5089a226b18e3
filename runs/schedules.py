"""The runs app's periodic jobs, created idempotently after every migrate."""

from django.db import transaction

SCHEDULES = [
    # (name, function, minutes between runs)
    ("runs: housekeeping", "runs.tasks.housekeeping", 1),
]


def ensure_schedules(**kwargs) -> None:
    from django_q.models import Schedule

    with transaction.atomic():
        for name, func, minutes in SCHEDULES:
            Schedule.objects.update_or_create(
                name=name,
                defaults={
                    "func": func,
                    "schedule_type": Schedule.MINUTES,
                    "minutes": minutes,
                    "repeats": -1,
                },
            )
