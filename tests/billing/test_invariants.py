"""manage.py check_ledger: exit 0 with a summary on a sound ledger, exit 1 naming every break.

The breaks are made with raw writes that bypass the services, inside a transaction that the
test rolls back, so the after-test invariant check sees the sound ledger again.
"""

from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import transaction

from billing import services
from billing.invariants import ledger_problems
from billing.models import Account, AccountKind, Hold, Transfer, TransferKind
from tests.factories import place_hold, top_up

pytestmark = pytest.mark.django_db


@contextmanager
def broken_for_a_moment():
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def check_ledger() -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("check_ledger", stdout=out, stderr=err)
    except SystemExit as exit_:
        return exit_.code, out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def busy_ledger(team):
    top_up(team, 1000)
    hold = place_hold(team, 100)
    for step in (1, 2):
        services.hold_capture(reference=hold.reference, step=step, amount_cents=5, caused_by="r")
    services.hold_settle(
        reference=hold.reference,
        steps_completed=2,
        step_price_cents=5,
        upstream_credits_charged=10,
        upstream_test_mode=False,
        caused_by="r",
    )
    return hold


def test_a_sound_ledger_passes_with_a_summary(team):
    busy_ledger(team)
    code, out, _ = check_ledger()
    assert code == 0
    assert "Ledger OK: 4 accounts summing to 0 cents" in out


def test_a_stored_balance_that_disagrees_with_its_transfers_is_named(team):
    busy_ledger(team)
    with broken_for_a_moment():
        Account.objects.filter(team=team, kind=AccountKind.SPEND).update(balance_cents=11)
        code, _, err = check_ledger()
    assert code == 1
    assert "research spend" in err and "stores a balance of 11 cents" in err
    assert "should sum to zero but sum to 1" in err


def test_a_hold_whose_records_disagree_with_its_transfers_is_named(team):
    top_up(team, 1000)
    hold = place_hold(team, 100)
    services.hold_capture(reference=hold.reference, step=1, amount_cents=5, caused_by="r")
    with broken_for_a_moment():
        Hold.objects.filter(pk=hold.pk).update(captured_cents=10, captured_steps=2)
        problems = ledger_problems()
    assert any("records 10 cents captured in 2 steps" in p for p in problems)


def test_more_step_charges_than_steps_is_named(team):
    hold = busy_ledger(team)
    with broken_for_a_moment():
        Hold.objects.filter(pk=hold.pk).update(upstream_steps_completed=1)
        problems = ledger_problems()
    assert any("Coasty reported 1 completed steps" in p for p in problems)


def test_held_that_is_not_what_the_open_holds_reserve_is_named(team, other_team):
    top_up(team, 1000)
    hold = place_hold(team, 100)
    with broken_for_a_moment():
        # move the hold to the other team: research's held no longer matches its open holds
        Hold.objects.filter(pk=hold.pk).update(team=other_team)
        problems = ledger_problems()
    assert any("research held is 100 cents but its open holds reserve 0" in p for p in problems)


def test_a_transfer_between_the_wrong_accounts_is_named(team):
    busy_ledger(team)
    with broken_for_a_moment():
        Transfer.objects.filter(kind=TransferKind.TOP_UP).update(kind=TransferKind.RELEASE)
        problems = ledger_problems()
    assert any("do not fit its kind" in p for p in problems)


def test_every_broken_invariant_is_named_not_just_the_first(team):
    hold = busy_ledger(team)
    with broken_for_a_moment():
        Account.objects.filter(team=team, kind=AccountKind.SPEND).update(balance_cents=0)
        Hold.objects.filter(pk=hold.pk).update(upstream_steps_completed=0)
        code, _, err = check_ledger()
    assert code == 1
    assert "stores a balance" in err and "completed steps" in err
    assert "broken invariant(s)" in err


# --- issue 12, case 8: resolutions honoured, each hold on its own accounts, runs settled ---


def overcharged_and_settled(team):
    """A hold charged 4 steps by the stream, settled on Coasty's count of 2: a discrepancy."""
    top_up(team, 1000)
    hold = place_hold(team, 100)
    for step in (1, 2, 3, 4):
        services.hold_capture(reference=hold.reference, step=step, amount_cents=5, caused_by="r")
    services.hold_settle(
        reference=hold.reference,
        steps_completed=2,
        step_price_cents=5,
        upstream_credits_charged=10,
        upstream_test_mode=False,
        caused_by="r",
    )
    return hold


def test_a_discrepancy_resolved_with_a_credit_no_longer_fails_check_ledger(team, billing_admin):
    # given a run charged two steps more than Coasty counted: check_ledger names it
    hold = overcharged_and_settled(team)
    assert any("Coasty reported 2 completed steps" in p for p in ledger_problems())

    # when a billing admin credits the team the difference
    services.reconciliation_resolve_with_adjustment(
        reconciliation=hold.reconciliation,
        amount_cents=10,
        direction="credit",
        reason="two stray step charges",
        actor=billing_admin,
        idempotency_key="fix-1",
    )

    # then the ledger is sound again
    code, _out, err = check_ledger()
    assert code == 0, err


def test_a_hold_transfer_on_another_shards_account_is_named(team, settings):
    settings.BILLING_ACCOUNT_SHARDS = 4
    top_up(team, 1000)
    first = place_hold(team, 100)
    second = place_hold(team, 100)
    while second.held_account_id == first.held_account_id:
        second = place_hold(team, 100)
    services.hold_capture(reference=first.reference, step=1, amount_cents=5, caused_by="r")
    with broken_for_a_moment():
        # the capture of the first hold, booked as if on the other hold's shard
        Transfer.objects.filter(hold=first, kind=TransferKind.CAPTURE).update(
            debit_account_id=second.held_account_id, credit_account_id=second.spend_account_id
        )
        problems = ledger_problems()
    assert any("does not use that hold's own accounts" in p for p in problems)


def test_a_hold_transfer_for_another_team_is_named(team, other_team):
    top_up(team, 1000)
    hold = place_hold(team, 100)
    with broken_for_a_moment():
        Transfer.objects.filter(hold=hold).update(team=other_team)
        problems = ledger_problems()
    assert any("does not use that hold's own accounts or team" in p for p in problems)
