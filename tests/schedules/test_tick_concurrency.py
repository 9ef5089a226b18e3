"""Many ticks at once — threads of one worker, and separate worker processes — launch each
due occurrence exactly once. Runs on SQLite and, with DATABASE_URL=postgres://…, PostgreSQL."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connection

from runs.models import Run
from schedules import services
from schedules.models import Schedule, ScheduleLaunch
from tests.schedules.conftest import utc

pytestmark = pytest.mark.django_db(transaction=True)

DUE_AT = utc(2026, 5, 4, 9, 0, 20)
SCHEDULES = 12
ROOT = Path(__file__).resolve().parents[2]


def due_schedules(make_schedule):
    return [
        make_schedule("0 9 * * *", start=utc(2026, 5, 4, 8), name=f"export {n}")
        for n in range(SCHEDULES)
    ]


def assert_each_occurrence_launched_once():
    assert ScheduleLaunch.objects.count() == SCHEDULES
    assert set(ScheduleLaunch.objects.values_list("outcome", flat=True)) == {"launched"}
    runs = list(Run.objects.values_list("schedule_id", flat=True))
    assert len(runs) == SCHEDULES and len(set(runs)) == SCHEDULES
    assert not Schedule.objects.filter(next_occurrence_at__lte=DUE_AT).exists()


def ticks_at_once(now, *, threads: int = 4) -> list[dict]:
    """`threads` ticks started together at `now`; their results. A thread's exception fails
    the caller (it would otherwise be lost with the thread)."""
    barrier = threading.Barrier(threads)
    results, errors = [], []

    def tick():
        try:
            barrier.wait()
            results.append(services.schedules_tick(now=now))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    started = [threading.Thread(target=tick) for _ in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join(timeout=120)
    assert errors == []
    return results


def test_ticks_in_several_threads_launch_each_occurrence_once(make_schedule):
    # given twelve schedules due at 09:00
    due_schedules(make_schedule)

    # when four ticks run at once, twice over
    results = ticks_at_once(DUE_AT) + ticks_at_once(DUE_AT)

    # then each occurrence launched exactly one run
    assert sum(r.get("launched", 0) for r in results) == SCHEDULES
    assert_each_occurrence_launched_once()


@pytest.mark.parametrize(("catch_up", "outcome"), [("skip", "skipped"), ("once", "launched")])
def test_ticks_in_several_threads_after_a_downtime_record_one_outcome_per_schedule(
    make_schedule, catch_up, outcome
):
    # given twelve hourly schedules whose last occurrence was 08:00, and a portal down till 11:20
    for n in range(SCHEDULES):
        make_schedule("0 * * * *", start=utc(2026, 5, 4, 7, 30), name=f"h{n}", catch_up=catch_up)
    services.schedules_tick(now=utc(2026, 5, 4, 8, 0, 30))

    # when four workers' first ticks after the outage run at once
    ticks_at_once(utc(2026, 5, 4, 11, 20))

    # then each schedule has one record for the missed hours (11:00), by its policy, and only
    # the policy "once" launched a run for it
    after = ScheduleLaunch.objects.filter(occurrence=utc(2026, 5, 4, 11))
    assert after.count() == SCHEDULES and set(after.values_list("outcome", flat=True)) == {outcome}
    assert Run.objects.count() == SCHEDULES * (2 if catch_up == "once" else 1)


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


TICK_SCRIPT = """
import datetime as dt, json, os, sys, time
import django
django.setup()
from schedules.services import schedules_tick
start_at, now = float(sys.argv[1]), dt.datetime.fromisoformat(sys.argv[2])
time.sleep(max(0.0, start_at - time.time()))  # every process ticks at the same moment
print(json.dumps(schedules_tick(now=now)))
"""


def test_ticks_in_several_worker_processes_launch_each_occurrence_once(make_schedule, tmp_path):
    # given twelve schedules due at 09:00, committed where other processes see them
    due_schedules(make_schedule)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": _database_url(),
        "PORTAL_VAR_DIR": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "WARNING",
    }
    # when three worker processes tick at the same moment
    start_at = time.time() + 4
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TICK_SCRIPT, str(start_at), DUE_AT.isoformat()],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]

    # then together they launched each occurrence once
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in outputs]
    counts = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert sum(c.get("launched", 0) for c in counts) == SCHEDULES
    assert_each_occurrence_launched_once()
