"""Cancel and resume as people ask for them: refused, with a reason, when they cannot apply."""

import pytest

from runs import services
from runs.services import IncomingEvent
from tests.runs.support import _accepted_run

pytestmark = pytest.mark.django_db


def test_cancel_of_an_ended_run_is_refused_with_a_reason(funded_team, make_member, coasty):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    coasty.finish(run.upstream_id, "failed", steps=0)
    services.events_ingest(run_id=run.pk, events=[IncomingEvent(1, "done", {"status": "failed"})])

    with pytest.raises(services.RunActionRefused, match="already ended"):
        services.run_request_cancel(run=run, user=None)


def test_resume_while_a_cancel_is_pending_is_refused(funded_team, make_member, coasty):
    bob = make_member(funded_team)
    run = _accepted_run(funded_team, bob, coasty)
    services.events_ingest(
        run_id=run.pk, events=[IncomingEvent(1, "awaiting_human", {"reason": "captcha"})]
    )
    services.run_request_cancel(run=run, user=bob)

    with pytest.raises(services.RunActionRefused, match="cancel is already requested"):
        services.run_request_resume(run=run, user=bob, note="go on")

    run.refresh_from_db()
    assert (run.pending_action, run.resume_note) == ("cancel", "")
