"""The hold services as the runs app calls them: a run's money reserved, captured step by
step, released and settled.

Every test here ends with the ledger's invariants checked (tests/conftest.py).
"""

import uuid

import pytest
from django.db import transaction

from billing import services
from billing.errors import (
    HoldExceeded,
    HoldNotFound,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
)
from billing.models import Hold, Reconciliation, Transfer, TransferKind
from tests.billing.ledger import balances
from tests.factories import place_hold, top_up

pytestmark = pytest.mark.django_db


# --- Holds ------------------------------------------------------------------------------------


def test_a_hold_reserves_money(team):
    # given a funded team
    top_up(team, 1000)
    run_id = uuid.uuid4()
    # when a run places a hold
    hold = services.hold_place(
        team=team,
        amount_cents=400,
        reference=f"run:{run_id}",
        run_id=run_id,
        caused_by=f"run:{run_id}",
    )
    # then the money moves from available to held, recorded against the run
    assert balances(team) == {"available": 600, "held": 400, "spend": 0}
    assert hold.status == Hold.Status.OPEN
    transfer = Transfer.objects.get(kind=TransferKind.HOLD)
    assert (transfer.idempotency_key, transfer.run_id, transfer.hold_id) == (
        f"hold:run:{run_id}",
        run_id,
        hold.pk,
    )
    assert transfer.caused_by == f"run:{run_id}"


def test_a_hold_the_team_cannot_afford_is_refused_with_the_numbers(team):
    # given a team with $3.00
    top_up(team, 300)
    # when a run wants $4.00
    with pytest.raises(InsufficientFunds) as caught:
        place_hold(team, 400)
    # then it is refused with both amounts, and nothing was written
    assert (caught.value.available_cents, caught.value.needed_cents) == (300, 400)
    assert "$4.00 needed, $3.00 available" in str(caught.value)
    assert not Hold.objects.exists()
    assert balances(team)["available"] == 300


def test_a_team_without_any_money_is_refused(team):
    # when a brand-new team's run asks for a hold
    with pytest.raises(InsufficientFunds) as caught:
        place_hold(team, 100)
    # then the wallet is seen as empty
    assert caught.value.available_cents == 0


def test_the_same_hold_twice_reserves_once(team):
    # given a hold
    top_up(team, 1000)
    first = place_hold(team, 400, run_id=(run_id := uuid.uuid4()))
    # when the run places it again (a retried launch)
    again = place_hold(team, 400, run_id=run_id)
    # then it is the same hold and the money was reserved once
    assert again.pk == first.pk
    assert balances(team)["held"] == 400


def test_a_reused_hold_reference_with_another_amount_is_refused(team):
    top_up(team, 1000)
    place_hold(team, 400, run_id=(run_id := uuid.uuid4()))
    with pytest.raises(IdempotencyConflict):
        place_hold(team, 500, run_id=run_id)


def test_a_hold_can_use_the_whole_balance(team):
    # given $1.00 / when a hold takes all of it / then available is exactly zero
    top_up(team, 100)
    place_hold(team, 100)
    assert balances(team)["available"] == 0


# --- Captures ---------------------------------------------------------------------------------


def test_a_capture_charges_one_step_from_the_hold(team):
    # given a hold of $1.00
    top_up(team, 1000)
    hold = place_hold(team, 100)
    # when step 1 is captured at 5 cents
    transfer = services.hold_capture(
        reference=hold.reference, step=1, amount_cents=5, caused_by=hold.reference
    )
    # then 5 cents moved from held to spend and the hold counts it
    assert balances(team) == {"available": 900, "held": 95, "spend": 5}
    assert (transfer.kind, transfer.step, transfer.idempotency_key) == (
        TransferKind.CAPTURE,
        1,
        f"capture:{hold.reference}:1",
    )
    hold.refresh_from_db()
    assert (hold.captured_cents, hold.captured_steps) == (5, 1)


def test_a_step_captured_twice_is_charged_once(team):
    # given a captured step
    top_up(team, 1000)
    hold = place_hold(team, 100)
    first = services.hold_capture(reference=hold.reference, step=3, amount_cents=5, caused_by="x")
    # when the same step arrives again (from the webhook after the SSE stream)
    again = services.hold_capture(reference=hold.reference, step=3, amount_cents=5, caused_by="y")
    # then it is the same transfer and one charge
    assert again.pk == first.pk
    assert balances(team)["spend"] == 5


def test_a_capture_beyond_the_hold_is_refused(team):
    # given a hold for two steps, both captured
    top_up(team, 1000)
    hold = place_hold(team, 10)
    for step in (1, 2):
        services.hold_capture(reference=hold.reference, step=step, amount_cents=5, caused_by="x")
    # when a third step is captured
    with pytest.raises(HoldExceeded) as caught:
        services.hold_capture(reference=hold.reference, step=3, amount_cents=5, caused_by="x")
    # then it is refused, saying what is left, and nothing moved
    assert caught.value.remaining_cents == 0
    assert "would exceed" in str(caught.value)
    assert balances(team)["spend"] == 10


def test_a_capture_larger_than_what_is_left_is_refused_whole(team):
    # given 7 cents left on the hold
    top_up(team, 1000)
    hold = place_hold(team, 15)
    services.hold_capture(reference=hold.reference, step=1, amount_cents=8, caused_by="x")
    # when an 8-cent step comes
    with pytest.raises(HoldExceeded) as caught:
        services.hold_capture(reference=hold.reference, step=2, amount_cents=8, caused_by="x")
    # then nothing partial was charged
    assert caught.value.remaining_cents == 7
    assert balances(team) == {"available": 985, "held": 7, "spend": 8}


def test_a_repeated_capture_of_a_full_hold_still_returns_the_first(team):
    # given a hold used up by step 2
    top_up(team, 1000)
    hold = place_hold(team, 10)
    services.hold_capture(reference=hold.reference, step=1, amount_cents=5, caused_by="x")
    second = services.hold_capture(reference=hold.reference, step=2, amount_cents=5, caused_by="x")
    # when step 2 is repeated
    again = services.hold_capture(reference=hold.reference, step=2, amount_cents=5, caused_by="x")
    # then it is not "exceeded": it is the same charge
    assert again.pk == second.pk


def test_a_repeated_capture_with_another_price_is_refused(team):
    top_up(team, 1000)
    hold = place_hold(team, 100)
    services.hold_capture(reference=hold.reference, step=1, amount_cents=5, caused_by="x")
    with pytest.raises(IdempotencyConflict):
        services.hold_capture(reference=hold.reference, step=1, amount_cents=8, caused_by="x")


def test_capturing_an_unknown_hold_says_so():
    with pytest.raises(HoldNotFound):
        services.hold_capture(reference="run:nope", step=1, amount_cents=5, caused_by="x")


@pytest.mark.parametrize(("step", "amount"), [(0, 5), (-1, 5), (1, 0), (1, -5), ("1", 5)])
def test_bad_capture_arguments_are_refused(team, step, amount):
    top_up(team, 1000)
    hold = place_hold(team, 100)
    with pytest.raises(InvalidAmount):
        services.hold_capture(
            reference=hold.reference, step=step, amount_cents=amount, caused_by="x"
        )


def test_a_capture_after_settle_is_refused_as_settled(team):
    # given a settled hold
    top_up(team, 1000)
    hold = place_hold(team, 100)
    services.hold_release(reference=hold.reference, caused_by="x")
    # when a late step arrives
    with pytest.raises(HoldExceeded) as caught:
        services.hold_capture(reference=hold.reference, step=1, amount_cents=5, caused_by="x")
    # then it says the hold is settled
    assert caught.value.settled
    assert "settled" in str(caught.value)


def test_a_capture_is_a_handful_of_statements(team, django_assert_max_num_queries):
    # given an open hold
    top_up(team, 1000)
    hold = place_hold(team, 100)
    # when a step is captured, then it takes three statements (plus the test's savepoint pair)
    with django_assert_max_num_queries(5):
        services.hold_capture(reference=hold.reference, step=1, amount_cents=5, caused_by="x")


def test_a_capture_inside_the_callers_transaction_rolls_back_with_it(team):
    # given an open hold
    top_up(team, 1000)
    hold = place_hold(team, 100)
    # when the caller's transaction fails after the capture
    with pytest.raises(RuntimeError), transaction.atomic():
        services.hold_capture(reference=hold.reference, step=1, amount_cents=5, caused_by="x")
        raise RuntimeError("the caller's own write failed")
    # then the capture is gone with it, and can be made again
    assert balances(team)["spend"] == 0
    services.hold_capture(reference=hold.reference, step=1, amount_cents=5, caused_by="x")
    assert balances(team)["spend"] == 5


# --- Release ----------------------------------------------------------------------------------


def test_release_returns_the_rest_once(team):
    # given a hold with one step captured
    top_up(team, 1000)
    hold = place_hold(team, 100)
    services.hold_capture(reference=hold.reference, step=1, amount_cents=5, caused_by="x")
    # when it is released, twice
    first = services.hold_release(reference=hold.reference, caused_by="x")
    again = services.hold_release(reference=hold.reference, caused_by="x")
    # then the rest went back once and the hold is settled
    assert first.amount_cents == 95
    assert again.pk == first.pk
    assert balances(team) == {"available": 995, "held": 0, "spend": 5}
    hold.refresh_from_db()
    assert hold.status == Hold.Status.SETTLED
    assert hold.settled_at is not None


def test_releasing_a_used_up_hold_moves_nothing(team):
    top_up(team, 1000)
    hold = place_hold(team, 5)
    services.hold_capture(reference=hold.reference, step=1, amount_cents=5, caused_by="x")
    # when the used-up hold is released / then there is no transfer, but it is settled
    assert services.hold_release(reference=hold.reference, caused_by="x") is None
    assert Hold.objects.get(pk=hold.pk).status == Hold.Status.SETTLED


def test_releasing_an_unknown_hold_says_so():
    with pytest.raises(HoldNotFound):
        services.hold_release(reference="run:nope", caused_by="x")


# --- Settle -----------------------------------------------------------------------------------


def settle(hold, steps, *, price=5, charged=None, test_mode=False):
    return services.hold_settle(
        reference=hold.reference,
        steps_completed=steps,
        step_price_cents=price,
        upstream_credits_charged=steps * price if charged is None else charged,
        upstream_test_mode=test_mode,
        caused_by=hold.reference,
    )


def test_settle_charges_missing_steps_and_releases_the_rest(team):
    # given a hold of 20 steps where steps 1 and 3 were captured from events
    top_up(team, 1000)
    hold = place_hold(team, 100)
    for step in (1, 3):
        services.hold_capture(reference=hold.reference, step=step, amount_cents=5, caused_by="x")
    # when Coasty reports 4 steps done and 20 credits charged
    result = settle(hold, 4)
    # then steps 2 and 4 are charged too, the rest goes back, and it all matches
    steps = set(Transfer.objects.filter(kind="capture").values_list("step", flat=True))
    assert steps == {1, 2, 3, 4}
    assert balances(team) == {"available": 980, "held": 0, "spend": 20}
    assert result.status == Reconciliation.Status.MATCHED
    assert "All three agree" in result.explanation


def test_settle_twice_is_the_same_settle(team):
    # given a settled hold
    top_up(team, 1000)
    hold = place_hold(team, 100)
    first = settle(hold, 4)
    transfers = Transfer.objects.count()
    # when the settle repeats (webhook and poller both finish the run)
    again = settle(hold, 4)
    # then nothing moved and the same reconciliation comes back
    assert again.pk == first.pk
    assert Transfer.objects.count() == transfers


def test_settle_never_charges_beyond_the_hold(team):
    # given a hold for 3 steps
    top_up(team, 1000)
    hold = place_hold(team, 15)
    # when Coasty reports 5 steps and 25 credits
    result = settle(hold, 5)
    # then the team pays the 3 steps the hold covered, and the gap is a discrepancy in words
    assert balances(team)["spend"] == 15
    assert result.status == Reconciliation.Status.DISCREPANCY
    assert result.difference_cents == -10
    assert "2 completed step(s) were not charged" in result.explanation


def test_settle_with_zero_steps_releases_everything(team):
    top_up(team, 1000)
    hold = place_hold(team, 100)
    result = settle(hold, 0)
    assert balances(team) == {"available": 1000, "held": 0, "spend": 0}
    assert result.status == Reconciliation.Status.MATCHED


def test_settle_after_release_only_reconciles(team):
    # given a hold released early (say the run was cancelled) after 1 captured step
    top_up(team, 1000)
    hold = place_hold(team, 100)
    services.hold_capture(reference=hold.reference, step=1, amount_cents=5, caused_by="x")
    services.hold_release(reference=hold.reference, caused_by="x")
    # when Coasty's final report says 2 steps
    result = settle(hold, 2)
    # then no money moves any more, and the uncharged step is a discrepancy
    assert balances(team)["spend"] == 5
    assert result.status == Reconciliation.Status.DISCREPANCY


def test_settle_of_an_unknown_hold_says_so():
    with pytest.raises(HoldNotFound):
        services.hold_settle(
            reference="run:nope",
            steps_completed=1,
            step_price_cents=5,
            upstream_credits_charged=5,
            upstream_test_mode=False,
            caused_by="x",
        )


def test_settle_with_an_absurd_step_count_charges_the_hold_and_stops(team):
    # given a hold for 4 steps / when Coasty reports a billion
    top_up(team, 1000)
    hold = place_hold(team, 20)
    result = settle(hold, 1_000_000_000)
    # then the 4 steps are charged at once and the rest is a discrepancy
    assert balances(team)["spend"] == 20
    assert result.status == Reconciliation.Status.DISCREPANCY
