"""The periodic jobs every app registers (portal.core.periodic): created by migrate, once,
and left alone afterwards so an operator's change in the admin survives a deploy."""

import pytest
from django.core.management.sql import emit_post_migrate_signal
from django_q.models import Schedule

pytestmark = pytest.mark.django_db

JOBS = {
    "api: purge expired idempotency keys": ("portal.core.tasks.purge_idempotency_keys", 60),
    "logins: purge old failed logins": ("portal.core.tasks.purge_login_failures", 24 * 60),
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


def test_the_schedules_tick_keeps_to_the_minute_grid():
    # given the jobs made afresh (as on a new install)
    import datetime as dt

    from django.utils import timezone
    from django_q.models import Schedule as Job

    Job.objects.filter(name="schedules: tick").delete()
    before = timezone.now()
    migrate_finished()
    tick = Job.objects.get(name="schedules: tick")
    # then its first run is one second into the next whole minute, so that each run, a minute
    # after the last planned one, comes just after the minute an occurrence is due
    assert tick.next_run.second == 1 and tick.next_run.microsecond == 0
    assert before < tick.next_run <= before + dt.timedelta(seconds=61)
    assert tick.next_run.replace(second=0) > before.replace(second=0, microsecond=0)
    # and a job with no such wish starts at once, as before
    housekeeping = Job.objects.get(name="runs: housekeeping")
    assert housekeeping.next_run <= timezone.now()
