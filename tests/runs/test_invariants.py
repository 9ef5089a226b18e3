"""check_ledger's invariants on runs (runs.invariants, issue 12 case 8): a settled run has no
open hold, and it was charged exactly what its hold captured."""

from contextlib import contextmanager

import pytest
from django.db import transaction
from django.utils import timezone

from billing.invariants import ledger_problems
from runs.models import Run
from tests.runs.support import _accepted_run

pytestmark = pytest.mark.django_db


@contextmanager
def broken_for_a_moment():
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def test_a_settled_run_whose_hold_is_still_open_is_named(funded_team, make_member, coasty):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    with broken_for_a_moment():
        Run.objects.filter(pk=run.pk).update(settled_at=timezone.now())
        problems = ledger_problems()
    assert f"Run {run.pk} is settled but its hold is still open." in problems


def test_a_settled_run_charged_other_than_its_hold_captured_is_named(
    funded_team, make_member, coasty
):
    from runs import services

    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    coasty.finish(run.upstream_id, "succeeded", steps=2)
    services.run_settle(run_id=run.pk)
    assert ledger_problems() == []
    with broken_for_a_moment():
        Run.objects.filter(pk=run.pk).update(charged_cents=5)
        problems = ledger_problems()
    assert any("charged 5 cents but its hold captured 10" in p for p in problems)
