"""Who did what: the person who resumed or cancelled a run is stored and shown, on the timeline
and in the API's events (`actor`), while Coasty's seq numbers stay Coasty's."""

import pytest
from django.urls import reverse

from runs import services
from runs.models import RunActivity, RunEvent
from runs.services import IncomingEvent
from tests.runs.support import _accepted_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def paused(funded_team, make_member, coasty):
    bob = make_member(funded_team, "member", username="bob")
    run = _accepted_run(funded_team, bob, coasty)
    services.events_ingest(
        run_id=run.pk,
        events=[
            IncomingEvent(1, "status", {"status": "running"}),
            IncomingEvent(2, "awaiting_human", {"reason": "captcha"}),
        ],
    )
    run.refresh_from_db()
    return run, bob


def test_coastys_resumed_event_names_who_asked(paused, api_client_for, client_for):
    run, bob = paused
    # given bob asked for the resume
    services.run_request_resume(run=run, user=bob, note="solved it")

    # when Coasty's `resumed` arrives (twice: a replayed stream)
    batch = [IncomingEvent(3, "resumed", {"note": "solved it"})]
    services.events_ingest(run_id=run.pk, events=batch)
    services.events_ingest(run_id=run.pk, events=batch)

    # then the event names bob, in the API and on the page
    assert RunEvent.objects.get(run=run, seq=3).actor == bob
    events = api_client_for(bob).get(f"/api/v1/runs/{run.pk}/events/").json()["results"]
    assert [(e["seq"], e["type"], e["actor"]) for e in events][-1] == (3, "resumed", "bob")
    assert events[0]["actor"] is None
    page = client_for(bob).get(reverse("run_detail", args=[run.pk])).content.decode()
    assert '<span class="kind resumed">Resumed</span>' in page
    assert '<span class="actor">by bob</span>' in page


def test_a_resume_made_elsewhere_is_not_pinned_on_an_earlier_asker(paused):
    run, bob = paused
    services.run_request_resume(run=run, user=bob)
    services.events_ingest(run_id=run.pk, events=[IncomingEvent(3, "resumed", {})])

    # when the run pauses again and Coasty resumes it without anyone asking in the portal
    services.events_ingest(
        run_id=run.pk,
        events=[
            IncomingEvent(4, "awaiting_human", {"reason": "again"}),
            IncomingEvent(5, "resumed", {}),
        ],
    )

    assert RunEvent.objects.get(run=run, seq=5).actor is None


def test_cancel_is_recorded_once_with_its_actor_and_keeps_coastys_seq(
    paused, api_client_for, client_for
):
    run, bob = paused
    # when bob asks for a cancel twice (a double click)
    services.run_request_cancel(run=run, user=bob)
    services.run_request_cancel(run=run, user=bob)

    # then one record names him, placed after the event the run had reached
    record = RunActivity.objects.get(run=run)
    assert (record.kind, record.actor, record.after_seq) == ("cancel_requested", bob, 2)
    # and Coasty's stream still resumes where it was: no seq was taken
    run.refresh_from_db()
    assert run.last_seq == 2
    assert RunEvent.objects.filter(run=run).count() == 2

    # and Coasty's later events come after the record
    services.events_ingest(
        run_id=run.pk, events=[IncomingEvent(3, "status", {"status": "cancelled"})]
    )
    events = api_client_for(bob).get(f"/api/v1/runs/{run.pk}/events/").json()["results"]
    assert [(e["seq"], e["type"], e["actor"]) for e in events] == [
        (1, "status", None),
        (2, "awaiting_human", None),
        (2, "cancel_requested", "bob"),
        (3, "status", None),
    ]
    # a reader who had read through #2 before gets only what is newer
    newer = api_client_for(bob).get(f"/api/v1/runs/{run.pk}/events/?after=2").json()["results"]
    assert [e["seq"] for e in newer] == [3]

    page = client_for(bob).get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "Cancel requested</span>" in page
    assert '<span class="actor">by bob</span>' in page


def test_paged_api_events_keep_a_record_with_its_event(paused, api_client_for):
    run, bob = paused
    services.run_request_cancel(run=run, user=bob)

    services.events_ingest(run_id=run.pk, events=[IncomingEvent(3, "done", {"status": "x"})])

    first = api_client_for(bob).get(f"/api/v1/runs/{run.pk}/events/?limit=2").json()
    rest = api_client_for(bob).get(first["next"]).json()

    assert [e["type"] for e in first["results"]] == ["status", "awaiting_human", "cancel_requested"]
    assert [e["seq"] for e in rest["results"]] == [3]


def test_the_activity_service_is_reusable_for_approvals(paused):
    run, bob = paused

    services.run_activity_record(run=run, kind=RunActivity.Kind.APPROVED, actor=bob)

    assert RunActivity.objects.get(run=run).as_event().source == "portal"
