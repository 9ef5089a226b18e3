"""The billing services as the runs app and the pages call them.

Every test here ends with the ledger's invariants checked (tests/conftest.py).
"""

import uuid

import pytest
from django.core import mail
from django.db import IntegrityError, transaction

from billing import services
from billing.errors import (
    HoldExceeded,
    HoldNotFound,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
)
from billing.models import Account, AccountKind, Hold, Reconciliation, Transfer, TransferKind
from billing.prices import UnknownCuaVersion, step_price_cents
from billing.selectors import wallet_summary
from portal.teams.models import Role
from tests.factories import TeamFactory, place_hold, top_up

pytestmark = pytest.mark.django_db


def balances(team) -> dict[str, int]:
    """The team's balance by kind (held and spend summed over their shards)."""
    totals: dict[str, int] = {}
    for kind, balance in Account.objects.filter(team=team).values_list("kind", "balance_cents"):
        totals[kind] = totals.get(kind, 0) + balance
    return totals


def org_balance(kind) -> int:
    return Account.objects.get(team=None, kind=kind).balance_cents


# --- Prices -----------------------------------------------------------------------------------


def test_step_prices_come_from_settings():
    # given the settings' price table / when prices are asked for / then they match Coasty's
    assert step_price_cents("v1") == 8
    assert [step_price_cents(v) for v in ("v3", "v4", "v5")] == [5, 5, 5]


def test_an_unknown_cua_version_has_no_price():
    # when a version that does not exist is priced
    with pytest.raises(UnknownCuaVersion) as caught:
        step_price_cents("v2")
    # then the error names the versions that do
    assert "v1, v3, v4, v5" in str(caught.value)


# --- Top-ups ----------------------------------------------------------------------------------


def test_top_up_moves_money_from_funding_to_the_team(team, billing_admin):
    # when a billing admin tops up the team
    transfer, created = services.wallet_top_up(
        team=team,
        amount_cents=5000,
        reference="PO-1",
        actor=billing_admin,
        idempotency_key="k1",
    )
    # then the team has it available, the funding account owes it, and the transfer says who
    assert balances(team)[AccountKind.AVAILABLE] == 5000
    assert org_balance(AccountKind.FUNDING) == -5000
    assert (transfer.kind, transfer.amount_cents, transfer.idempotency_key) == (
        TransferKind.TOP_UP,
        5000,
        "topup:k1",
    )
    assert transfer.caused_by_user == billing_admin
    assert transfer.caused_by == "user:treasurer"
    assert created is True


def test_the_same_top_up_twice_moves_money_once(team):
    def top_up_once_more():
        return services.wallet_top_up(
            team=team,
            amount_cents=5000,
            reference="test top-up",
            actor="command:tests",
            idempotency_key="double-click",
        )

    # given a top-up
    first, first_created = top_up_once_more()
    # when it is submitted again with the same key
    again, again_created = top_up_once_more()
    # then it is the same transfer, the service says so, and the team got the money once
    assert again.pk == first.pk
    assert (first_created, again_created) == (True, False)
    assert balances(team)[AccountKind.AVAILABLE] == 5000
    assert Transfer.objects.count() == 1


def test_a_reused_top_up_key_with_another_amount_is_refused(team):
    # given a top-up
    top_up(team, 5000, key="k")
    # when the key comes back with another amount
    with pytest.raises(IdempotencyConflict):
        top_up(team, 6000, key="k")
    # then nothing more moved
    assert balances(team)[AccountKind.AVAILABLE] == 5000


@pytest.mark.parametrize(
    ("amount", "reference", "message"),
    [
        (0, "PO", "more than zero"),
        (-5, "PO", "more than zero"),
        (1_000_001, "PO", "at most $10,000.00"),
        ("100", "PO", "whole number"),
        (10.5, "PO", "whole number"),
        (True, "PO", "whole number"),
        (100, "", "reference"),
        (100, "   ", "reference"),
    ],
)
def test_bad_top_ups_are_refused_and_change_nothing(team, amount, reference, message):
    # when a top-up comes with a bad amount or no reference
    with pytest.raises(InvalidAmount) as caught:
        services.wallet_top_up(
            team=team,
            amount_cents=amount,
            reference=reference,
            actor="command:tests",
            idempotency_key="k",
        )
    # then it says why, and no money moved
    assert message in str(caught.value)
    assert not Transfer.objects.exists()


def test_the_top_up_ceiling_is_a_setting(team, settings):
    # given a lower ceiling
    settings.BILLING_TOP_UP_MAX_CENTS = 1000
    # then a top-up at it is fine and one cent above is refused
    top_up(team, 1000)
    with pytest.raises(InvalidAmount):
        top_up(team, 1001)


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


# --- Adjustments ------------------------------------------------------------------------------


def test_an_adjustment_credits_the_team_against_the_adjustments_account(team, billing_admin):
    # when a billing admin credits the team 50 cents
    transfer, _created = services.wallet_adjust(
        team=team,
        amount_cents=50,
        direction="credit",
        reason="Refund for run 12",
        actor=billing_admin,
        idempotency_key="a1",
    )
    # then the team has it and the adjustments account gave it
    assert balances(team)["available"] == 50
    assert org_balance(AccountKind.ADJUSTMENTS) == -50
    assert (transfer.kind, transfer.reference) == (TransferKind.ADJUSTMENT, "Refund for run 12")


def test_an_adjustment_debit_cannot_take_available_below_zero(team, billing_admin):
    # given $1.00
    top_up(team, 100)
    # when a debit of $2.00 is attempted
    with pytest.raises(InsufficientFunds):
        services.wallet_adjust(
            team=team,
            amount_cents=200,
            direction="debit",
            reason="Correction",
            actor=billing_admin,
            idempotency_key="a1",
        )
    # then nothing moved; a debit within the balance works
    assert balances(team)["available"] == 100
    services.wallet_adjust(
        team=team,
        amount_cents=100,
        direction="debit",
        reason="Correction",
        actor=billing_admin,
        idempotency_key="a2",
    )
    assert balances(team)["available"] == 0


@pytest.mark.parametrize(("direction", "reason"), [("sideways", "ok"), ("credit", "")])
def test_an_adjustment_needs_a_direction_and_a_reason(team, billing_admin, direction, reason):
    with pytest.raises(InvalidAmount):
        services.wallet_adjust(
            team=team,
            amount_cents=10,
            direction=direction,
            reason=reason,
            actor=billing_admin,
            idempotency_key="a",
        )


def test_the_same_adjustment_twice_moves_money_once(team, billing_admin):
    kwargs = dict(
        team=team,
        amount_cents=10,
        direction="credit",
        reason="x",
        actor=billing_admin,
        idempotency_key="same",
    )
    (first, first_created), (again, again_created) = (
        services.wallet_adjust(**kwargs),
        services.wallet_adjust(**kwargs),
    )
    assert first.pk == again.pk
    assert (first_created, again_created) == (True, False)
    assert balances(team)["available"] == 10


# --- Who caused it --------------------------------------------------------------------------


def test_every_movement_says_who_or_what_caused_it(team):
    with pytest.raises(InvalidAmount):
        services.hold_place(team=team, amount_cents=1, reference="r", caused_by="")
    with pytest.raises(InvalidAmount):
        services.hold_place(team=team, amount_cents=1, reference="r", caused_by=None)


# --- The database's own guarantees ------------------------------------------------------------


def test_the_database_refuses_a_negative_wallet_balance(team):
    # given a team's accounts
    top_up(team, 100)
    # when anything writes a negative available balance directly
    # then the CheckConstraint refuses it, on SQLite and PostgreSQL alike
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(team=team, kind=AccountKind.AVAILABLE).update(balance_cents=-1)


def test_the_database_refuses_a_hold_captured_beyond_its_amount(team):
    top_up(team, 100)
    hold = place_hold(team, 10)
    with pytest.raises(IntegrityError), transaction.atomic():
        Hold.objects.filter(pk=hold.pk).update(captured_cents=11)


def test_the_database_refuses_a_second_transfer_with_the_same_key(team):
    transfer = top_up(team, 100)
    transfer.pk = None
    with pytest.raises(IntegrityError), transaction.atomic():
        transfer.save()


# --- Low balance ------------------------------------------------------------------------------


def test_crossing_below_the_threshold_sends_one_email(
    team, make_member, billing_admin, tasks_inline, django_capture_on_commit_callbacks
):
    # given a team manager, a billing admin, and $10.00 against a $5.00 alert level
    make_member(team, Role.MANAGER, username="mia")
    top_up(team, 1000)
    mail.outbox.clear()
    # when two holds take the balance to $4.00 then $3.00
    with django_capture_on_commit_callbacks(execute=True):
        place_hold(team, 600)
    with django_capture_on_commit_callbacks(execute=True):
        place_hold(team, 100)
    # then exactly one email went out, after commit, to the manager and the billing admin
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert sorted(message.to) == ["mia@example.com", "treasurer@example.com"]
    assert "$4.00" in message.subject
    assert wallet_summary(team).low_balance


def test_the_alert_re_arms_when_the_balance_recovers(
    team, make_member, tasks_inline, django_capture_on_commit_callbacks
):
    # given a manager and a team that dipped below its level once
    make_member(team, Role.MANAGER)
    top_up(team, 1000)
    with django_capture_on_commit_callbacks(execute=True):
        place_hold(team, 600)
    # when it is topped up above the level and dips again
    with django_capture_on_commit_callbacks(execute=True):
        top_up(team, 1000)
    assert not wallet_summary(team).low_balance
    with django_capture_on_commit_callbacks(execute=True):
        place_hold(team, 1100)
    # then a second email went out: one per crossing
    assert len(mail.outbox) == 2


def test_no_email_while_the_transaction_has_not_committed(team, make_member, tasks_inline):
    # given a team about to dip
    make_member(team, Role.MANAGER)
    top_up(team, 1000)
    # when the dip happens in a transaction that rolls back
    with pytest.raises(RuntimeError), transaction.atomic():
        place_hold(team, 600)
        raise RuntimeError
    # then nobody was told
    assert mail.outbox == []


def test_a_new_threshold_counts_the_current_dip_as_known(team, billing_admin, tasks_inline):
    # given $10.00 available
    top_up(team, 1000)
    # when the alert level is raised above it
    account = services.wallet_set_low_balance_threshold(
        team=team, threshold_cents=2000, actor=billing_admin
    )
    # then the banner shows, and no email goes out for the change itself
    assert account.low_balance_alerted
    assert wallet_summary(team).low_balance
    assert mail.outbox == []


def test_accounts_are_created_once_per_team():
    # given a team used by two services
    team = TeamFactory()
    top_up(team, 100)
    top_up(team, 100)
    # then it has exactly one available account (held and spend come with the first hold)
    assert list(Account.objects.filter(team=team).values_list("kind", flat=True)) == ["available"]


def test_holds_spread_over_held_and_spend_shards_each_created_once(team, settings):
    # given a team whose holds are spread over four shards
    settings.BILLING_ACCOUNT_SHARDS = 4
    top_up(team, 10_000)
    # when twenty runs place their holds and charge a step each
    holds = [place_hold(team, 100) for _ in range(20)]
    for hold in holds:
        services.hold_capture(reference=hold.reference, step=1, amount_cents=5, caused_by="x")
    # then each hold's money sits on the held and spend accounts of its own shard
    accounts = Account.objects.filter(team=team).exclude(kind="available")
    shards = {(a.kind, a.shard) for a in accounts}
    assert len(shards) == accounts.count()  # one account per kind and shard
    assert {n for _kind, n in shards} <= {0, 1, 2, 3}
    assert len({n for _kind, n in shards}) > 1
    for hold in holds:
        assert (hold.held_account.kind, hold.spend_account.kind) == ("held", "spend")
        assert (
            hold.held_account.shard
            == hold.spend_account.shard
            == services.account_shard(hold.reference)
        )
    # and the team's held and spent money is the sum over the shards
    from billing.selectors import wallet_summary

    summary = wallet_summary(team)
    assert (summary.held_cents, summary.spent_cents) == (20 * 95, 20 * 5)
    assert (summary.available_cents) == 10_000 - 20 * 100
    # when every hold is settled, each shard's held balance is back to zero
    for hold in holds:
        services.hold_release(reference=hold.reference, caused_by="x")
    assert set(accounts.filter(kind="held").values_list("balance_cents", flat=True)) == {0}
    assert wallet_summary(team).available_cents == 10_000 - 20 * 5


def test_an_adjustment_key_reused_for_the_other_direction_is_refused(team, billing_admin):
    # given a credit of 10 cents under key "k" (found by the property tests)
    kwargs = dict(team=team, amount_cents=10, reason="x", actor=billing_admin, idempotency_key="k")
    services.wallet_adjust(direction="credit", **kwargs)
    # when the same key comes back as a debit
    with pytest.raises(IdempotencyConflict) as caught:
        services.wallet_adjust(direction="debit", **kwargs)
    # then it is refused, not mistaken for the credit
    assert "credit, not a debit" in str(caught.value)
    assert balances(team)["available"] == 10


def test_summaries_of_many_wallets_take_two_queries(django_assert_num_queries):
    # given three teams, one of them never funded
    teams = [TeamFactory(), TeamFactory(), TeamFactory()]
    top_up(teams[0], 1000)
    top_up(teams[1], 200)
    place_hold(teams[0], 100)
    # when their summaries are read together
    from billing.selectors import wallet_summaries

    with django_assert_num_queries(2):
        summaries = wallet_summaries(teams)
    # then each matches its own summary
    for team in teams:
        assert summaries[team.pk] == wallet_summary(team)
    assert (summaries[teams[0].pk].available_cents, summaries[teams[0].pk].held_cents) == (900, 100)
    assert summaries[teams[2].pk].low_balance


def test_settle_with_an_absurd_step_count_charges_the_hold_and_stops(team):
    # given a hold for 4 steps / when Coasty reports a billion
    top_up(team, 1000)
    hold = place_hold(team, 20)
    result = settle(hold, 1_000_000_000)
    # then the 4 steps are charged at once and the rest is a discrepancy
    assert balances(team)["spend"] == 20
    assert result.status == Reconciliation.Status.DISCREPANCY
