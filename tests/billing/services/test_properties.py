"""Property-based ledger tests: random sequences of every money movement, against a simple model.

Hypothesis drives top-ups, holds, captures, releases, settles and adjustments across two teams
and a small pool of hold references and idempotency keys (so the same call comes back, and keys
collide across teams and amounts), and repeats the previous call now and then. After every
step, check_ledger's invariants hold and every balance equals the model's.
"""

from dataclasses import dataclass, field

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
    run_state_machine_as_test,
)

from billing import services
from billing.errors import (
    HoldExceeded,
    HoldNotFound,
    IdempotencyConflict,
    InsufficientFunds,
)
from billing.invariants import ledger_problems
from billing.models import Account, AccountKind
from tests.factories import TeamFactory

TEAMS = ("alpha", "beta")
REFERENCES = tuple(f"run:{n}" for n in range(6))
KEYS = ("k1", "k2", "k3")


@dataclass
class ModelHold:
    team: str
    amount: int
    captured: dict[int, int] = field(default_factory=dict)  # step -> cents
    released: int = 0
    open: bool = True

    @property
    def remaining(self) -> int:
        return self.amount - sum(self.captured.values()) - self.released


class LedgerModel:
    """What the balances should be, in plain Python."""

    def __init__(self):
        self.available = dict.fromkeys(TEAMS, 0)
        self.held = dict.fromkeys(TEAMS, 0)
        self.spend = dict.fromkeys(TEAMS, 0)
        self.funding = 0
        self.adjustments = 0
        self.top_ups: dict[str, tuple[str, int]] = {}
        self.adjusts: dict[str, tuple[str, int, str]] = {}
        self.holds: dict[str, ModelHold] = {}

    def top_up(self, team, amount, key):
        if key in self.top_ups:
            if self.top_ups[key] != (team, amount):
                return IdempotencyConflict
            return None
        self.top_ups[key] = (team, amount)
        self.available[team] += amount
        self.funding -= amount
        return None

    def adjust(self, team, amount, direction, key):
        if key in self.adjusts:
            return None if self.adjusts[key] == (team, amount, direction) else IdempotencyConflict
        if direction == "debit" and self.available[team] < amount:
            return InsufficientFunds
        self.adjusts[key] = (team, amount, direction)
        sign = 1 if direction == "credit" else -1
        self.available[team] += sign * amount
        self.adjustments -= sign * amount
        return None

    def place(self, team, amount, reference):
        if reference in self.holds:
            hold = self.holds[reference]
            return None if (hold.team, hold.amount) == (team, amount) else IdempotencyConflict
        if self.available[team] < amount:
            return InsufficientFunds
        self.holds[reference] = ModelHold(team=team, amount=amount)
        self.available[team] -= amount
        self.held[team] += amount
        return None

    def capture(self, reference, step, cents):
        hold = self.holds.get(reference)
        if hold is None:
            return HoldNotFound
        if step in hold.captured:
            return None if hold.captured[step] == cents else IdempotencyConflict
        if not hold.open or hold.remaining < cents:
            return HoldExceeded
        hold.captured[step] = cents
        self.held[hold.team] -= cents
        self.spend[hold.team] += cents
        return None

    def release(self, reference):
        hold = self.holds.get(reference)
        if hold is None:
            return HoldNotFound
        if hold.open:
            self._close(hold, captures=[], price=0)
        return None

    def settle(self, reference, steps, price):
        hold = self.holds.get(reference)
        if hold is None:
            return HoldNotFound
        if hold.open:
            missing = [n for n in range(1, steps + 1) if n not in hold.captured]
            self._close(hold, captures=missing[: hold.remaining // price], price=price)
        return None

    def _close(self, hold, *, captures, price):
        for step in captures:
            hold.captured[step] = price
        charged = price * len(captures)
        rest = hold.remaining
        hold.released += rest
        hold.open = False
        self.held[hold.team] -= charged + rest
        self.spend[hold.team] += charged
        self.available[hold.team] += rest


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        # Each example runs in a savepoint that teardown rolls back: a fresh ledger every time.
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.teams = {slug: TeamFactory(slug=slug) for slug in TEAMS}
        self.model = LedgerModel()
        self.last_call = None

    def teardown(self):
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    @initialize(alpha=st.integers(0, 3000), beta=st.integers(0, 3000))
    def fund_the_teams(self, alpha, beta):
        for slug, amount in (("alpha", alpha), ("beta", beta)):
            if amount:
                self.top_up(slug, amount, key=f"initial-{slug}")

    def _reference(self, data) -> str:
        """Mostly a hold that exists (9 in 10), sometimes any reference in the pool."""
        existing = sorted(self.model.holds)
        if existing and data.draw(st.integers(0, 9), label="existing hold?"):
            return data.draw(st.sampled_from(existing), label="reference")
        return data.draw(st.sampled_from(REFERENCES), label="reference")

    def _call(self, service, kwargs, expected_error):
        self.last_call = (service, kwargs, expected_error)
        self._expect(service, kwargs, expected_error)

    @staticmethod
    def _expect(service, kwargs, expected_error):
        if expected_error is None:
            service(**kwargs)
        else:
            with pytest.raises(expected_error):
                service(**kwargs)

    @rule(team=st.sampled_from(TEAMS), amount=st.integers(1, 3000), key=st.sampled_from(KEYS))
    def top_up(self, team, amount, key):
        expected = self.model.top_up(team, amount, key)
        self._call(
            services.wallet_top_up,
            dict(
                team=self.teams[team],
                amount_cents=amount,
                reference="test",
                actor="command:hypothesis",
                idempotency_key=key,
            ),
            expected,
        )

    @rule(
        team=st.sampled_from(TEAMS),
        amount=st.integers(1, 500),
        direction=st.sampled_from(["credit", "debit"]),
        key=st.sampled_from(KEYS),
    )
    def adjust(self, team, amount, direction, key):
        expected = self.model.adjust(team, amount, direction, key)
        self._call(
            services.wallet_adjust,
            dict(
                team=self.teams[team],
                amount_cents=amount,
                direction=direction,
                reason="hypothesis",
                actor="command:hypothesis",
                idempotency_key=key,
            ),
            expected,
        )

    @rule(
        team=st.sampled_from(TEAMS),
        amount=st.integers(1, 120),
        reference=st.sampled_from(REFERENCES),
    )
    def place_hold(self, team, amount, reference):
        expected = self.model.place(team, amount, reference)
        self._call(
            services.hold_place,
            dict(
                team=self.teams[team],
                amount_cents=amount,
                reference=reference,
                caused_by=reference,
            ),
            expected,
        )

    @rule(data=st.data(), step=st.integers(1, 8), cents=st.sampled_from([5, 8]))
    def capture(self, data, step, cents):
        self.capture_one(self._reference(data), step, cents)

    @precondition(lambda self: self.model.holds)
    @rule(data=st.data(), first=st.integers(1, 6), count=st.integers(2, 12))
    def stream_steps(self, data, first, count):
        # A run streaming its steps at 5 cents each, possibly past what its hold covers.
        reference = self._reference(data)
        for step in range(first, first + count):
            self.capture_one(reference, step, 5)

    def capture_one(self, reference, step, cents):
        expected = self.model.capture(reference, step, cents)
        self._call(
            services.hold_capture,
            dict(reference=reference, step=step, amount_cents=cents, caused_by=reference),
            expected,
        )

    @precondition(lambda self: self.model.holds)
    @rule(data=st.data())
    def release(self, data):
        reference = self._reference(data)
        expected = self.model.release(reference)
        self._call(services.hold_release, dict(reference=reference, caused_by="x"), expected)

    @precondition(lambda self: self.model.holds)
    @rule(
        data=st.data(),
        extra_steps=st.integers(0, 10),
        price=st.sampled_from([5, 8]),
        test_mode=st.booleans(),
    )
    def settle(self, data, extra_steps, price, test_mode):
        reference = self._reference(data)
        hold = self.model.holds.get(reference)
        # Coasty never reports fewer steps than it sent step events for.
        steps = max(hold.captured, default=0) + extra_steps if hold else extra_steps
        expected = self.model.settle(reference, steps, price)
        self._call(
            services.hold_settle,
            dict(
                reference=reference,
                steps_completed=steps,
                step_price_cents=price,
                upstream_credits_charged=0 if test_mode else steps * price,
                upstream_test_mode=test_mode,
                caused_by=reference,
            ),
            expected,
        )

    @rule()
    def repeat_the_last_call(self):
        # The same call twice: a retry, a double click, a duplicated event. The model has
        # already applied it once; the second time must change nothing.
        if self.last_call is None:
            return
        service, kwargs, expected_error = self.last_call
        if expected_error is InsufficientFunds:
            return  # a refused call may succeed later; its repeat is just a new attempt
        self._expect(service, kwargs, expected_error)

    @invariant()
    def balances_match_the_model(self):
        stored: dict = {}  # held and spend summed over their shards
        for team_slug, kind, balance in Account.objects.values_list(
            "team__slug", "kind", "balance_cents"
        ):
            stored[team_slug, kind] = stored.get((team_slug, kind), 0) + balance
        for slug in TEAMS:
            assert stored.get((slug, AccountKind.AVAILABLE), 0) == self.model.available[slug]
            assert stored.get((slug, AccountKind.HELD), 0) == self.model.held[slug]
            assert stored.get((slug, AccountKind.SPEND), 0) == self.model.spend[slug]
        assert stored.get((None, AccountKind.FUNDING), 0) == self.model.funding
        assert stored.get((None, AccountKind.ADJUSTMENTS), 0) == self.model.adjustments

    @invariant()
    def check_ledger_passes(self):
        assert ledger_problems() == []


@pytest.mark.django_db
def test_random_sequences_of_money_movements_keep_the_ledger_right():
    # given two teams and an empty ledger; when hypothesis runs random sequences of calls;
    # then after every call the balances match the model and check_ledger passes
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
