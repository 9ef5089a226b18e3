"""Reconciliation's rules alone (billing.verdicts.compare): do the ledger's charge, the steps
and what Coasty billed agree, and if not, what is the difference in words?"""

import pytest

from billing.verdicts import compare

pytestmark = pytest.mark.django_db


def test_live_runs_match_when_ledger_steps_and_coasty_agree():
    verdict = compare(
        ledger_captured_cents=60,
        ledger_step_count=12,
        steps_completed=12,
        step_price_cents=5,
        credits_charged=60,
        test_mode=False,
    )
    assert verdict.matched
    assert (verdict.expected_cents, verdict.difference_cents) == (60, 0)
    assert "All three agree" in verdict.explanation


def test_a_live_run_where_coasty_charged_less_is_a_discrepancy_in_words():
    # given the ledger charged 12 steps but Coasty billed 11
    verdict = compare(
        ledger_captured_cents=60,
        ledger_step_count=12,
        steps_completed=12,
        step_price_cents=5,
        credits_charged=55,
        test_mode=False,
    )
    # then it is a discrepancy of +5 cents against what Coasty billed, explained
    assert not verdict.matched
    assert verdict.difference_cents == 5
    assert "Coasty's charge differs from steps x price by $0.05" in verdict.explanation
    assert "charged $0.05 more than Coasty billed" in verdict.explanation


def test_a_live_run_with_uncharged_steps_says_so():
    verdict = compare(
        ledger_captured_cents=50,
        ledger_step_count=10,
        steps_completed=12,
        step_price_cents=5,
        credits_charged=60,
        test_mode=False,
    )
    assert not verdict.matched
    assert verdict.difference_cents == -10
    assert "2 completed step(s) were not charged" in verdict.explanation


def test_test_mode_compares_only_steps_times_price_and_says_so():
    # given a test-key run: Coasty billed nothing, the ledger charged steps x price
    verdict = compare(
        ledger_captured_cents=40,
        ledger_step_count=5,
        steps_completed=5,
        step_price_cents=8,
        credits_charged=0,
        test_mode=True,
    )
    # then it matches, and the words say why Coasty's 0 does not count
    assert verdict.matched
    assert "test key and bills nothing" in verdict.explanation
    assert "only the ledger is compared with steps x price" in verdict.explanation


def test_test_mode_still_catches_a_wrong_charge():
    verdict = compare(
        ledger_captured_cents=45,
        ledger_step_count=6,
        steps_completed=5,
        step_price_cents=8,
        credits_charged=0,
        test_mode=True,
    )
    assert not verdict.matched
    assert verdict.difference_cents == 5
