"""Settling an ended run from Coasty's own record: uncharged steps charged, the rest of the
hold returned, once."""

import pytest

from runs import services
from tests.runs.support import _accepted_run, _step_events, _wallet

pytestmark = pytest.mark.django_db


def test_settle_charges_uncharged_steps_releases_the_rest_and_is_idempotent(
    funded_team, make_member, coasty
):
    # given a run that streamed only its first step before ending after 3 steps
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    services.events_ingest(run_id=run.pk, events=_step_events(1, 1))
    coasty.finish(run.upstream_id, "succeeded", steps=3)

    # when it is settled twice
    services.run_settle(run_id=run.pk)
    services.run_settle(run_id=run.pk)

    # then exactly 3 steps are charged and the other 35¢ came back
    run.refresh_from_db()
    assert (run.status, run.steps_completed, run.charged_cents) == ("succeeded", 3, 15)
    assert run.settled_at is not None
    assert _wallet(funded_team) == (4985, 0, 15)
    assert sum(1 for c in coasty.calls if c[0] == "get") == 1


def test_settle_waits_while_coasty_says_the_run_is_live(funded_team, make_member, coasty):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    services.run_settle(run_id=run.pk)
    run.refresh_from_db()
    assert run.settled_at is None and _wallet(funded_team) == (4950, 50, 0)
