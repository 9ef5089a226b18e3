"""The wallet services as the pages and the API call them: top-ups, adjustments by billing
admins, and the low-balance alert.

Every test here ends with the ledger's invariants checked (tests/conftest.py).
"""

import pytest
from django.core import mail
from django.db import transaction

from billing import services
from billing.errors import IdempotencyConflict, InsufficientFunds, InvalidAmount
from billing.models import AccountKind, Transfer, TransferKind
from billing.selectors import wallet_summary
from portal.teams.models import Role
from tests.billing.ledger import balances, org_balance
from tests.factories import place_hold, top_up

pytestmark = pytest.mark.django_db


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


# --- Low balance ------------------------------------------------------------------------------


def test_crossing_below_the_threshold_emails_each_person_once(
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
    # then one email each went out, after commit, to the manager and the billing admin
    assert sorted(m.to[0] for m in mail.outbox) == ["mia@example.com", "treasurer@example.com"]
    assert all(len(m.to) == 1 and "$4.00" in m.subject for m in mail.outbox)
    assert wallet_summary(team).low_balance


def test_the_alert_re_arms_when_the_balance_recovers(
    team, make_member, tasks_inline, django_capture_on_commit_callbacks
):
    # given a manager and a team that dipped below its level once
    manager = make_member(team, Role.MANAGER)
    top_up(team, 1000)
    with django_capture_on_commit_callbacks(execute=True):
        place_hold(team, 600)
    # when it is topped up above the level and dips again
    with django_capture_on_commit_callbacks(execute=True):
        top_up(team, 1000)
    assert not wallet_summary(team).low_balance
    with django_capture_on_commit_callbacks(execute=True):
        place_hold(team, 1100)
    # then a second email went out to the manager: one per crossing
    assert len(mail.outbox) == 2
    assert {m.to[0] for m in mail.outbox} == {manager.email}


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
