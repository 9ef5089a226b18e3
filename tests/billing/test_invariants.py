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
