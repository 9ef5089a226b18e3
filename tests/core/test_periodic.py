"""The periodic jobs every app registers (portal.core.periodic): created by migrate, once,
and left alone afterwards so an operator's change in the admin survives a deploy."""

import pytest
from django.core.management.sql import emit_post_migrate_signal
from django_q.models import Schedule

pytestmark = pytest.mark.django_db

JOBS = {
    "api: purge expired idempotency keys": ("portal.core.tasks.purge_idempotency_keys", 60),
    "billing: reconcile finished holds": ("billing.tasks.reconcile_billing", 15),
    "runs: housekeeping": ("runs.tasks.housekeeping", 1),
    "schedules: tick": ("schedules.tasks.tick", 1),
}


def migrate_finished():
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")


def test_migrate_creates_each_job_once_and_each_names_a_real_task():
    from django.utils.module_loading import import_string

    # when migrate finishes twice more (the test database was migrated once already)
    migrate_finished()
    migrate_finished()
    # then each job exists once, every so many minutes, calling a function that exists
    rows = {
        row.name: (row.func, row.minutes)
        for row in Schedule.objects.filter(name__in=JOBS, schedule_type=Schedule.MINUTES)
    }
    assert rows == JOBS
    assert Schedule.objects.filter(name__in=JOBS).count() == len(JOBS)
    for func, _minutes in JOBS.values():
        assert callable(import_string(func))


def test_an_operators_change_to_a_job_survives_the_next_migrate():
    # given an operator slowed housekeeping down to every 5 minutes in the admin
    Schedule.objects.filter(name="runs: housekeeping").update(minutes=5)
    # when the next deploy migrates
    migrate_finished()
    # then the change is kept
    assert Schedule.objects.get(name="runs: housekeeping").minutes == 5
