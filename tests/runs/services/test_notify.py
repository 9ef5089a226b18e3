"""What a run's changes record in the notification outbox: each pause and each end, once,
in the transaction that makes the change."""

import pytest
from django.db import transaction

from portal.notifications.models import EventType, OutboxEvent
from runs import services
from runs.services import IncomingEvent
from tests.runs.support import _accepted_run, _webhook

pytestmark = pytest.mark.django_db


def events(type=None):
    rows = OutboxEvent.objects.order_by("id")
    return list(rows.filter(type=type) if type else rows)


def test_a_change_that_rolls_back_records_nothing(funded_team, make_member, coasty):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.events_ingest(
            run_id=run.pk, events=[IncomingEvent(4, "awaiting_human", {"reason": "captcha"})]
        )
        raise RuntimeError
    assert events() == []


def test_a_pause_is_recorded_once_however_often_it_is_reported(funded_team, make_member, coasty):
    # given a run that pauses, told by the stream and then by a replayed webhook, twice
    launcher = make_member(funded_team)
    run = _accepted_run(funded_team, launcher, coasty)
    pause = IncomingEvent(4, "awaiting_human", {"reason": "captcha"})
    services.events_ingest(run_id=run.pk, events=[pause])
    services.events_ingest(run_id=run.pk, events=[pause])
    webhook = {
        "event": "run.awaiting_human",
        "run_id": run.upstream_id,
        "status": "awaiting_human",
        "created_at": "2026-11-28T10:00:05Z",
    }
    _webhook(run, webhook)
    _webhook(run, webhook)

    # then one event, for the launcher, with the contract's data
    [event] = events(EventType.RUN_AWAITING_HUMAN)
    assert event.user == launcher
    assert event.subject == f"run:{run.pk}"
    assert event.data["run_id"] == str(run.pk)
    assert event.public_data()["team"] == funded_team.slug
    assert event.data["status"] == "awaiting_human"
    assert event.data["task"] == run.task
    assert event.data["url"].endswith(f"/runs/{run.pk}/")


def test_a_second_pause_after_a_resume_is_news_again(funded_team, make_member, coasty):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    services.events_ingest(
        run_id=run.pk,
        events=[
            IncomingEvent(2, "awaiting_human", {"reason": "captcha"}),
            IncomingEvent(3, "resumed", {}),
            IncomingEvent(5, "awaiting_human", {"reason": "login code"}),
        ],
    )
    assert len(events(EventType.RUN_AWAITING_HUMAN)) == 2


@pytest.mark.parametrize(
    ("status", "type"),
    [
        ("succeeded", EventType.RUN_SUCCEEDED),
        ("failed", EventType.RUN_FAILED),
        ("cancelled", EventType.RUN_CANCELLED),
        ("timed_out", EventType.RUN_TIMED_OUT),
    ],
)
def test_an_end_is_recorded_once(funded_team, make_member, coasty, status, type):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    done = IncomingEvent(9, "done", {"status": status})
    services.events_ingest(run_id=run.pk, events=[done])
    services.events_ingest(run_id=run.pk, events=[done])
    _webhook(run, {"event": f"run.{status}", "run_id": run.upstream_id, "status": status})
    assert [e.type for e in events()] == [type]


def test_an_event_links_to_the_run_page_under_the_public_url_of_the_moment(
    funded_team, make_member, coasty, settings
):
    # run_url reverses the run page once per process and public URL, not once per event
    from django.urls import reverse

    from runs.services.notify import run_url

    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    settings.PORTAL_PUBLIC_URL = "https://portal.example.com/"
    assert run_url(run) == "https://portal.example.com" + reverse("run_detail", args=[run.pk])
    settings.PORTAL_PUBLIC_URL = "https://other.example.org"
    assert run_url(run) == "https://other.example.org" + reverse("run_detail", args=[run.pk])
    _webhook(run, {"event": "run.succeeded", "run_id": run.upstream_id, "status": "succeeded"})
    (event,) = events(EventType.RUN_SUCCEEDED)
    assert event.data["url"] == f"https://other.example.org/runs/{run.pk}/"
