"""What every ledger service shares (billing.services.posting): the cause of each movement,
the accounts and their shards, and the guarantees the database itself keeps.

Every test here ends with the ledger's invariants checked (tests/conftest.py).
"""

import pytest
from django.db import IntegrityError, transaction

from billing import services
from billing.errors import InvalidAmount
from billing.models import Account, AccountKind, Hold
from tests.factories import TeamFactory, place_hold, top_up

pytestmark = pytest.mark.django_db


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


# --- Accounts and shards ----------------------------------------------------------------------


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
