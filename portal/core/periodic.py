"""The portal's periodic jobs: each app states its own, this module creates them, once.

A job is a django-q2 `Schedule` row, created after every migrate if no row of that name exists.
Only created, never overwritten: an operator who changed a schedule in the admin (another
interval, paused it) keeps the change across deploys.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate
from django.utils import timezone

from portal.core.queue import task_path


@dataclass(frozen=True)
class Periodic:
    """A job that runs every `minutes`: `task` is a `tasks.py` entry point taking no argument.

    `at_second`: its first run is at that second of the next whole minute, and django-q2 keeps
    it on that grid (it adds `minutes` to the last planned run, not to the clock). A job that
    serves minute-exact times (the schedules tick) then runs just after each minute begins,
    instead of at whatever second the portal was first migrated."""

    name: str
    task: Callable[[], object]
    minutes: int
    at_second: int | None = None


def first_run(job: Periodic, now: datetime) -> datetime:
    if job.at_second is None:
        return now
    return now.replace(second=job.at_second, microsecond=0) + timedelta(minutes=1)


def register_periodic(app_config: AppConfig, jobs: Iterable[Periodic]) -> None:
    """Create `jobs` after each migrate of `app_config` (call from its `ready()`)."""
    post_migrate.connect(
        partial(ensure_periodic, jobs=tuple(jobs)),
        sender=app_config,
        weak=False,
        dispatch_uid=f"periodic jobs of {app_config.label}",
    )


def ensure_periodic(*, jobs: Iterable[Periodic], using: str = "default", **kwargs: Any) -> None:
    from django_q.models import Schedule

    if Schedule._meta.db_table not in connections[using].introspection.table_names():
        return  # a partial migrate (`migrate billing`) before django_q's tables exist
    for job in jobs:
        Schedule.objects.using(using).get_or_create(
            name=job.name,
            defaults={
                "func": task_path(job.task),
                "schedule_type": Schedule.MINUTES,
                "minutes": job.minutes,
                "repeats": -1,
                "next_run": first_run(job, timezone.now()),
            },
        )
