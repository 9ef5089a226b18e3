"""The money pages, for every role: team members see their wallet, billing admins see and top
up every wallet, everyone else sees nothing."""

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing import services
from billing.models import Account, AccountKind, Reconciliation, Transfer, TransferKind
from billing.verdicts import UpstreamReport
from portal.teams.models import Role
from tests.factories import BillingAdminFactory, UserFactory, place_hold, top_up

pytestmark = pytest.mark.django_db


def available(team) -> int:
    return (
        Account.objects.filter(team=team, kind=AccountKind.AVAILABLE)
        .values_list("balance_cents", flat=True)
        .first()
        or 0
    )


def run_steps(team, steps, *, price=5, run_id=None):
    """A finished run: hold, one capture per step, settle with matching figures."""
    hold = place_hold(team, 100, run_id=run_id)
    for step in range(1, steps + 1):
        services.hold_capture(
            reference=hold.reference, step=step, amount_cents=price, caused_by="r"
        )
    services.hold_settle(
        reference=hold.reference,
        steps_completed=steps,
        step_price_cents=price,
        upstream_credits_charged=steps * price,
        upstream_test_mode=False,
        caused_by="r",
    )
    return hold


# --- The wallet page ------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MEMBER, Role.MANAGER])
def test_every_member_of_the_team_sees_its_wallet(team, make_member, client_for, role):
    # given a funded team with a finished run
    top_up(team, 5000)
    run_steps(team, 3)
    user = make_member(team, role)
    # when a member of any role opens the wallet
    response = client_for(user).get("/teams/research/wallet/")
    # then they see the balances, the chart and the ledger, but no top-up button
    assert response.status_code == 200
    page = response.content.decode()
    assert "$49.85" in page  # available: 5000 - 15
    assert "Spent this month" in page and "$0.15" in page
    assert "<svg" in page and "<title>" in page
    assert 'data-label="Steps">3</td>' in page  # the run's row: three steps charged
    assert "Top up</a>" not in page


def test_a_non_member_gets_404_for_the_wallet_and_its_csv(
    team, other_team, make_member, client_for
):
    # given someone in another team only
    outsider = make_member(other_team, Role.MANAGER)
    client = client_for(outsider)
    # then the team's wallet and its CSV do not exist for them
    assert client.get("/teams/research/wallet/").status_code == 404
    assert client.get("/teams/research/wallet/ledger.csv").status_code == 404


def test_an_unknown_team_is_404_even_for_billing_admins(billing_admin, client_for):
    assert client_for(billing_admin).get("/teams/nope/wallet/").status_code == 404


def test_the_wallet_asks_anonymous_visitors_to_log_in(team, client):
    response = client.get("/teams/research/wallet/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_a_billing_admin_sees_any_wallet_and_can_top_up_from_it(team, billing_admin, client_for):
    # given a billing admin who is not in the team
    top_up(team, 700)
    # when they open the team's wallet
    response = client_for(billing_admin).get("/teams/research/wallet/")
    # then they see it, with a top-up button
    assert response.status_code == 200
    assert "$7.00" in response.content.decode()
    assert "/billing/teams/research/top-up/" in response.content.decode()


def test_a_new_wallet_explains_that_it_is_empty(team, make_member, client_for):
    # given a team that never had money / when a member opens its wallet
    response = client_for(make_member(team, Role.VIEWER)).get("/teams/research/wallet/")
    # then an empty state and the low-balance banner say what to do
    page = response.content.decode()
    assert "No money has moved yet" in page
    assert "No steps were charged in the last 30 days" in page
    assert "wallet is low" in page


def test_the_low_balance_banner_shows_on_the_team_pages(team, make_member, client_for):
    # given a team below its alert level ($5.00 by default)
    top_up(team, 300)
    client = client_for(make_member(team, Role.MEMBER))
    # then the dashboard and the wallet both show the banner, once
    for url in ("/teams/research/", "/teams/research/wallet/"):
        page = client.get(url).content.decode()
        assert page.count("wallet is low") == 1, url
    # and when it is topped up above the level, the banner is gone
    top_up(team, 1000)
    assert "wallet is low" not in client.get("/teams/research/").content.decode()


def test_the_ledger_filters_by_kind_date_and_run(team, make_member, client_for):
    # given top-ups and two runs
    po_42 = top_up(team, 5000, reference="PO-42")
    first = run_steps(team, 2)
    second = run_steps(team, 1)
    client = client_for(make_member(team, Role.VIEWER))
    # when filtered by kind
    page = client.get("/teams/research/wallet/", {"kind": "top_up"}).content.decode()
    # then only top-ups show
    assert "PO-42" in page and "step 1" not in page
    # when filtered by run
    page = client.get("/teams/research/wallet/", {"run": str(second.run_id)}).content.decode()
    assert str(second.run_id)[:8] in page and str(first.run_id)[:8] not in page
    # (the days come from the first row, not the clock, so a midnight in between changes nothing)
    today = timezone.localtime(Transfer.objects.get(pk=po_42.pk).created_at).date()
    # when filtered to a day with nothing on it: the day before the first transfer
    yesterday = (today - timedelta(days=1)).isoformat()
    page = client.get("/teams/research/wallet/", {"date_to": yesterday}).content.decode()
    assert "Nothing matches these filters" in page
    # when filtered to the top-up's day
    page = client.get(
        "/teams/research/wallet/", {"date_from": today.isoformat(), "date_to": today.isoformat()}
    )
    assert "PO-42" in page.content.decode()


def test_a_bad_filter_is_shown_and_ignored(team, make_member, client_for):
    top_up(team, 5000, reference="PO-42")
    response = client_for(make_member(team)).get("/teams/research/wallet/", {"run": "not-a-uuid"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Enter a valid UUID" in page
    assert "PO-42" in page


def test_the_ledger_pages_by_cursor(team, make_member, client_for):
    # given 120 transfers (top-ups), newest last
    for n in range(120):
        top_up(team, 10, reference=f"ref-{n:03d}")
    client = client_for(make_member(team, Role.VIEWER))
    # when the first page is opened
    first = client.get("/teams/research/wallet/")
    rows = [g.transfer for g in first.context["page"].groups]
    # then it shows the newest 50, and links to older ones
    assert [t.reference for t in rows][:2] == ["ref-119", "ref-118"]
    assert len(rows) == 50
    older = first.context["page"].older_cursor
    assert f"before={older}" in first.content.decode()
    # when the older pages are followed
    second = client.get("/teams/research/wallet/", {"before": older})
    assert second.context["page"].groups[0].transfer.reference == "ref-069"
    third = client.get("/teams/research/wallet/", {"before": second.context["page"].older_cursor})
    assert third.context["page"].groups[-1].transfer.reference == "ref-000"
    assert third.context["page"].older_cursor is None
    # and back to newer ones
    back = client.get("/teams/research/wallet/", {"after": third.context["page"].newer_cursor})
    assert back.context["page"].groups[0].transfer.reference == "ref-069"


@pytest.mark.parametrize(
    "params",
    [
        {"before": "²"},
        {"after": "²"},
        {"before": "٣"},
        {"before": "9" * 30},
        {"after": "9" * 30},
        {"before": "-5"},
    ],
)
def test_a_malformed_page_link_shows_the_newest_page(team, make_member, client_for, params):
    # given a ledger / when the wallet is opened with a cursor that is not one
    top_up(team, 5000, reference="PO-42")
    response = client_for(make_member(team)).get("/teams/research/wallet/", params)
    # then the newest page shows (never a server error)
    assert response.status_code == 200
    assert "PO-42" in response.content.decode()


@pytest.mark.parametrize(
    ("params", "tz", "error"),
    [
        ({"date_to": "9999-12-31"}, "UTC", "between 2000 and 9000"),
        ({"date_from": "9999-12-31"}, "UTC", "between 2000 and 9000"),
        ({"date_from": "0001-01-01"}, "Pacific/Kiritimati", "between 2000 and 9000"),
        ({"date_to": "0001-01-01"}, "Pacific/Kiritimati", "between 2000 and 9000"),
        (
            {"date_from": "2026-03-02", "date_to": "2026-03-01"},
            "UTC",
            "on or after the From date",
        ),
    ],
)
def test_an_impossible_date_filter_is_a_form_error(
    team, make_member, client_for, params, tz, error
):
    # given a ledger and a viewer in the given zone
    top_up(team, 5000, reference="PO-42")
    client = client_for(make_member(team))
    client.cookies["tz"] = tz
    # when the wallet is filtered by a date out of range, or From after To
    response = client.get("/teams/research/wallet/", params)
    # then the page says so and shows the ledger without that filter
    assert response.status_code == 200
    assert error in response.content.decode()
    # and the CSV is refused, saying why
    csv_response = client.get("/teams/research/wallet/ledger.csv", params)
    assert csv_response.status_code == 400
    assert error in csv_response.content.decode()


def test_the_wallet_page_stays_within_its_query_budget(team, make_member, client_for):
    # given a team with a busy ledger
    top_up(team, 50_000)
    for _ in range(5):
        run_steps(team, 10)
    client = client_for(make_member(team, Role.VIEWER))
    client.get("/teams/research/wallet/")  # warm up the session
    # when the wallet page is opened, filtered and paged
    for params in ({}, {"kind": "capture"}, {"before": Transfer.objects.last().pk}):
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/teams/research/wallet/", params)
        # then it costs at most 13 queries (the grouped ledger's four among them), none of
        # them a COUNT
        assert response.status_code == 200
        assert len(queries) <= 13, [q["sql"] for q in queries]
        assert not any("COUNT(" in q["sql"].upper() for q in queries)


# --- CSV ------------------------------------------------------------------------------------


def test_the_csv_streams_the_filtered_ledger(team, make_member, client_for):
    # given a top-up and a finished run
    top_up(team, 5000, reference="=HYPERLINK(evil)")
    hold = run_steps(team, 2)
    client = client_for(make_member(team, Role.VIEWER))
    # when the CSV of the run's transfers is downloaded
    response = client.get("/teams/research/wallet/ledger.csv", {"run": str(hold.run_id)})
    # then it is a streamed CSV of that run only: hold, two captures, release
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0].startswith("id,created_at,kind,amount_cents,available_change_cents")
    kinds = [line.split(",")[2] for line in lines[1:]]
    assert sorted(kinds) == ["capture", "capture", "hold", "release"]
    # and the full CSV neutralises formulas a person typed
    everything = b"".join(client.get("/teams/research/wallet/ledger.csv").streaming_content)
    assert b"'=HYPERLINK(evil)" in everything


def test_the_csv_with_a_bad_filter_is_refused_not_everything(team, make_member, client_for):
    # given a ledger
    top_up(team, 5000, reference="PO-42")
    # when the CSV is asked for with a filter that is not valid
    response = client_for(make_member(team)).get(
        "/teams/research/wallet/ledger.csv", {"run": "notauuid", "kind": "top_up"}
    )
    # then it is a 400 in plain text naming the filter, not a CSV of every transfer
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    body = response.content.decode()
    assert "Run: Enter a valid UUID." in body
    assert "PO-42" not in body


# --- Billing admin: overview and top-up -------------------------------------------------------


def test_the_overview_lists_every_wallet_for_billing_admins(
    team, other_team, billing_admin, client_for
):
    # given two teams, one low
    top_up(team, 5000)
    top_up(other_team, 100)
    # when a billing admin opens /billing/
    response = client_for(billing_admin).get("/billing/")
    # then both wallets show, with the low one flagged, within the query budget
    page = response.content.decode()
    assert response.status_code == 200
    assert "Research" in page and "Ops" in page
    assert "$50.00" in page and "$1.00" in page
    assert "1 low" in page


def test_superusers_are_billing_admins(team, client_for):
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    assert client_for(admin).get("/billing/").status_code == 200


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MEMBER, Role.MANAGER])
def test_team_members_cannot_reach_the_billing_admin_pages(team, make_member, client_for, role):
    client = client_for(make_member(team, role))
    for url in ("/billing/", "/billing/teams/research/", "/billing/discrepancies/"):
        assert client.get(url).status_code == 403, url


def test_a_member_cannot_top_up(team, make_member, client_for):
    # given a team member / when they post a top-up, even a confirmed one
    response = client_for(make_member(team, Role.MANAGER)).post(
        "/billing/teams/research/top-up/",
        {"amount": "50.00", "reference": "x", "idempotency_key": "k" * 16, "confirm": "1"},
    )
    # then they are refused and no money moved
    assert response.status_code == 403
    assert available(team) == 0


def test_a_top_up_is_reviewed_then_confirmed(team, billing_admin, client_for):
    client = client_for(billing_admin)
    # given the top-up form
    form_page = client.get("/billing/teams/research/top-up/")
    key = form_page.context["form"].initial["idempotency_key"]
    data = {"amount": "50.00", "reference": "PO-7", "idempotency_key": key}
    # when it is submitted
    review = client.post("/billing/teams/research/top-up/", data)
    # then a review page shows what will happen, and nothing moved yet
    assert review.status_code == 200
    assert "Confirm the top-up" in review.content.decode()
    assert "$0.00 → $50.00" in review.content.decode()
    assert available(team) == 0
    # when it is confirmed
    done = client.post("/billing/teams/research/top-up/", {**data, "confirm": "1"}, follow=True)
    # then the money is there, recorded against the admin and the reference
    assert available(team) == 5000
    transfer = Transfer.objects.get(kind=TransferKind.TOP_UP)
    assert (transfer.reference, transfer.caused_by_user) == ("PO-7", billing_admin)
    assert "Added $50.00 to Research" in done.content.decode()


def test_a_double_submitted_confirmation_tops_up_once(team, billing_admin, client_for):
    client = client_for(billing_admin)
    data = {"amount": "50.00", "reference": "PO-7", "idempotency_key": "a" * 32, "confirm": "1"}
    client.post("/billing/teams/research/top-up/", data)
    second = client.post("/billing/teams/research/top-up/", data, follow=True)
    assert available(team) == 5000
    assert Transfer.objects.filter(kind=TransferKind.TOP_UP).count() == 1
    assert "already recorded" in second.content.decode()


def test_change_on_the_review_page_goes_back_to_the_filled_form(team, billing_admin, client_for):
    data = {"amount": "50.00", "reference": "PO-7", "idempotency_key": "b" * 32, "edit": "1"}
    response = client_for(billing_admin).post("/billing/teams/research/top-up/", data)
    assert response.status_code == 200
    assert 'value="PO-7"' in response.content.decode()
    assert available(team) == 0


@pytest.mark.parametrize(
    ("amount", "reference", "error"),
    [
        ("0", "PO", "Enter at least $0.01"),
        ("0.00", "PO", "Enter at least $0.01"),
        ("-5", "PO", "Enter at least $0.01"),
        ("10000.01", "PO", "at most $10,000.00"),
        ("abc", "PO", "Enter an amount in dollars"),
        ("", "PO", "This field is required"),
        ("1.234", "PO", "2 decimal places"),
        ("5.00", "", "This field is required"),
        ("5.00", "   ", "This field is required"),
    ],
)
@pytest.mark.parametrize("confirm", [False, True])
def test_a_bad_top_up_gets_a_form_error_and_changes_nothing(
    team, billing_admin, client_for, amount, reference, error, confirm
):
    # when a billing admin submits a bad amount or no reference, at either step
    data = {"amount": amount, "reference": reference, "idempotency_key": "c" * 32}
    if confirm:
        data["confirm"] = "1"
    response = client_for(billing_admin).post("/billing/teams/research/top-up/", data)
    # then the form says what is wrong and no money moved
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not Transfer.objects.exists()


def test_a_top_up_without_its_key_is_refused(team, billing_admin, client_for):
    data = {"amount": "5.00", "reference": "PO", "confirm": "1"}
    response = client_for(billing_admin).post("/billing/teams/research/top-up/", data)
    assert response.status_code == 400
    assert "out of date" in response.content.decode()
    assert not Transfer.objects.exists()


def test_a_billing_admin_sets_the_alert_level(team, billing_admin, client_for):
    # given $10.00 / when the admin sets the alert level to $20.00
    top_up(team, 1000)
    client = client_for(billing_admin)
    response = client.post("/billing/teams/research/alert-level/", {"threshold": "20.00"})
    # then it is saved and the team is now low
    assert response.status_code == 302
    account = Account.objects.get(team=team, kind=AccountKind.AVAILABLE)
    assert account.low_balance_threshold_cents == 2000
    # and a bad level is refused
    assert (
        client.post("/billing/teams/research/alert-level/", {"threshold": "-1"}).status_code == 400
    )


def test_a_member_cannot_change_the_alert_level(team, make_member, client_for):
    response = client_for(make_member(team, Role.MANAGER)).post(
        "/billing/teams/research/alert-level/", {"threshold": "20.00"}
    )
    assert response.status_code == 403


# --- Billing admin: a standalone adjustment ---------------------------------------------------


def adjustment(direction="credit", amount="5.00", reason="Goodwill for the outage", **extra):
    return {
        "amount": amount,
        "direction": direction,
        "reason": reason,
        "idempotency_key": "k" * 32,
        **extra,
    }


def test_the_team_admin_page_links_to_an_adjustment(team, billing_admin, client_for):
    page = client_for(billing_admin).get("/billing/teams/research/").content.decode()
    assert 'href="/billing/teams/research/adjust/"' in page


def test_an_adjustment_is_reviewed_then_confirmed(team, billing_admin, client_for):
    # given $50.00 and the adjustment form
    top_up(team, 5000)
    client = client_for(billing_admin)
    form_page = client.get("/billing/teams/research/adjust/")
    assert form_page.status_code == 200
    key = form_page.context["form"].initial["idempotency_key"]
    data = {**adjustment(direction="debit"), "idempotency_key": key}
    # when a debit is submitted
    review = client.post("/billing/teams/research/adjust/", data)
    # then a review page shows what will happen, and nothing moved yet
    assert review.status_code == 200
    assert "Confirm the adjustment" in review.content.decode()
    assert "$50.00 → $45.00" in review.content.decode()
    assert available(team) == 5000
    # when it is confirmed
    done = client.post("/billing/teams/research/adjust/", {**data, "confirm": "1"}, follow=True)
    # then the money moved, and the ledger shows the adjustment with its reason and its author
    assert available(team) == 4500
    assert "Debited $5.00 from Research" in done.content.decode()
    transfer = Transfer.objects.get(kind=TransferKind.ADJUSTMENT)
    assert (transfer.reference, transfer.caused_by_user) == (
        "Goodwill for the outage",
        billing_admin,
    )
    ledger = client.get("/teams/research/wallet/", {"kind": "adjustment"}).content.decode()
    assert "Goodwill for the outage" in ledger


def test_a_double_submitted_adjustment_adjusts_once(team, billing_admin, client_for):
    # given a billing admin / when they confirm the same credit twice
    client = client_for(billing_admin)
    data = adjustment(confirm="1")
    client.post("/billing/teams/research/adjust/", data)
    second = client.post("/billing/teams/research/adjust/", data, follow=True)
    # then the team got it once, and the second answer says so
    assert available(team) == 500
    assert Transfer.objects.filter(kind=TransferKind.ADJUSTMENT).count() == 1
    assert "already recorded" in second.content.decode()


@pytest.mark.parametrize("confirm", [False, True])
def test_a_debit_beyond_the_balance_is_a_form_error(team, billing_admin, client_for, confirm):
    # given $3.00 available
    top_up(team, 300)
    data = adjustment(direction="debit", amount="3.01")
    if confirm:
        data["confirm"] = "1"
    # when a billing admin debits $3.01, at either step
    response = client_for(billing_admin).post("/billing/teams/research/adjust/", data)
    # then the form says how much can be taken, and nothing moved
    assert response.status_code == 400
    assert "at most $3.00" in response.content.decode()
    assert available(team) == 300
    assert not Transfer.objects.filter(kind=TransferKind.ADJUSTMENT).exists()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (adjustment(reason=""), "This field is required"),
        (adjustment(reason="   "), "This field is required"),
        (adjustment(direction=""), "This field is required"),
        (adjustment(amount="0"), "Enter at least $0.01"),
        (adjustment(amount="10000.01"), "An adjustment can be at most $10,000.00"),
    ],
)
def test_a_bad_adjustment_gets_a_form_error(team, billing_admin, client_for, data, error):
    response = client_for(billing_admin).post(
        "/billing/teams/research/adjust/", {**data, "confirm": "1"}
    )
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not Transfer.objects.filter(kind=TransferKind.ADJUSTMENT).exists()


def test_only_billing_admins_can_adjust(team, make_member, client_for):
    # given a manager of the team and someone from elsewhere
    for user in (make_member(team, Role.MANAGER), UserFactory(username="stranger")):
        client = client_for(user)
        # when they open or confirm an adjustment / then they are refused, like for top-ups
        assert client.get("/billing/teams/research/adjust/").status_code == 403
        response = client.post("/billing/teams/research/adjust/", adjustment(confirm="1"))
        assert response.status_code == 403
    assert not Transfer.objects.exists()


def test_an_adjustment_of_an_unknown_team_is_404(billing_admin, client_for):
    assert client_for(billing_admin).get("/billing/teams/nope/adjust/").status_code == 404


# --- Discrepancies ----------------------------------------------------------------------------


def make_discrepancy(team):
    """A run where Coasty charged 5 cents less than the ledger (the team paid 5 cents too much)."""
    top_up(team, 5000)
    hold = place_hold(team, 100, run_id=uuid.uuid4())
    for step in (1, 2, 3):
        services.hold_capture(reference=hold.reference, step=step, amount_cents=5, caused_by="r")
    return services.hold_settle(
        reference=hold.reference,
        steps_completed=3,
        step_price_cents=5,
        upstream_credits_charged=10,
        upstream_test_mode=False,
        caused_by="r",
    )


def test_open_discrepancies_are_listed_for_billing_admins(team, billing_admin, client_for):
    reconciliation = make_discrepancy(team)
    page = client_for(billing_admin).get("/billing/discrepancies/").content.decode()
    assert reconciliation.hold.reference[:12] in page
    assert "+$0.05" in page


def test_a_discrepancy_is_resolved_with_an_adjustment(team, billing_admin, client_for):
    # given a discrepancy where the team paid 5 cents too much
    reconciliation = make_discrepancy(team)
    before = available(team)
    client = client_for(billing_admin)
    page = client.get(f"/billing/discrepancies/{reconciliation.pk}/")
    assert page.context["adjust_form"].initial["direction"] == "credit"
    data = {
        "action": "adjust",
        "amount": "0.05",
        "direction": "credit",
        "reason": "Coasty billed 2 steps",
        "idempotency_key": "d" * 32,
    }
    # when the admin credits it back, submitting twice
    client.post(f"/billing/discrepancies/{reconciliation.pk}/", data)
    client.post(f"/billing/discrepancies/{reconciliation.pk}/", data)
    # then the team got 5 cents once, and the discrepancy is resolved with the adjustment
    assert available(team) == before + 5
    reconciliation.refresh_from_db()
    assert reconciliation.resolution == Reconciliation.Resolution.ADJUSTED
    assert reconciliation.adjustment.amount_cents == 5
    assert reconciliation.resolved_by == billing_admin
    assert Transfer.objects.filter(kind=TransferKind.ADJUSTMENT).count() == 1
    assert "Nothing to resolve" in client.get("/billing/discrepancies/").content.decode()


@pytest.mark.parametrize(
    ("charged", "direction"),
    [(5, "credit"), (15, "debit")],
)
def test_a_reopened_discrepancy_offers_only_what_is_still_outstanding(
    team, billing_admin, client_for, charged, direction
):
    # given 15 cents charged, 10 billed by Coasty, and 5 credited back on the page
    reconciliation = make_discrepancy(team)
    client = client_for(billing_admin)
    data = {
        "action": "adjust",
        "amount": "0.05",
        "direction": "credit",
        "reason": "Coasty billed 10 cents",
        "idempotency_key": "j" * 32,
    }
    client.post(f"/billing/discrepancies/{reconciliation.pk}/", data)
    # when Coasty later reports another charge (5 cents, or the 15 the ledger charged)
    report = UpstreamReport(steps_completed=3, credits_charged=charged, test_mode=False)
    services.reconcile_hold(hold=reconciliation.hold, caused_by="job", report=report)
    # then the page offers 5 cents more in the right direction, not the whole difference again
    initial = (
        client.get(f"/billing/discrepancies/{reconciliation.pk}/").context["adjust_form"].initial
    )
    assert (initial["amount"], initial["direction"]) == ("0.05", direction)


def test_a_discrepancy_can_be_marked_explained(team, billing_admin, client_for):
    reconciliation = make_discrepancy(team)
    transfers = Transfer.objects.count()
    response = client_for(billing_admin).post(
        f"/billing/discrepancies/{reconciliation.pk}/",
        {"action": "explain", "note": "Coasty credited us directly."},
    )
    assert response.status_code == 302
    reconciliation.refresh_from_db()
    assert reconciliation.resolution == Reconciliation.Resolution.EXPLAINED
    assert Transfer.objects.count() == transfers


def test_an_adjustment_without_a_reason_is_refused(team, billing_admin, client_for):
    reconciliation = make_discrepancy(team)
    response = client_for(billing_admin).post(
        f"/billing/discrepancies/{reconciliation.pk}/",
        {
            "action": "adjust",
            "amount": "0.05",
            "direction": "credit",
            "reason": "",
            "idempotency_key": "e" * 32,
        },
    )
    assert response.status_code == 400
    assert not Transfer.objects.filter(kind=TransferKind.ADJUSTMENT).exists()


def make_matched_after_all(team):
    """A discrepancy that a later check (the 15-minute job) found matched after all."""
    reconciliation = make_discrepancy(team)
    report = UpstreamReport(steps_completed=3, credits_charged=15, test_mode=False)
    matched = services.reconcile_hold(hold=reconciliation.hold, caused_by="job", report=report)
    assert matched.status == Reconciliation.Status.MATCHED
    return reconciliation  # as a tab opened before the re-check still has it


@pytest.mark.parametrize(
    "data",
    [
        {
            "action": "adjust",
            "amount": "50.00",
            "direction": "credit",
            "reason": "Stale tab",
            "idempotency_key": "f" * 32,
        },
        {"action": "explain", "note": "Stale tab"},
    ],
)
def test_a_matched_reconciliation_cannot_be_resolved(team, billing_admin, client_for, data):
    # given a discrepancy that the job has since found matched
    reconciliation = make_matched_after_all(team)
    before = available(team)
    # when an admin posts a resolution from a page opened before that
    response = client_for(billing_admin).post(
        f"/billing/discrepancies/{reconciliation.pk}/", data, follow=True
    )
    # then they are told it is no longer open, and no money moved
    assert "This discrepancy is no longer open" in response.content.decode()
    assert available(team) == before
    assert not Transfer.objects.filter(kind=TransferKind.ADJUSTMENT).exists()
    reconciliation.refresh_from_db()
    assert reconciliation.status == Reconciliation.Status.MATCHED
    assert reconciliation.resolution == Reconciliation.Resolution.NONE


@pytest.mark.parametrize("first", ["adjust", "explain"])
@pytest.mark.parametrize(
    "second",
    [
        {
            "action": "adjust",
            "amount": "0.05",
            "direction": "credit",
            "reason": "Me too",
            "idempotency_key": "h" * 32,
        },
        {"action": "explain", "note": "Me too"},
    ],
)
def test_a_discrepancy_another_admin_resolved_says_so(
    team, billing_admin, client_for, first, second
):
    # given a discrepancy that another billing admin resolved while this one had it open
    reconciliation = make_discrepancy(team)
    colleague = BillingAdminFactory(username="colleague")
    if first == "adjust":
        services.reconciliation_resolve_with_adjustment(
            reconciliation=reconciliation,
            amount_cents=5,
            direction="credit",
            reason="Coasty billed 2 steps",
            actor=colleague,
            idempotency_key="colleague-1",
        )
    else:
        services.reconciliation_mark_explained(
            reconciliation=reconciliation, note="Known", actor=colleague
        )
    before = (available(team), Transfer.objects.count())
    # when this admin resolves it too
    response = client_for(billing_admin).post(
        f"/billing/discrepancies/{reconciliation.pk}/", second, follow=True
    )
    # then they are told who resolved it, and nothing changed
    page = response.content.decode()
    assert "Already resolved by colleague" in page
    assert "Resolved with an adjustment" not in page and "Marked as explained" not in page
    assert (available(team), Transfer.objects.count()) == before
    reconciliation.refresh_from_db()
    assert reconciliation.resolved_by == colleague


def test_a_double_submitted_adjustment_says_it_was_recorded_once(team, billing_admin, client_for):
    # given a discrepancy / when the same adjustment is submitted twice
    reconciliation = make_discrepancy(team)
    before = available(team)
    data = {
        "action": "adjust",
        "amount": "0.05",
        "direction": "credit",
        "reason": "Coasty billed 2 steps",
        "idempotency_key": "i" * 32,
    }
    client = client_for(billing_admin)
    client.post(f"/billing/discrepancies/{reconciliation.pk}/", data)
    second = client.post(f"/billing/discrepancies/{reconciliation.pk}/", data, follow=True)
    # then the money moved once, and the second answer says it was already recorded
    assert available(team) == before + 5
    assert "already recorded" in second.content.decode()


def test_an_adjustment_is_at_most_the_top_up_maximum(team, billing_admin, client_for, settings):
    # given a discrepancy and a top-up maximum of $100.00
    settings.BILLING_TOP_UP_MAX_CENTS = 10_000
    reconciliation = make_discrepancy(team)
    data = {
        "action": "adjust",
        "amount": "100.01",
        "direction": "credit",
        "reason": "Typo",
        "idempotency_key": "g" * 32,
    }
    # when an admin adjusts by more than that
    response = client_for(billing_admin).post(f"/billing/discrepancies/{reconciliation.pk}/", data)
    # then the form says so and no money moved
    assert response.status_code == 400
    assert "An adjustment can be at most $100.00" in response.content.decode()
    assert not Transfer.objects.filter(kind=TransferKind.ADJUSTMENT).exists()


def test_a_member_cannot_resolve_a_discrepancy(team, make_member, client_for):
    reconciliation = make_discrepancy(team)
    response = client_for(make_member(team, Role.MANAGER)).post(
        f"/billing/discrepancies/{reconciliation.pk}/", {"action": "explain", "note": "x"}
    )
    assert response.status_code == 403
