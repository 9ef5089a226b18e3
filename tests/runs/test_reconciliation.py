"""What Coasty says a finished run did (runs.reconciliation), as billing's reconciliation
job asks for it."""

import pytest

from runs import services
from tests.runs.support import _accepted_run

pytestmark = pytest.mark.django_db


def test_reconciliation_checks_settled_runs_against_coastys_current_figures(
    funded_team, make_member, coasty, monkeypatch
):
    from billing.models import Reconciliation
    from billing.services import reconcile_finished_holds
    from runs import reconciliation

    monkeypatch.setattr(reconciliation, "coasty_quick", lambda: coasty)
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    coasty.finish(run.upstream_id, "succeeded", steps=3)
    services.run_settle(run_id=run.pk)

    # when Coasty still agrees, the hold reconciles as matched
    reconcile_finished_holds(caused_by="job:test")
    record = Reconciliation.objects.get(run_id=run.pk)
    assert record.status == "matched" and record.upstream_credits_charged == 15

    # when Coasty later reports a step more than was charged, it becomes a discrepancy
    coasty.finish(run.upstream_id, "succeeded", steps=4)
    reconcile_finished_holds(caused_by="job:test")
    record.refresh_from_db()
    assert record.status == "discrepancy"
    assert (record.ledger_captured_cents, record.upstream_credits_charged) == (15, 20)


# --- issue 12, case 7: reconciliation that scales and reads Coasty as settle does ---


def _settled_run(team, user, coasty, steps, **overrides):
    run = _accepted_run(team, user, coasty, **overrides)
    coasty.finish(run.upstream_id, "succeeded", steps=steps)
    services.run_settle(run_id=run.pk)
    run.refresh_from_db()
    return run


def test_a_resolved_discrepancy_stays_resolved_when_coasty_reports_steps_beyond_max_steps(
    funded_team, make_member, coasty, monkeypatch, billing_admin
):
    from billing.models import Reconciliation
    from billing.services import reconcile_finished_holds, reconciliation_mark_explained
    from runs import reconciliation

    monkeypatch.setattr(reconciliation, "coasty_quick", lambda: coasty)
    # given a run Coasty says took 12 steps, with max_steps 10: settle charges 10
    run = _settled_run(funded_team, make_member(funded_team), coasty, steps=12)
    record = Reconciliation.objects.get(run_id=run.pk)
    assert run.charged_cents == 50 and record.status == "discrepancy"  # Coasty billed 60
    reconciliation_mark_explained(
        reconciliation=record, note="Coasty billed past max_steps", actor=billing_admin
    )

    # when the job re-checks it against Coasty's figures, unchanged
    reconcile_finished_holds(caused_by="job:test")

    # then it is the same question, and it stays resolved
    record.refresh_from_db()
    assert record.resolution == "explained" and record.upstream_steps_completed == 10


def test_reconciliation_uses_the_runs_own_test_mode_not_todays_key(
    funded_team, make_member, coasty, monkeypatch, settings
):
    from billing.models import Reconciliation
    from billing.services import reconcile_finished_holds
    from runs import reconciliation

    monkeypatch.setattr(reconciliation, "coasty_quick", lambda: coasty)
    # given a run launched under a test key (Coasty bills nothing for it)
    settings.COASTY_API_KEY = "sk-coasty-test-abc"
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    coasty.finish(run.upstream_id, "succeeded", steps=3, price=0)
    services.run_settle(run_id=run.pk)

    # when the key becomes a live one, and the job re-checks the run
    settings.COASTY_API_KEY = "sk-coasty-live-abc"
    reconcile_finished_holds(caused_by="job:test")

    # then it is still compared as a test-mode run: matched
    record = Reconciliation.objects.get(run_id=run.pk)
    assert record.upstream_test_mode is True and record.status == "matched"


def test_the_job_works_in_batches_and_resumes_after_its_cursor(
    funded_team, make_member, coasty, monkeypatch
):
    from billing.models import Reconciliation
    from billing.services import reconcile_finished_holds
    from runs import reconciliation

    monkeypatch.setattr(reconciliation, "coasty_quick", lambda: coasty)
    user = make_member(funded_team)
    runs = [_settled_run(funded_team, user, coasty, steps=2) for _ in range(3)]
    for run in runs:
        coasty.finish(run.upstream_id, "succeeded", steps=3)  # Coasty now says one more step

    # when each job may only do one batch of one hold before its time is up
    first = reconcile_finished_holds(caused_by="job:test", budget_seconds=0, batch_size=1)
    second = reconcile_finished_holds(caused_by="job:test", budget_seconds=0, batch_size=1)

    # then each job checked the next hold, where the one before stopped
    statuses = [Reconciliation.objects.get(run_id=r.pk).status for r in runs]
    assert statuses == ["discrepancy", "discrepancy", "matched"]
    assert not first.complete and second.resumed_after > first.resumed_after

    # and a job with time enough finishes the list and starts over next time
    last = reconcile_finished_holds(caused_by="job:test")
    assert last.complete
    assert reconcile_finished_holds(caused_by="job:test").resumed_after == 0


def test_coasty_is_asked_with_bounded_concurrency(
    funded_team, make_member, coasty, monkeypatch, settings
):
    import threading
    import time

    from billing.models import Hold
    from runs import reconciliation

    settings.BILLING_RECONCILE_CONCURRENCY = 2
    user = make_member(funded_team)
    runs = [_settled_run(funded_team, user, coasty, steps=1) for _ in range(6)]
    lock, active, peak = threading.Lock(), [0], [0]
    original = coasty.get_run

    def get_run(upstream_id):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        return original(upstream_id)

    coasty.get_run = get_run
    monkeypatch.setattr(reconciliation, "coasty_quick", lambda: coasty)

    reports = reconciliation.upstream_reports(
        list(Hold.objects.filter(run_id__in=[r.pk for r in runs]))
    )

    assert len(reports) == 6 and all(r.steps_completed == 1 for r in reports.values())
    assert 1 <= peak[0] <= 2
