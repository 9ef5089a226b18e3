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
