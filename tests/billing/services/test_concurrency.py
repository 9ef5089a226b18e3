"""Many runs at once on one wallet, on PostgreSQL (skipped on SQLite, which serialises writers).

Each test starts its threads at a barrier so the calls really overlap, and every thread closes
its own database connection.
"""

import threading
import uuid

import pytest
from django.db import connections

from billing import services
from billing.errors import HoldExceeded, InsufficientFunds
from billing.models import Account, AccountKind, Hold, Transfer, TransferKind
from tests.factories import TeamFactory, place_hold, top_up

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def at_once(count, work):
    """Run work(i) in `count` threads released together; return (results, errors) by index."""
    barrier = threading.Barrier(count)
    results, errors = {}, {}

    def target(i):
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except Exception as exc:
            errors[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread hung (deadlock?)"
    return results, errors


def balance(team, kind):
    """The team's balance of a kind (held and spend summed over their shards)."""
    return sum(Account.objects.filter(team=team, kind=kind).values_list("balance_cents", flat=True))


def test_fifty_holds_on_a_wallet_that_affords_ten_leave_exactly_ten(requires_postgres):
    # given a wallet with exactly enough for ten $1.00 holds
    team = TeamFactory()
    top_up(team, 1000)
    # when 50 runs place their holds at the same moment
    results, errors = at_once(50, lambda i: place_hold(team, 100))
    # then exactly ten got one, forty were told there is not enough, and nothing went negative
    assert len(results) == 10
    assert len(errors) == 40
    assert all(isinstance(error, InsufficientFunds) for error in errors.values())
    assert Hold.objects.filter(team=team).count() == 10
    assert balance(team, AccountKind.AVAILABLE) == 0
    assert balance(team, AccountKind.HELD) == 1000


def test_a_step_captured_twice_at_once_is_charged_once(requires_postgres):
    # given an open hold
    team = TeamFactory()
    top_up(team, 1000)
    hold = place_hold(team, 100)
    # when 20 deliveries of step 7 (SSE, webhook, retries) capture it at the same moment
    results, errors = at_once(
        20,
        lambda i: services.hold_capture(
            reference=hold.reference, step=7, amount_cents=5, caused_by=f"delivery:{i}"
        ),
    )
    # then all of them see one and the same capture, and the team paid 5 cents
    assert errors == {}
    assert len({transfer.pk for transfer in results.values()}) == 1
    assert Transfer.objects.filter(kind=TransferKind.CAPTURE).count() == 1
    assert balance(team, AccountKind.SPEND) == 5


def test_captures_beyond_the_hold_are_refused_under_concurrency(requires_postgres):
    # given a hold that covers 10 steps
    team = TeamFactory()
    top_up(team, 1000)
    hold = place_hold(team, 50)
    # when 30 different steps are captured at the same moment
    results, errors = at_once(
        30,
        lambda i: services.hold_capture(
            reference=hold.reference, step=i + 1, amount_cents=5, caused_by="run"
        ),
    )
    # then exactly 10 were charged and 20 refused; the hold is used up, never overdrawn
    assert len(results) == 10
    assert all(isinstance(error, HoldExceeded) for error in errors.values())
    assert len(errors) == 20
    assert balance(team, AccountKind.HELD) == 0
    assert balance(team, AccountKind.SPEND) == 50


def test_fifty_runs_capturing_on_one_wallet_never_deadlock(requires_postgres):
    # given 50 open holds on one team's wallet
    team = TeamFactory()
    top_up(team, 50 * 40)
    holds = [place_hold(team, 40) for _ in range(50)]

    # when each run captures its 8 steps, and every fifth run then releases or settles
    def run(i):
        reference = holds[i].reference
        for step in range(1, 9):
            services.hold_capture(reference=reference, step=step, amount_cents=5, caused_by="r")
        if i % 5 == 0:
            services.hold_release(reference=reference, caused_by="r")
        elif i % 5 == 1:
            services.hold_settle(
                reference=reference,
                steps_completed=8,
                step_price_cents=5,
                upstream_credits_charged=40,
                upstream_test_mode=False,
                caused_by="r",
            )

    _results, errors = at_once(50, run)
    # then every step was charged once and nothing failed
    assert errors == {}
    assert balance(team, AccountKind.SPEND) == 50 * 40
    assert balance(team, AccountKind.HELD) == 0


def test_settle_racing_late_step_events_charges_each_step_once(requires_postgres):
    # given a hold of 10 steps with nothing captured yet
    team = TeamFactory()
    top_up(team, 1000)
    hold = place_hold(team, 50)

    # when the settle (Coasty says 6 steps) races the step events for steps 1-6
    def work(i):
        if i == 0:
            return services.hold_settle(
                reference=hold.reference,
                steps_completed=6,
                step_price_cents=5,
                upstream_credits_charged=30,
                upstream_test_mode=False,
                caused_by="settle",
            )
        try:
            return services.hold_capture(
                reference=hold.reference, step=i, amount_cents=5, caused_by="event"
            )
        except HoldExceeded:
            return None  # the settle closed the hold first: nothing to charge any more

    results, errors = at_once(7, work)
    # then the six steps are charged exactly once, the rest went back, and it reconciles
    assert errors == {}
    assert balance(team, AccountKind.SPEND) == 30
    assert balance(team, AccountKind.AVAILABLE) == 970
    assert results[0].status == "matched"


def test_the_same_top_up_submitted_at_once_lands_once(requires_postgres):
    # given a team
    team = TeamFactory()
    key = str(uuid.uuid4())
    # when ten requests bring the same top-up at the same moment
    results, errors = at_once(10, lambda i: top_up(team, 5000, key=key))
    # then one transfer, returned to all of them
    assert errors == {}
    assert len({transfer.pk for transfer in results.values()}) == 1
    assert balance(team, AccountKind.AVAILABLE) == 5000


def test_two_teams_creating_accounts_at_once_get_one_set_each(requires_postgres):
    # given two brand-new teams
    teams = [TeamFactory(), TeamFactory()]
    # when 20 top-ups arrive at once, ten per team, each creating the accounts lazily
    _results, errors = at_once(20, lambda i: top_up(teams[i % 2], 100))
    # then each team has exactly one account of each kind and all the money
    assert errors == {}
    for team in teams:
        assert Account.objects.filter(team=team).count() == 1
        assert balance(team, AccountKind.AVAILABLE) == 1000
    # when 20 holds arrive at once on one of them, each creating its shard's accounts lazily
    _results, errors = at_once(20, lambda i: place_hold(teams[0], 10))
    # then every held and spend shard in use exists once, and holds all the held money
    assert errors == {}
    shards = {services.account_shard(h.reference) for h in Hold.objects.filter(team=teams[0])}
    assert Account.objects.filter(team=teams[0]).count() == 1 + 2 * len(shards)
    assert balance(teams[0], AccountKind.HELD) == 200


def test_fifty_launches_against_a_budget_that_fits_fifteen_get_exactly_fifteen(
    requires_postgres,
):
    # given a rich wallet whose monthly budget fits exactly fifteen $1.00 holds
    from billing.errors import BudgetExceeded
    from billing.models import MonthUsage
    from billing.services import budget_set

    team = TeamFactory()
    top_up(team, 100_000)
    budget_set(
        team=team,
        monthly_limit_cents=1500,
        approval_above_cents=None,
        alert_percents=[50, 100],
        caused_by="command:tests",
    )
    # when 50 launches place their holds at the same moment
    results, errors = at_once(50, lambda i: place_hold(team, 100))
    # then exactly fifteen got one, the others were told the budget is spent
    assert len(results) == 15
    assert len(errors) == 35
    assert all(isinstance(error, BudgetExceeded) for error in errors.values())
    assert Hold.objects.filter(team=team).count() == 15
    assert MonthUsage.objects.get(team=team, user=None).used_cents == 1500
    assert balance(team, AccountKind.HELD) == 1500
