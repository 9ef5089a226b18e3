"""Graceful stop (issue 12, case 9): SIGTERM to a worker's process group mid-follow, and within
10 s every process of it has exited and every stream lease has been handed back."""

import os
import signal
import time

import pytest

from runs.models import Run
from runs.services import LaunchRequest, run_launch
from runs.simulator.testing import run_simulator
from tests.factories import top_up
from tests.live import Worker, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_mid_follow_hands_leases_back_and_exits_within_10_s(settings, team, make_member):
    with run_simulator(speed=4) as sim:
        settings.COASTY_BASE_URL = sim.base_url
        settings.PORTAL_PUBLIC_URL = "https://portal.invalid"  # the stream only
        worker = Worker(
            coasty_base_url=sim.base_url,
            public_url="https://portal.invalid",
            extra_env={"RUNS_FOLLOW_BUDGET_SECONDS": "120"},
        ).start()
        try:
            # given a worker following live runs that keep stepping
            top_up(team, 100_000)
            bob = make_member(team)
            runs = [
                run_launch(
                    team=team,
                    user=bob,
                    request=LaunchRequest(
                        machine_id="vm-linux-1", task="[forever] [slow] watch", max_steps=500
                    ),
                )[0].pk
                for _ in range(3)
            ]
            wait_until(
                lambda: (
                    Run.objects.filter(pk__in=runs, last_seq__gt=0).exclude(follow_owner="").count()
                    == 3
                ),
                timeout=60,
                what="the worker to follow all three runs",
            )

            # when its process group gets SIGTERM in the middle of following
            pgid = worker.process.pid
            os.killpg(pgid, signal.SIGTERM)
            sent = time.monotonic()
            while group_alive(pgid) and time.monotonic() - sent < 15:
                worker.process.poll()
                time.sleep(0.05)
            took = time.monotonic() - sent

            # then every process of the worker is gone within 10 s, and the leases are back
            assert not group_alive(pgid), worker.output()
            assert took < 10, f"took {took:.1f} s"
            print(f"worker group gone {took:.2f} s after SIGTERM")
            assert not Run.objects.filter(pk__in=runs).exclude(follow_owner="").exists()
        finally:
            worker.kill() if group_alive(worker.process.pid) else None
            worker.stop()
