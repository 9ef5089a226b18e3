"""Property-based spend controls: random sequences of launches (some above the approval
threshold), captures, releases, approvals, rejections and month changes, against a model of
what each calendar month holds plus spends.

After every step: each month's row equals the model, no month's held plus spent exceeds the
team's budget, no month of the limited member exceeds their limit, and check_ledger passes.
"""

import contextlib
import datetime as dt
from unittest import mock

import pytest
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from hypothesis.stateful import run_state_machine_as_test as run_machine

from billing import services as billing
from billing.errors import BudgetExceeded, HoldExceeded, MemberLimitExceeded
from billing.invariants import ledger_problems
from billing.models import Hold, MonthUsage
from billing.months import month_of
from portal.teams.models import Role
from runs import services
from runs.models import Run, RunStatus
from runs.services import LaunchRequest
from tests.factories import MembershipFactory, TeamFactory, UserFactory, top_up

PRICE = 5  # v5


class BudgetMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.now = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
        self._clock = mock.patch("django.utils.timezone.now", side_effect=lambda: self.now)
        self._clock.start()
        self.team = TeamFactory(slug="budgeted")
        top_up(self.team, 1_000_000)
        self.people = {}
        for name, role in (("bob", Role.MEMBER), ("carol", Role.MEMBER), ("alice", Role.MANAGER)):
            self.people[name] = UserFactory(username=f"prop-{name}")
            MembershipFactory(team=self.team, user=self.people[name], role=role)
        self.team_used: dict[dt.date, int] = {}
        self.bob_used: dict[dt.date, int] = {}
        self.runs: list[Run] = []

    def teardown(self):
        self._clock.stop()
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    @initialize(
        limit=st.integers(0, 1500), bob_limit=st.integers(0, 600), approval=st.integers(0, 200)
    )
    def set_controls(self, limit, bob_limit, approval):
        self.limit, self.bob_limit, self.approval = limit, bob_limit, approval
        billing.budget_set(
            team=self.team,
            monthly_limit_cents=limit,
            approval_above_cents=approval,
            alert_percents=[50, 100],
            caused_by="command:hypothesis",
        )
        billing.member_limit_set(
            team=self.team,
            user=self.people["bob"],
            monthly_limit_cents=bob_limit,
            caused_by="command:hypothesis",
        )

    @rule(who=st.sampled_from(["bob", "carol", "alice"]), steps=st.integers(1, 60))
    def launch(self, who, steps):
        amount, month = steps * PRICE, month_of(self.now)
        used = self.team_used.get(month, 0)
        request = LaunchRequest(machine_id="vm", task="t", max_steps=steps)
        if used + amount > self.limit:
            with pytest.raises(BudgetExceeded):
                services.run_launch(team=self.team, user=self.people[who], request=request)
            return
        if who == "bob" and self.bob_used.get(month, 0) + amount > self.bob_limit:
            with pytest.raises(MemberLimitExceeded):
                services.run_launch(team=self.team, user=self.people[who], request=request)
            return
        run, _ = services.run_launch(team=self.team, user=self.people[who], request=request)
        expected = RunStatus.AWAITING_APPROVAL if amount > self.approval else RunStatus.PENDING
        assert run.status == expected
        self.team_used[month] = used + amount
        if who == "bob":
            self.bob_used[month] = self.bob_used.get(month, 0) + amount
        self.runs.append(run)

    def _give_back(self, run, cents):
        month = month_of(run.created_at)
        self.team_used[month] -= cents
        if run.created_by == self.people["bob"]:
            self.bob_used[month] -= cents

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), step=st.integers(1, 60))
    def capture(self, data, step):
        run = data.draw(st.sampled_from(self.runs))
        run.refresh_from_db()
        if run.status == RunStatus.AWAITING_APPROVAL:
            return  # not sent to Coasty: nothing can be charged
        with contextlib.suppress(HoldExceeded):  # full, or already settled: nothing moved
            billing.hold_capture(
                reference=run.hold_reference, step=step, amount_cents=PRICE, caused_by="run:x"
            )

    @precondition(lambda self: self.runs)
    @rule(data=st.data())
    def release(self, data):
        run = data.draw(st.sampled_from(self.runs))
        run.refresh_from_db()
        if run.status == RunStatus.AWAITING_APPROVAL:
            return
        hold = Hold.objects.get(reference=run.hold_reference)
        billing.hold_release(reference=run.hold_reference, caused_by="run:x")
        self._give_back(run, hold.remaining_cents)  # 0 when released before

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), approve=st.booleans())
    def decide(self, data, approve):
        run = data.draw(st.sampled_from(self.runs))
        run.refresh_from_db()
        if run.status != RunStatus.AWAITING_APPROVAL or run.created_by == self.people["alice"]:
            return
        if approve:
            services.run_approve(run=run, user=self.people["alice"])
            services.run_approve(run=run, user=self.people["alice"])  # twice: the same
            assert Run.objects.get(pk=run.pk).status == RunStatus.PENDING
        else:
            services.run_reject(run=run, user=self.people["alice"], reason="no")
            self._give_back(run, run.held_cents)

    @rule(days=st.integers(1, 40))
    def time_passes(self, days):
        self.now += dt.timedelta(days=days)

    @invariant()
    def months_are_exact_and_within_the_budget(self):
        rows = MonthUsage.objects.filter(team=self.team)
        team_rows = {r.month: r.used_cents for r in rows if r.user_id is None}
        bob_rows = {r.month: r.used_cents for r in rows if r.user_id == self.people["bob"].pk}
        assert {m: c for m, c in team_rows.items() if c} == {
            m: c for m, c in self.team_used.items() if c
        }
        assert {m: c for m, c in bob_rows.items() if c} == {
            m: c for m, c in self.bob_used.items() if c
        }
        assert all(used <= self.limit for used in team_rows.values())
        assert all(used <= self.bob_limit for used in bob_rows.values())

    @invariant()
    def check_ledger_passes(self):
        assert ledger_problems() == []


@pytest.mark.django_db
def test_random_sequences_keep_every_month_within_its_budget():
    run_machine(
        BudgetMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
