#!/usr/bin/env python
"""The schedules tick at 10,000 schedules (PostgreSQL).

    python -m bench.schedules [--schedules 10000] [--due 500] [--db portal_bench]

Makes `--schedules` hourly schedules over 100 funded teams. Measures (1) an idle tick, when
none is due: what every worker pays every minute; (2) one tick that finds `--due` of them due
at once and launches each through the launch service (run row, wallet hold, submit queued):
its cost per occurrence, and how late each launch is recorded after the tick started (p50,
p99). Real lateness adds the wait for the tick itself: django-q2 runs it once a minute.
Goals: an idle tick within 50 ms; at most 250 ms per launched occurrence, so that one worker's
tick (a 50 s budget) launches at least 200 occurrences and several workers' ticks share the rest.
"""

import argparse
import datetime as dt
import statistics
import time
import uuid

from bench.common import BENCH_DB, Figure, emit, percentile, setup_django


def make_schedules(count: int) -> list:
    from django.contrib.auth import get_user_model

    from billing.services import wallet_top_up
    from portal.teams.models import Membership, Role, Team
    from schedules.models import Schedule

    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    owners = []
    for n in range(100):
        team = Team.objects.create(slug=f"sched-{n}-{uuid.uuid4().hex[:4]}", name=f"Team {n}")
        user = get_user_model().objects.create_user(f"{team.slug}-owner")
        Membership.objects.create(team=team, user=user, role=Role.MEMBER)
        wallet_top_up(
            team=team, amount_cents=1_000_000, reference="bench", actor="command:bench",
            idempotency_key=f"bench:{team.slug}",
        )  # fmt: skip
        owners.append((team, user))
    rows = [
        Schedule(
            team=owners[n % 100][0],
            created_by=owners[n % 100][1],
            name=f"export {n}",
            cron=f"{n % 60} * * * *",
            timezone="Europe/Berlin",
            machine_id="vm-linux-1",
            task="Export the new leads",
            max_steps=10,
            next_occurrence_at=later,
        )
        for n in range(count)
    ]
    return Schedule.objects.bulk_create(rows, batch_size=2000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--due", type=int, default=500)
    parser.add_argument("--db", default=BENCH_DB, help="a portal_bench* database, migrated")
    args = parser.parse_args()
    setup_django(args.db)
    from django.db import connection

    from schedules.models import Schedule, ScheduleLaunch
    from schedules.services import schedules_tick

    schedules = make_schedules(args.schedules)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    idle = []
    for _ in range(30):
        started = time.perf_counter()
        assert schedules_tick() == {}
        idle.append((time.perf_counter() - started) * 1000)

    # `--due` schedules fall due at once: their occurrence is the minute that just began
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    due_ids = [s.pk for s in schedules[: args.due]]
    Schedule.objects.filter(pk__in=due_ids).update(cron="* * * * *", next_occurrence_at=now)
    started_at = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    counts = schedules_tick(now=now + dt.timedelta(seconds=1), budget_seconds=600)
    busy = time.perf_counter() - started
    assert counts.get("launched") == args.due, counts
    lateness = [
        (recorded - started_at).total_seconds()
        for recorded in ScheduleLaunch.objects.values_list("recorded_at", flat=True)
    ]
    emit(
        [
            Figure(
                f"schedules: idle tick, {args.schedules:,} schedules (median)",
                statistics.median(idle),
                "ms",
                50,
                "<=",
            ),
            Figure(
                f"schedules: tick launching {args.due:,} due occurrences, per occurrence",
                busy * 1000 / args.due,
                "ms",
                250,  # one tick's 50 s budget launches at least 200 occurrences per worker
                "<=",
            ),
            Figure(
                "schedules: launch recorded after the tick started, p50",
                percentile(lateness, 50),
                "s",
                60,
                "<=",
            ),
            Figure(
                "schedules: launch recorded after the tick started, p99",
                percentile(lateness, 99),
                "s",
                60,
                "<=",
            ),
        ]
    )


if __name__ == "__main__":
    main()
