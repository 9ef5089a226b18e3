"""The inbox: paused runs across my teams, oldest first, with resume and cancel inline; the bell
counts unread notifications."""

import pytest

from portal.teams.models import Role
from runs import services as runs
from runs.models import Run, RunStatus
from runs.services import IncomingEvent
from tests.factories import TeamFactory
from tests.runs import conftest as runs_fixtures
from tests.runs.support import _accepted_run

pytestmark = pytest.mark.django_db

# The runs tests' fixtures: a fake Coasty and a funded team.
coasty = runs_fixtures.coasty
funded_team = runs_fixtures.funded_team


def pause(run, seq=4):
    runs.events_ingest(
        run_id=run.pk, events=[IncomingEvent(seq, "awaiting_human", {"reason": "captcha"})]
    )


def test_a_paused_run_is_in_the_inbox_with_how_long_it_waited(
    funded_team, make_member, coasty, client_for
):
    # given a member whose team has a paused run and a running one
    member = make_member(funded_team, Role.MEMBER)
    paused = _accepted_run(funded_team, member, coasty, task="Book the meeting room")
    _accepted_run(funded_team, member, coasty, task="Still running")
    pause(paused)
    # when they open their inbox
    page = client_for(member).get("/inbox/")
    # then the paused run is there, with resume and cancel that come back to the inbox
    body = page.content.decode()
    assert page.status_code == 200
    assert "Book the meeting room" in body and "Still running" not in body
    assert f"/runs/{paused.pk}/resume/" in body and f"/runs/{paused.pk}/cancel/" in body
    assert 'name="next" value="/inbox/"' in body
    assert "data-waited=" in body


def test_resuming_from_the_inbox_comes_back_to_it(funded_team, make_member, coasty, client_for):
    member = make_member(funded_team, Role.MEMBER)
    run = _accepted_run(funded_team, member, coasty)
    pause(run)
    answer = client_for(member).post(
        f"/runs/{run.pk}/resume/", {"note": "solved it", "next": "/inbox/"}
    )
    assert answer.status_code == 302 and answer["Location"] == "/inbox/"
    run.refresh_from_db()
    assert run.pending_action == "resume"
    # an outside address is not followed
    other = client_for(member).post(f"/runs/{run.pk}/cancel/", {"next": "https://evil.example/"})
    assert other["Location"] == f"/runs/{run.pk}/"


def test_viewers_and_other_teams_do_not_see_it(funded_team, make_member, coasty, client_for):
    member = make_member(funded_team, Role.MEMBER)
    run = _accepted_run(funded_team, member, coasty, task="Secret task")
    pause(run)
    viewer = make_member(funded_team, Role.VIEWER)
    outsider = make_member(TeamFactory(slug="ops"), Role.MANAGER)
    for person in (viewer, outsider):
        assert "Secret task" not in client_for(person).get("/inbox/").content.decode()


@pytest.mark.skipif(
    "awaiting_approval" not in RunStatus.values, reason="the budgets work adds the status"
)
def test_approvals_wait_for_managers_only(funded_team, make_member, coasty, client_for):
    # given a member's run and a manager's own run, both waiting for approval
    member = make_member(funded_team, Role.MEMBER)
    manager = make_member(funded_team, Role.MANAGER)
    run = _accepted_run(funded_team, member, coasty, task="Big spend")
    own = _accepted_run(funded_team, manager, coasty, task="My own big spend")
    Run.objects.filter(pk__in=[run.pk, own.pk]).update(status="awaiting_approval")
    # then the manager sees the member's with a link to the run, the member sees neither
    managers_inbox = client_for(manager).get("/inbox/").content.decode()
    assert "Big spend" in managers_inbox and f"/runs/{run.pk}/" in managers_inbox
    assert "Big spend" not in client_for(member).get("/inbox/").content.decode()
    # and the manager's own launch waits for another manager, not in their inbox
    assert "My own big spend" not in managers_inbox


def test_what_waits_longest_comes_first(funded_team, make_member, coasty, client_for):
    # given three paused runs that paused at different times, the newest launched first
    import datetime as dt

    from django.utils import timezone

    member = make_member(funded_team, Role.MEMBER)
    now = timezone.now()
    for task, minutes_ago in (
        ("Paused 5 min ago", 5),
        ("Paused 2 h ago", 120),
        ("Paused 1 h ago", 60),
    ):
        run = _accepted_run(funded_team, member, coasty, task=task)
        pause(run)
        Run.objects.filter(pk=run.pk).update(status_at=now - dt.timedelta(minutes=minutes_ago))
    # when the member opens the inbox
    body = client_for(member).get("/inbox/").content.decode()
    # then the one that has waited longest is first
    positions = [
        body.index(task) for task in ("Paused 2 h ago", "Paused 1 h ago", "Paused 5 min ago")
    ]
    assert positions == sorted(positions)


def test_the_bell_counts_unread_notifications(funded_team, make_member, coasty, client_for):
    member = make_member(funded_team, Role.MEMBER)
    run = _accepted_run(funded_team, member, coasty)
    pause(run)
    from portal.notifications.models import OutboxEvent
    from portal.notifications.services import event_fan_out

    event_fan_out(key=OutboxEvent.objects.get().key)
    client = client_for(member)
    assert "1 unread" in client.get("/inbox/").content.decode()
    assert client.post("/notifications/", {}).status_code == 302
    assert "unread" not in client.get("/inbox/").content.decode().split("<main")[0]
    assert Run.objects.get().status == RunStatus.AWAITING_HUMAN
