"""The worker's minute clock (portal/core/management/commands/worker.py): it queues the minute
tasks once a minute, just after the minute begins, and never twice for one minute."""

from django.conf import settings

from portal.core.management.commands.worker import MinuteClock

MINUTE = 1_800_000_000 - 1_800_000_000 % 60  # some whole minute, in epoch seconds


def test_it_waits_for_the_next_minutes_second_then_queues_once():
    clock = MinuteClock(["schedules.tasks.tick"], second=1.0, now=MINUTE + 20)
    assert clock.tick(now=MINUTE + 30) == []
    assert clock.tick(now=MINUTE + 60.5) == []  # the minute began, its second not yet
    assert clock.tick(now=MINUTE + 61.0) == ["schedules.tasks.tick"]
    assert clock.tick(now=MINUTE + 61.25) == []  # once per minute
    assert clock.tick(now=MINUTE + 120.9) == []
    assert clock.tick(now=MINUTE + 121.2) == ["schedules.tasks.tick"]


def test_a_stalled_loop_or_a_clock_step_queues_once_not_once_per_minute():
    clock = MinuteClock(["t"], second=1.0, now=MINUTE)
    assert clock.tick(now=MINUTE + 1) == ["t"]
    # the main loop stalled for five minutes: one queueing, then the clock keeps the grid
    assert clock.tick(now=MINUTE + 301.4) == ["t"]
    assert clock.tick(now=MINUTE + 330) == []
    assert clock.tick(now=MINUTE + 361) == ["t"]
    # the system clock stepped back an hour: the next minute of the new time, not an hour on
    assert clock.tick(now=MINUTE - 3600) == []
    assert clock.tick(now=MINUTE - 3600 + 61) == ["t"]


def test_started_just_after_the_second_it_waits_for_the_next_minute():
    clock = MinuteClock(["t"], second=1.0, now=MINUTE + 1.5)
    assert clock.tick(now=MINUTE + 2) == []
    assert clock.tick(now=MINUTE + 61) == ["t"]


def test_the_schedules_tick_is_a_minute_task_by_default():
    from django.utils.module_loading import import_string

    assert "schedules.tasks.tick" in settings.WORKER_MINUTE_TASKS
    assert all(callable(import_string(path)) for path in settings.WORKER_MINUTE_TASKS)
