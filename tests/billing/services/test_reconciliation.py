"""Reconciliation: does what the ledger charged agree with what Coasty reported?"""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from billing import services
from billing.errors import DiscrepancyNotOpen
from billing.models import Hold, Reconciliation, Transfer, TransferKind
from billing.tasks import reconcile_billing
from billing.verdicts import UpstreamReport
from tests.factories import place_hold, top_up

pytestmark = pytest.mark.django_db

# --- Recording and re-checking ----------------------------------------------------------------


def settled_hold(team, *, steps=3, charged=None, test_mode=False):
    top_up(team, 5000)
    hold = place_hold(team, 100)
    for step in range(1, steps + 1):
        services.hold_capture(reference=hold.reference, step=step, amount_cents=5, caused_by="r")
    services.hold_settle(
        reference=hold.reference,
        steps_completed=steps,
        step_price_cents=5,
        upstream_credits_charged=steps * 5 if charged is None else charged,
        upstream_test_mode=test_mode,
        caused_by="r",
    )
    return Hold.objects.get(pk=hold.pk)


def test_settle_records_the_figures_on_the_hold_and_the_verdict(team):
    hold = settled_hold(team, steps=3)
    assert (hold.upstream_steps_completed, hold.upstream_credits_charged) == (3, 15)
    reconciliation = hold.reconciliation
    assert reconciliation.status == Reconciliation.Status.MATCHED
    assert (reconciliation.ledger_captured_cents, reconciliation.expected_cents) == (15, 15)
    assert reconciliation.checked_by == "r"  # whoever settled it


def test_a_recheck_without_a_reporter_uses_the_recorded_figures(team):
    # given a settled hold and no upstream reporter configured
    hold = settled_hold(team, steps=3, charged=10)
    # when it is re-checked
    result = services.reconcile_hold(hold=hold, caused_by="job:reconcile_billing")
    # then the same discrepancy, from the recorded figures
    assert result.status == Reconciliation.Status.DISCREPANCY
    assert result.source == "recorded figures"
    assert result.checked_by == "job:reconcile_billing"


REPORTS = {}


def fake_reporter(hold):
    """Stands in for the runs app's reporter: BILLING_UPSTREAM_REPORTER points here."""
    return REPORTS.get(hold.reference)


def test_a_recheck_asks_the_configured_reporter_for_fresh_figures(team, settings):
    # given a hold that matched at settle, and Coasty now reporting a lower charge
    settings.BILLING_UPSTREAM_REPORTER = "tests.billing.services.test_reconciliation.fake_reporter"
    hold = settled_hold(team, steps=3)
    REPORTS[hold.reference] = UpstreamReport(steps_completed=3, credits_charged=10, test_mode=False)
    # when it is re-checked
    result = services.reconcile_hold(hold=hold, caused_by="job:reconcile_billing")
    # then the fresh figures turn it into a discrepancy
    assert result.status == Reconciliation.Status.DISCREPANCY
    assert result.source == "upstream reporter"
    assert result.upstream_credits_charged == 10


def test_a_reporter_that_knows_nothing_falls_back_to_the_recorded_figures(team, settings):
    settings.BILLING_UPSTREAM_REPORTER = "tests.billing.services.test_reconciliation.fake_reporter"
    hold = settled_hold(team, steps=2)
    result = services.reconcile_hold(hold=hold, caused_by="job:reconcile_billing")
    assert result.status == Reconciliation.Status.MATCHED
    assert result.source == "recorded figures"


def test_open_holds_and_holds_without_figures_are_not_reconciled(team):
    top_up(team, 5000)
    open_hold = place_hold(team, 100)
    released = place_hold(team, 100)
    services.hold_release(reference=released.reference, caused_by="r")
    assert services.reconcile_hold(hold=open_hold, caused_by="x") is None
    assert services.reconcile_hold(hold=released, caused_by="x") is None


def test_a_resolved_discrepancy_stays_resolved_while_the_figures_stay(
    team, billing_admin, settings
):
    # given a resolved discrepancy
    hold = settled_hold(team, steps=3, charged=10)
    services.reconciliation_mark_explained(
        reconciliation=hold.reconciliation, note="Known upstream credit", actor=billing_admin
    )
    # when it is re-checked with the same figures
    again = services.reconcile_hold(hold=hold, caused_by="job:reconcile_billing")
    # then it stays resolved
    assert again.resolution == Reconciliation.Resolution.EXPLAINED
    # when Coasty later reports different figures that still disagree
    settings.BILLING_UPSTREAM_REPORTER = "tests.billing.services.test_reconciliation.fake_reporter"
    REPORTS[hold.reference] = UpstreamReport(steps_completed=3, credits_charged=5, test_mode=False)
    reopened = services.reconcile_hold(hold=hold, caused_by="job:reconcile_billing")
    # then it is open again, saying why
    assert reopened.is_open_discrepancy
    assert reopened.explanation.startswith("Re-opened")


def test_only_an_open_discrepancy_can_be_resolved(team, billing_admin):
    # given a discrepancy that a later check found matched
    hold = settled_hold(team, steps=3, charged=10)
    stale = hold.reconciliation
    report = UpstreamReport(steps_completed=3, credits_charged=15, test_mode=False)
    services.reconcile_hold(hold=hold, caused_by="job:reconcile_billing", report=report)
    # when it is resolved from the stale copy, either way / then it is refused
    with pytest.raises(DiscrepancyNotOpen, match="no longer open"):
        services.reconciliation_resolve_with_adjustment(
            reconciliation=stale,
            amount_cents=5000,
            direction="credit",
            reason="Stale tab",
            actor=billing_admin,
            idempotency_key="stale-tab-1",
        )
    with pytest.raises(DiscrepancyNotOpen, match="no longer open"):
        services.reconciliation_mark_explained(
            reconciliation=stale, note="Stale tab", actor=billing_admin
        )
    # and nothing was written
    assert not Transfer.objects.filter(kind=TransferKind.ADJUSTMENT).exists()
    assert Reconciliation.objects.get(pk=stale.pk).resolution == Reconciliation.Resolution.NONE


def adjusted_discrepancy(team, billing_admin):
    """The ledger charged 15 cents, Coasty 10 (3 steps at 5), and an admin credited 5 back."""
    hold = settled_hold(team, steps=3, charged=10)
    services.reconciliation_resolve_with_adjustment(
        reconciliation=hold.reconciliation,
        amount_cents=5,
        direction="credit",
        reason="Coasty billed 10 cents",
        actor=billing_admin,
        idempotency_key="first-credit",
    )
    return hold


def recheck(hold, *, steps, charged):
    report = UpstreamReport(steps_completed=steps, credits_charged=charged, test_mode=False)
    return services.reconcile_hold(hold=hold, caused_by="job:reconcile_billing", report=report)


def test_an_adjusted_discrepancy_stays_resolved_while_the_figures_stay(team, billing_admin):
    # given a discrepancy resolved with a 5-cent credit
    hold = adjusted_discrepancy(team, billing_admin)
    # when it is re-checked with the same figures
    again = recheck(hold, steps=3, charged=10)
    # then it stays resolved
    assert again.resolution == Reconciliation.Resolution.ADJUSTED
    assert again.resolved_by == billing_admin


def test_a_reopened_discrepancy_counts_the_adjustment_already_made(team, billing_admin):
    # given 15 cents charged, 10 billed by Coasty, and 5 credited back
    hold = adjusted_discrepancy(team, billing_admin)
    # when Coasty later reports that it billed 5 cents
    reopened = recheck(hold, steps=3, charged=5)
    # then it is open again for the 5 cents still outstanding, not 10
    assert reopened.is_open_discrepancy
    assert reopened.difference_cents == 5
    assert (reopened.resolved_at, reopened.resolved_by) == (None, None)
    assert reopened.explanation.startswith("Re-opened")
    assert "already gave back $0.05" in reopened.explanation
    # and the earlier adjustment is still on record
    assert reopened.adjustment.amount_cents == 5
    assert Transfer.objects.filter(kind=TransferKind.ADJUSTMENT).count() == 1


def test_an_adjustment_made_before_adjustments_carried_their_hold_still_counts(team, billing_admin):
    # given a discrepancy resolved by a credit recorded only on the reconciliation (older rows)
    hold = settled_hold(team, steps=3, charged=10)
    credit, _created = services.wallet_adjust(
        team=team,
        amount_cents=5,
        direction="credit",
        reason="Coasty billed 10 cents",
        actor=billing_admin,
        idempotency_key="reconciliation:old-credit",
    )
    Reconciliation.objects.filter(hold=hold).update(
        resolution=Reconciliation.Resolution.ADJUSTED,
        resolved_at=timezone.now(),
        resolved_by=billing_admin,
        adjustment=credit,
    )
    # when Coasty later reports that it billed 5 cents
    reopened = recheck(hold, steps=3, charged=5)
    # then the earlier credit counts: 5 cents outstanding, not 10
    assert reopened.is_open_discrepancy
    assert reopened.difference_cents == 5


def test_an_adjustment_that_upstream_makes_wrong_reopens_the_discrepancy(team, billing_admin):
    # given 15 cents charged, 10 billed by Coasty, and 5 credited back
    hold = adjusted_discrepancy(team, billing_admin)
    # when Coasty corrects itself: it billed 15 after all, what the ledger charged
    reopened = recheck(hold, steps=3, charged=15)
    # then the credit was wrong: the team now paid 5 cents too little
    assert reopened.is_open_discrepancy
    assert reopened.difference_cents == -5


def test_figures_that_match_thanks_to_the_adjustment_are_matched(team, billing_admin):
    # given 15 cents charged for 3 steps, 10 billed by Coasty, and 5 credited back
    hold = adjusted_discrepancy(team, billing_admin)
    # when Coasty corrects its step count: 2 steps, 10 cents
    result = recheck(hold, steps=2, charged=10)
    # then the team's net charge agrees with Coasty: matched, nothing left to do
    assert result.status == Reconciliation.Status.MATCHED
    assert result.difference_cents == 0
    assert not result.is_open_discrepancy


def test_the_job_rechecks_recent_holds_and_open_discrepancies(team):
    # given a recent matched hold, an old discrepancy, and an old matched hold
    recent = settled_hold(team, steps=1)
    old_discrepancy = settled_hold(team, steps=2, charged=5)
    old_match = settled_hold(team, steps=3)
    long_ago = timezone.now() - timedelta(days=3)
    Hold.objects.filter(pk__in=[old_discrepancy.pk, old_match.pk]).update(settled_at=long_ago)
    # when the job runs
    message = reconcile_billing()
    # then it re-checked the recent hold and the open discrepancy, not the old match
    assert message.startswith("Reconciled 2 hold(s): 1 matched, 1 with a discrepancy")
    assert Reconciliation.objects.get(hold=recent).checked_by == "job:reconcile_billing"
    assert Reconciliation.objects.get(hold=old_match).checked_by != "job:reconcile_billing"


def test_the_reconcile_billing_command_prints_its_summary(team):
    settled_hold(team, steps=1)
    out = StringIO()
    call_command("reconcile_billing", stdout=out)
    assert "Reconciled 1 hold(s): 1 matched" in out.getvalue()


def test_the_job_is_scheduled_every_15_minutes_once():
    from django.core.management.sql import emit_post_migrate_signal

    # given migrate has run (post_migrate created the schedule) / when it runs again, twice
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    # then there is one schedule, every 15 minutes, calling the task
    schedule = Schedule.objects.get(name="billing: reconcile finished holds")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "billing.tasks.reconcile_billing",
        Schedule.MINUTES,
        15,
    )


def broken_reporter(hold):
    raise ConnectionError("Coasty did not answer")


def test_one_hold_the_reporter_fails_on_does_not_stop_the_job(team, settings):
    # given two recent holds and a reporter that fails
    settled_hold(team, steps=1)
    settled_hold(team, steps=2)
    settings.BILLING_UPSTREAM_REPORTER = (
        "tests.billing.services.test_reconciliation.broken_reporter"
    )
    # when the job runs / then it reports the failures instead of crashing
    message = reconcile_billing()
    assert "2 failed (see the log)" in message


def test_settle_says_on_the_ledger_why_it_charged_and_returned(team):
    # given a hold settled with one step nobody captured yet
    top_up(team, 1000)
    hold = place_hold(team, 100)
    services.hold_settle(
        reference=hold.reference,
        steps_completed=1,
        step_price_cents=5,
        upstream_credits_charged=5,
        upstream_test_mode=False,
        caused_by="r",
    )
    # then the capture and the release carry a memo saying why
    memos = dict(hold.transfers.values_list("kind", "memo"))
    assert (
        memos["capture"]
        == "Charged when the hold was settled: Coasty reported 1 completed step(s)."
    )
    assert memos["release"].startswith("The rest of the hold, returned.")
