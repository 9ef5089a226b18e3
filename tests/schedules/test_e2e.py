"""End to end: a schedule made in the UI launches on time with two worker clusters running,
never twice for one occurrence, and its runs reach Coasty (the simulator) once each.

Slow: it waits for two real minutes to come round (two to three minutes in all). It prints the
launch lateness (seconds from each occurrence to its launch being recorded), which is the tick's
own cadence: the one-minute tick job is planned one second into each minute, and django-q2's
scheduler, which looks every 30 s in each cluster, starts it within 30 s of that.
"""

import os

import pytest
from django.core.management.sql import emit_post_migrate_signal

from runs.models import Run
from schedules.models import Schedule, ScheduleLaunch
from tests.factories import top_up
from tests.live import Worker, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# SCHEDULES_E2E_OCCURRENCES=10 waits for more minutes, for a lateness figure worth a p99.
OCCURRENCES = int(os.environ.get("SCHEDULES_E2E_OCCURRENCES", "2"))


def test_a_schedule_made_in_the_ui_launches_each_minute_once_with_two_clusters(
    live_stack, team, make_member, client_for
):
    # given a funded team, its member, the periodic jobs, and a second worker cluster
    top_up(team, 5000)
    bob = make_member(team, "member", username="bob")
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    second = Worker(coasty_base_url=live_stack.sim.base_url, public_url=live_stack.url).start()
    try:
        # when bob makes an every-minute schedule on the schedules page
        response = client_for(bob).post(
            "/teams/research/schedules/new/",
            {
                "name": "Every minute",
                "preset": "custom",
                "cron": "* * * * *",
                "timezone": "Europe/Berlin",
                "catch_up": "skip",
                "enabled": "on",
                "machine_id": "vm-linux-1",
                "task": "Export the new leads",
                "cua_version": "v5",
                "max_steps": "3",
                "on_awaiting_human": "pause",
            },
        )
        assert response.status_code == 302, response.content[:2000]
        schedule = Schedule.objects.get()

        # then minute after minute one run is launched per occurrence, and Coasty gets each once
        wait_until(
            lambda: ScheduleLaunch.objects.filter(outcome="launched").count() >= OCCURRENCES,
            timeout=60 * (OCCURRENCES + 2),
            interval=1,
            what=f"{OCCURRENCES} scheduled launches",
        )
        Schedule.objects.filter(pk=schedule.pk).update(enabled=False, next_occurrence_at=None)
        launches = list(ScheduleLaunch.objects.filter(schedule=schedule))
        assert all(x.outcome == "launched" and x.run_id for x in launches)
        assert len({x.occurrence for x in launches}) == len(launches)
        runs = Run.objects.filter(schedule_id=schedule.pk)
        assert runs.count() == len(launches)
        wait_until(
            lambda: not runs.filter(upstream_id__isnull=True).exists(),
            timeout=60,
            what="Coasty to accept the scheduled runs",
        )
        per_key = live_stack.sim.state()["runs_per_idempotency_key"]
        assert all(per_key[run.idempotency_key] == 1 for run in runs)
        lateness = sorted(x.lateness_seconds for x in launches)
        # reported, not asserted: p50/p99 over the launches (nearest rank)
        p50, p99 = (lateness[min(len(lateness) - 1, int(q * len(lateness)))] for q in (0.5, 0.99))
        print(
            f"launch lateness, s: {[round(x, 1) for x in lateness]}; "
            f"p50 {p50:.1f}, p99 {p99:.1f} over {len(lateness)} occurrences"
        )
    finally:
        second.stop()
