"""Money reads at a glance: signed, coloured amounts in the ledger and the team's recent
top-ups and adjustments, step charges plain; and the top-up review warns of a reused invoice."""

import re

import pytest

from billing import services
from tests.factories import place_hold, top_up

pytestmark = pytest.mark.django_db


def _adjust(team, cents, direction):
    services.wallet_adjust(
        team=team,
        amount_cents=cents,
        direction=direction,
        reason="correction",
        actor="command:tests",
        idempotency_key=f"adj:{direction}:{cents}",
    )


def _amounts(html):
    return re.findall(r'<span class="amount( \w+)?">([^<]+)', html)


def test_recent_top_ups_and_adjustments_are_signed_and_coloured(team, billing_admin, client_for):
    # given a top-up, a credit of $1.25 and a debit of $0.25
    top_up(team, 5000)
    _adjust(team, 125, "credit")
    _adjust(team, 25, "debit")

    page = client_for(billing_admin).get("/billing/teams/research/").content.decode()

    amounts = _amounts(page)
    assert (" debit", "\u2212$0.25") in amounts
    assert (" credit", "+$1.25") in amounts
    assert (" credit", "+$50.00") in amounts


def test_the_ledger_signs_money_in_and_out_and_leaves_step_charges_plain(
    team, make_member, client_for
):
    top_up(team, 5000)
    _adjust(team, 25, "debit")
    hold = place_hold(team, 100)
    services.hold_capture_steps(
        reference=hold.reference, steps=[1], amount_cents=5, caused_by="run:tests"
    )
    member = make_member(team, "member")

    page = client_for(member).get("/teams/research/wallet/").content.decode()

    amounts = _amounts(page)
    assert (" debit", "\u2212$0.25") in amounts
    assert (" credit", "+$50.00") in amounts
    assert (" neutral", "$1.00") in amounts  # the hold moves money inside the wallet
    assert (" neutral", "$0.05") in amounts  # the run's charge
    assert 'class="badge debit">' not in page
    # and the run's entries, opened, show the step's charge plain too
    entries = (
        client_for(member)
        .get(f"/teams/research/wallet/runs/{hold.run_id}/", headers={"HX-Request": "true"})
        .content.decode()
    )
    assert (" neutral", "$0.05") in _amounts(entries)
    assert 'class="badge capture">' in entries
    assert 'class="badge debit">' not in entries


def test_the_review_warns_when_the_invoice_reference_was_used(
    team, other_team, billing_admin, client_for
):
    # given an earlier top-up of another team under INV-42
    top_up(other_team, 1000, reference="INV-42")
    client = client_for(billing_admin)
    data = {"amount": "$1,000", "reference": "INV-42", "idempotency_key": "k" * 32}

    # when a top-up under the same reference is reviewed
    review = client.post("/billing/teams/research/top-up/", data).content.decode()
    fresh = client.post(
        "/billing/teams/research/top-up/", {**data, "reference": "INV-43"}
    ).content.decode()

    # then it warns, naming the earlier one; a new reference does not
    assert "This reference was used before" in review
    assert "$10.00 to" in review
    assert "$1,000.00" in review  # "$1,000" was read as a thousand dollars
    assert "This reference was used before" not in fresh
