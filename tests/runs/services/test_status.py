"""How a run's status moves, from stream events and webhooks alike: forward only, on Coasty's
own words, the newest proof winning."""

import pytest

from runs import services
from runs.services import IncomingEvent
from tests.runs.support import _accepted_run, _wallet, _webhook

pytestmark = pytest.mark.django_db


def test_status_never_moves_backwards(funded_team, make_member, coasty):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)

    services.events_ingest(
        run_id=run.pk,
        events=[
            IncomingEvent(1, "status", {"status": "running"}),
            IncomingEvent(5, "awaiting_human", {"reason": "captcha"}),
        ],
    )
    # a late, lower seq "running" does not undo the pause
    services.events_ingest(
        run_id=run.pk, events=[IncomingEvent(3, "status", {"status": "running"})]
    )
    run.refresh_from_db()
    assert (run.status, run.awaiting_human_reason) == ("awaiting_human", "captcha")

    services.events_ingest(run_id=run.pk, events=[IncomingEvent(6, "resumed", {"note": "done"})])
    services.events_ingest(
        run_id=run.pk, events=[IncomingEvent(7, "done", {"status": "succeeded"})]
    )
    services.events_ingest(
        run_id=run.pk, events=[IncomingEvent(8, "status", {"status": "running"})]
    )
    run.refresh_from_db()
    assert run.status == "succeeded"


def test_an_older_stream_event_does_not_undo_a_newer_webhook(funded_team, make_member, coasty):
    # given the awaiting_human webhook arrived before the stream's earlier events were stored
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    _webhook(
        run,
        {
            "event": "run.awaiting_human",
            "run_id": run.upstream_id,
            "status": "awaiting_human",
            "awaiting_human_reason": "captcha",
            "created_at": "2026-11-28T10:00:05Z",
        },
    )
    run.refresh_from_db()
    services.run_request_resume(run=run, user=None, note="solved")

    # when the stream then delivers the older "running" status (seq 2) and the pause (seq 8)
    services.events_ingest(
        run_id=run.pk,
        events=[
            IncomingEvent(2, "status", {"status": "running", "at": "2026-11-28T10:00:01Z"}),
            IncomingEvent(8, "awaiting_human", {"reason": "captcha", "at": "2026-11-28T10:00:05Z"}),
        ],
    )

    # then the run still waits for a human and the resume request stands
    run.refresh_from_db()
    assert (run.status, run.pending_action) == ("awaiting_human", "resume")

    # and the real resume (newer seq and time) moves it on
    services.events_ingest(
        run_id=run.pk,
        events=[
            IncomingEvent(10, "resumed", {"note": "solved", "at": "2026-11-28T10:00:09Z"}),
        ],
    )
    run.refresh_from_db()
    assert (run.status, run.pending_action) == ("running", "")


def test_a_late_awaiting_human_webhook_does_not_pause_a_resumed_run(
    funded_team, make_member, coasty
):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    services.events_ingest(
        run_id=run.pk,
        events=[
            IncomingEvent(1, "awaiting_human", {"reason": "captcha", "at": "2026-11-28T10:00:05Z"}),
            IncomingEvent(2, "resumed", {"note": "ok", "at": "2026-11-28T10:00:09Z"}),
        ],
    )

    answer = _webhook(
        run,
        {
            "event": "run.awaiting_human",
            "run_id": run.upstream_id,
            "status": "awaiting_human",
            "created_at": "2026-11-28T10:00:05Z",
        },
    )

    run.refresh_from_db()
    assert answer.status == 200 and answer.message.startswith("no change")
    assert run.status == "running"


@pytest.mark.parametrize("word", ["submit_failed", "pending", "provisioning"])
def test_a_status_coasty_never_sends_changes_nothing(funded_team, make_member, coasty, word):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)

    services.events_ingest(
        run_id=run.pk,
        events=[
            IncomingEvent(1, "status", {"status": "running"}),
            IncomingEvent(2, "status", {"status": word}),
            IncomingEvent(3, "done", {"status": word}),
        ],
    )
    _webhook(run, {"event": "run.failed", "run_id": run.upstream_id, "status": word})

    # then the run is still live, so the follower and settle still look after its hold
    run.refresh_from_db()
    assert run.status == "running" and run.finished_at is None
    coasty.finish(run.upstream_id, "succeeded", steps=2)
    services.run_settle(run_id=run.pk)
    assert _wallet(funded_team) == (4990, 0, 10)
