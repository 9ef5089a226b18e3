"""What the pages read from the ledger, and what it costs."""

import pytest

from billing.selectors import wallet_summary
from tests.factories import TeamFactory, place_hold, top_up

pytestmark = pytest.mark.django_db


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
