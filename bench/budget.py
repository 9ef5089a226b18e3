#!/usr/bin/env python
"""The cost of spend controls per launch: `run_launch` (the run row, its hold, and the submit
task queued on commit, in one transaction, as the launch form and the API call it) timed
in-process on PostgreSQL, without a budget and with a monthly budget, a member limit and an
approval threshold (above the launch's cost, so it is submitted like any launch).

    python -m bench.budget [--launches 300] [--db portal_bench]

Goal: the budget check adds at most 50 % to the launch's p50 (it is two guarded single-row
UPDATEs and two small reads in the same transaction).
"""

import argparse
import time
import uuid

from bench.common import BENCH_DB, Figure, emit, percentile, setup_django


def team_with_member(budgeted: bool):
    from django.contrib.auth import get_user_model

    from billing.services import budget_set, member_limit_set, wallet_top_up
    from portal.teams.models import Membership, Role, Team

    slug = f"budget-{uuid.uuid4().hex[:6]}"
    team = Team.objects.create(slug=slug, name="Budget bench")
    user = get_user_model().objects.create_user(f"{slug}-member")
    Membership.objects.create(team=team, user=user, role=Role.MEMBER)
    for n in range(10):
        wallet_top_up(
            team=team, amount_cents=1_000_000, reference="bench", actor="command:bench",
            idempotency_key=f"bench:{slug}:{n}",
        )  # fmt: skip
    if budgeted:
        budget_set(
            team=team,
            monthly_limit_cents=10_000_000,
            approval_above_cents=1_000_000,
            alert_percents=[50, 80, 100],
            caused_by="command:bench",
        )
        member_limit_set(
            team=team, user=user, monthly_limit_cents=10_000_000, caused_by="command:bench"
        )
    return team, user


def launch_times(budgeted: bool, launches: int) -> list[float]:
    from runs.services import LaunchRequest, run_launch

    team, user = team_with_member(budgeted)
    request = LaunchRequest(machine_id="vm-bench", task="Bench launch", max_steps=10)
    for _ in range(10):  # warm: connections, caches, the month rows
        run_launch(team=team, user=user, request=request)
    times = []
    for _ in range(launches):
        started = time.perf_counter()
        run_launch(team=team, user=user, request=request)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--launches", type=int, default=300)
    parser.add_argument("--db", default=BENCH_DB)
    args = parser.parse_args()
    setup_django(args.db)
    # Interleaved, so drift (other load on the machine) hits both alike.
    without, with_budget = [], []
    for _ in range(3):
        without += launch_times(False, args.launches // 3)
        with_budget += launch_times(True, args.launches // 3)
    base = percentile(without, 50)
    note = f"{len(without)} launches each, in-process run_launch on PostgreSQL"
    emit(
        [
            Figure("budget: launch p50 without a budget", base, "ms", base, "<=", note=note),
            Figure(
                "budget: launch p50 with budget, member limit and approval threshold",
                percentile(with_budget, 50),
                "ms",
                base * 1.5,
                "<=",
                note=note + "; limit: 1.5 x the p50 without",
            ),
        ]
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
