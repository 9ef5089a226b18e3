"""When the run page stops polling: not before both the money and the timeline are final."""

import datetime as dt

import pytest
from django.utils import timezone

from runs import services
from runs.models import Run, RunEvent, RunStatus
from runs.services import LaunchRequest
from tests.factories import top_up

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob_and_run(team, make_member):
    top_up(team, 5000)
    bob = make_member(team, "member", username="bob")
    request = LaunchRequest(machine_id="vm-linux-1", task="Export the leads", max_steps=10)
    run, _ = services.run_launch(team=team, user=bob, request=request)
    return bob, run


def live_fragment(client_for, user, run) -> str:
    """The live region, which must be there for "data-live-final" being absent to mean a thing."""
    response = client_for(user).get(f"/runs/{run.pk}/live/")
    assert response.status_code == 200
    html = response.content.decode()
    assert (
        f'<section id="run-live" aria-label="Live progress" data-live-url="/runs/{run.pk}/live/"'
        in html
    )
    return html


def ended(run, *, settled_ago: dt.timedelta, events=()):
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.SUCCEEDED,
        settled_at=timezone.now() - settled_ago,
        finished_at=timezone.now() - settled_ago,
    )
    for seq, kind in enumerate(events, start=1):
        RunEvent.objects.create(run=run, seq=seq, type=kind, data={"status": "succeeded"})


def test_a_live_run_keeps_polling(bob_and_run, client_for):
    bob, run = bob_and_run
    html = live_fragment(client_for, bob, run)
    assert "data-live-final" not in html
    assert "Waiting for Coasty to accept it" in html


def test_a_settled_run_whose_stream_has_not_finished_keeps_polling(bob_and_run, client_for):
    # given a run settled from Coasty's figures while its last events are still on the way
    bob, run = bob_and_run
    ended(run, settled_ago=dt.timedelta(seconds=2), events=["status", "status"])

    # then the page asks again, so those events still appear on it
    html = live_fragment(client_for, bob, run)
    assert "data-live-final" not in html
    assert "Settled:" in html and "2 events" in html


def test_a_settled_run_with_its_stream_done_stops_polling(bob_and_run, client_for):
    bob, run = bob_and_run
    ended(run, settled_ago=dt.timedelta(seconds=2), events=["status", "done"])
    assert "data-live-final" in live_fragment(client_for, bob, run)


def test_a_settled_run_whose_stream_never_finished_stops_after_a_minute(bob_and_run, client_for):
    bob, run = bob_and_run
    ended(run, settled_ago=dt.timedelta(seconds=61), events=["status"])
    assert "data-live-final" in live_fragment(client_for, bob, run)
