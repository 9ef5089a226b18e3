"""From an event to what people and endpoints get: a notification per person, one email per
person who wants it, one signed delivery per subscribed endpoint of the team; all once."""

import base64
import hashlib
import hmac
import json

import pytest
from django.core import mail

from portal.notifications import services
from portal.notifications.models import (
    EmailPreference,
    EndpointFormat,
    EventType,
    Notification,
    OutboxEvent,
    WebhookDelivery,
)
from portal.notifications.services import event_record
from portal.teams.models import Role
from runs import services as runs
from runs.services import IncomingEvent
from tests.factories import BillingAdminFactory, TeamFactory
from tests.runs.support import _accepted_run

pytestmark = pytest.mark.django_db


def verify_standard_webhook(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's side of Standard Webhooks, written from the spec, not from the portal."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = headers["webhook-id"].encode() + b"." + headers["webhook-timestamp"].encode()
    expected = base64.b64encode(hmac.new(key, signed + b"." + body, hashlib.sha256).digest())
    for candidate in headers["webhook-signature"].split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return True
    return False


def pause(run, seq=4):
    runs.events_ingest(
        run_id=run.pk, events=[IncomingEvent(seq, "awaiting_human", {"reason": "captcha"})]
    )


def test_a_paused_run_reaches_its_launcher_and_the_teams_endpoint(
    funded_team, make_member, coasty, receiver, tasks_inline, django_capture_on_commit_callbacks
):
    # given a launcher, a manager, and an endpoint of the team subscribed to pauses
    launcher = make_member(funded_team, Role.MEMBER, username="lena")
    make_member(funded_team, Role.MANAGER, username="mo")
    endpoint, secret = services.endpoint_create(
        team=funded_team, user=None, url=receiver.url, events=[EventType.RUN_AWAITING_HUMAN]
    )
    run = _accepted_run(funded_team, launcher, coasty)
    mail.outbox.clear()

    # when the run pauses for a person (tasks run inline after commit)
    with django_capture_on_commit_callbacks(execute=True):
        pause(run)

    # then its launcher has a notification linking to the run
    [notification] = Notification.objects.all()
    assert notification.user == launcher
    assert notification.url.endswith(f"/runs/{run.pk}/")
    assert "waits for a person" in notification.text
    # and one email, plain and HTML, with the link
    [email] = mail.outbox
    assert email.to == ["lena@example.com"]
    assert notification.url in email.body
    html, mimetype = email.alternatives[0]
    assert mimetype == "text/html" and notification.url in html
    # and the endpoint got one delivery that verifies with the standard algorithm
    [got] = receiver.received
    assert verify_standard_webhook(secret, got.headers, got.body)
    assert not verify_standard_webhook(secret, got.headers, got.body + b" ")
    payload = json.loads(got.body)
    assert payload["type"] == "run.awaiting_human"
    assert payload["data"]["run_id"] == str(run.pk)
    assert payload["data"]["team"] == funded_team.slug
    assert payload["data"]["status"] == "awaiting_human"
    assert payload["data"]["task"] == run.task
    assert payload["data"]["url"].endswith(f"/runs/{run.pk}/")
    assert set(payload) == {"type", "timestamp", "data"}
    assert set(payload["data"]) == {"run_id", "team", "status", "task", "url"}  # the contract
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert delivery.status == "delivered"
    assert got.headers["webhook-id"] == delivery.webhook_id
    # and the event is marked dispatched
    assert OutboxEvent.objects.get().dispatched_at is not None
    # and the email's link, opened logged out, lands on the run once the launcher logs in
    from urllib.parse import urlsplit

    from django.test import Client

    from tests.factories import PASSWORD

    path = urlsplit(notification.url).path
    browser = Client(REMOTE_ADDR="203.0.113.5")
    to_login = browser.get(path)
    assert to_login.status_code == 302 and f"next={path}" in to_login["Location"]
    logged_in = browser.post(to_login["Location"], {"username": "lena", "password": PASSWORD})
    assert logged_in.status_code == 302 and logged_in["Location"] == path
    assert run.task in browser.get(path).content.decode()


def test_fanning_out_again_adds_nothing(funded_team, make_member, coasty, receiver):
    # given a paused run, fanned out once, with an endpoint
    launcher = make_member(funded_team)
    services.endpoint_create(
        team=funded_team, user=None, url=receiver.url, events=[EventType.RUN_AWAITING_HUMAN]
    )
    run = _accepted_run(funded_team, launcher, coasty)
    pause(run)
    key = OutboxEvent.objects.get().key
    mail.outbox.clear()
    first = services.event_fan_out(key=key)
    # when the sweep (or a retried task) fans it out twice more
    services.event_fan_out(key=key)
    services.event_fan_out(key=key)
    # then still one notification, one email and one delivery, with the first webhook-id
    assert Notification.objects.count() == 1
    assert len(mail.outbox) == 1
    [delivery] = WebhookDelivery.objects.all()
    assert first == [delivery.pk]


def test_the_sweep_fans_out_an_event_whose_task_was_lost(team, make_member, settings):
    # given an event recorded while its on-commit task never ran (a crash after commit)
    manager = make_member(team, Role.MANAGER)
    event_record(EventType.BUDGET_THRESHOLD, team_id=team.pk, subject="budget:1", key="b1")
    OutboxEvent.objects.update(created_at="2020-01-01T00:00:00Z")
    # when the periodic sweep runs
    from portal.notifications.tasks import notifications_sweep

    notifications_sweep()
    # then the managers were told
    assert list(Notification.objects.values_list("user", flat=True)) == [manager.pk]
    assert OutboxEvent.objects.get().dispatched_at is not None


def test_other_teams_endpoints_and_unsubscribed_ones_get_nothing(team, make_member, receiver):
    # given the team's endpoint for failures only, and another team's endpoint for everything
    make_member(team)
    other = TeamFactory(slug="ops")
    services.endpoint_create(team=team, user=None, url=receiver.url, events=["run.failed"])
    services.endpoint_create(team=other, user=None, url=receiver.url, events=list(EventType.values))
    # when one of the team's events is fanned out
    event_record(EventType.RUN_AWAITING_HUMAN, team_id=team.pk, subject="run:x", key="k", data={})
    services.event_fan_out(key="k")
    # then no endpoint got a delivery
    assert WebhookDelivery.objects.count() == 0


@pytest.mark.parametrize(
    ("event_type", "who"),
    [
        (EventType.RUN_AWAITING_HUMAN, {"launcher"}),
        (EventType.RUN_SUCCEEDED, {"launcher"}),
        (EventType.RUN_FAILED, {"launcher"}),
        (EventType.RUN_CANCELLED, {"launcher"}),
        (EventType.RUN_TIMED_OUT, {"launcher"}),
        (EventType.RUN_AWAITING_APPROVAL, {"manager"}),
        (EventType.BUDGET_THRESHOLD, {"manager"}),
        (EventType.WALLET_LOW_BALANCE, {"manager", "treasurer"}),
        (EventType.BILLING_DISCREPANCY_OPENED, {"treasurer"}),
        (EventType.SCHEDULE_SKIPPED, {"launcher"}),
    ],
)
def test_each_type_reaches_the_people_it_concerns(team, make_member, event_type, who):
    # given a launcher, a manager, a viewer and a billing admin
    launcher = make_member(team, Role.MEMBER, username="launcher")
    make_member(team, Role.MANAGER, username="manager")
    make_member(team, Role.VIEWER, username="viewer")
    BillingAdminFactory(username="treasurer")
    # when an event of the type is recorded for the launcher and fanned out
    event_record(event_type, team_id=team.pk, subject="x:1", key="k", user_id=launcher.pk)
    services.event_fan_out(key="k")
    # then exactly the people concerned have a notification, with some text and a link
    notified = set(Notification.objects.values_list("user__username", flat=True))
    assert notified == who
    for notification in Notification.objects.all():
        assert notification.text and notification.url.startswith("http")


def test_an_email_preference_turns_email_off_but_not_the_bell(team, make_member):
    # given a launcher who does not want emails about failures
    launcher = make_member(team)
    services.email_preferences_set(user=launcher, enabled_types={EventType.RUN_AWAITING_HUMAN})
    assert EmailPreference.objects.get(user=launcher, event_type="run.failed").enabled is False
    # when one of their runs fails
    event_record(EventType.RUN_FAILED, team_id=team.pk, subject="r", key="k", user_id=launcher.pk)
    mail.outbox.clear()
    services.event_fan_out(key="k")
    # then they see it in the portal, and get no email
    assert Notification.objects.filter(user=launcher).count() == 1
    assert mail.outbox == []


def test_a_slack_endpoint_gets_a_message_with_a_link(team, make_member, receiver, tasks_inline):
    launcher = make_member(team)
    services.endpoint_create(
        team=team,
        user=None,
        url=receiver.url,
        events=["run.failed"],
        format=EndpointFormat.SLACK,
    )
    data = {
        "run_id": "r1",
        "status": "failed",
        "task": "Book <a> room",
        "url": "x",
        "charged_cents": 250,
    }
    event_record(
        EventType.RUN_FAILED, team_id=team.pk, subject="r", key="k", data=data, user_id=launcher.pk
    )
    services.event_fan_out(key="k")
    from portal.notifications.tasks import delivery_send

    delivery_send(delivery_id=WebhookDelivery.objects.get().pk)
    [got] = receiver.received
    text = json.loads(got.body)["text"]
    assert "Book &lt;a&gt; room" in text and "$2.50" in text and "failed" in text
    assert "webhook-signature" not in got.headers


def test_an_email_that_cannot_be_sent_is_sent_by_the_next_fan_out(team, make_member, monkeypatch):
    # given a manager, and a mail server that fails once
    manager = make_member(team, Role.MANAGER)
    event_record(EventType.BUDGET_THRESHOLD, team_id=team.pk, subject="b", key="k")
    real_send = mail.EmailMultiAlternatives.send
    failures = [RuntimeError("smtp down")]

    def flaky_send(self, *args, **kwargs):
        if failures:
            raise failures.pop()
        return real_send(self, *args, **kwargs)

    monkeypatch.setattr(mail.EmailMultiAlternatives, "send", flaky_send)
    mail.outbox.clear()
    # when the first fan-out fails on the email
    with pytest.raises(RuntimeError):
        services.event_fan_out(key="k")
    # then the event is open again, and the next fan-out (the sweep's) sends it, once
    assert OutboxEvent.objects.get().dispatched_at is None
    services.event_fan_out(key="k")
    services.event_fan_out(key="k")
    assert [m.to for m in mail.outbox] == [[manager.email]]
    assert Notification.objects.count() == 1


def test_a_fan_out_tried_again_sends_only_the_emails_not_sent(team, make_member, monkeypatch):
    # given two managers, and a mail server that takes the first email and fails the second
    first, second = make_member(team, Role.MANAGER), make_member(team, Role.MANAGER)
    event_record(EventType.BUDGET_THRESHOLD, team_id=team.pk, subject="b", key="k2")
    real_send = mail.EmailMultiAlternatives.send
    calls = []

    def flaky_send(self, *args, **kwargs):
        calls.append(self.to)
        if len(calls) == 2:
            raise RuntimeError("smtp down")
        return real_send(self, *args, **kwargs)

    monkeypatch.setattr(mail.EmailMultiAlternatives, "send", flaky_send)
    mail.outbox.clear()
    with pytest.raises(RuntimeError):
        services.event_fan_out(key="k2")
    sent = mail.outbox[0].to
    # when the event is fanned out again (the sweep), and again
    services.event_fan_out(key="k2")
    services.event_fan_out(key="k2")
    # then the one who did not get it gets it, once, and nobody gets two
    assert sorted(m.to[0] for m in mail.outbox) == sorted([first.email, second.email])
    assert sent != mail.outbox[1].to
    assert Notification.objects.filter(event__key="k2", email_sent_at__isnull=True).count() == 0


def test_a_first_fan_out_claims_its_emails_and_ids_as_it_inserts(
    team, make_member, receiver, django_assert_num_queries
):
    # given three managers, one of whom turned budget emails off, and the team's endpoint
    managers = [make_member(team, Role.MANAGER) for _ in range(3)]
    EmailPreference.objects.create(
        user=managers[1], event_type=EventType.BUDGET_THRESHOLD, enabled=False
    )
    services.endpoint_create(
        team=team, user=None, url=receiver.url, events=[EventType.BUDGET_THRESHOLD]
    )
    event_record(EventType.BUDGET_THRESHOLD, team_id=team.pk, subject="b", key="k3")
    mail.outbox.clear()
    # when it is fanned out for the first time: the event locked, the managers, the endpoints,
    # the preferences, the notifications' and the deliveries' INSERTs, the event marked (and
    # the savepoint pair of the test's transaction)
    with django_assert_num_queries(9):
        deliveries = services.event_fan_out(key="k3")
    # then the ids are the delivery's, and the two who want an email have it, claimed
    assert deliveries == list(WebhookDelivery.objects.values_list("pk", flat=True))
    assert sorted(m.to[0] for m in mail.outbox) == sorted([managers[0].email, managers[2].email])
    claimed = Notification.objects.filter(event__key="k3", email_sent_at__isnull=False)
    assert sorted(claimed.values_list("user_id", flat=True)) == [managers[0].pk, managers[2].pk]
    assert OutboxEvent.objects.get(key="k3").fan_outs == 1
    # and fanning out again changes nothing
    assert services.event_fan_out(key="k3") == []
    assert len(mail.outbox) == 2


def test_an_event_fanned_out_before_fan_outs_were_counted_can_be_fanned_out_again(
    team, make_member
):
    import importlib

    from django.apps import apps

    counted = importlib.import_module(
        "portal.notifications.migrations.0006_fan_outs_of_every_event_with_rows"
    )
    # given an event fanned out by the code before `fan_outs` (its notification made, its count
    # left at 0 by migration 0005 because it was dispatched), then reopened with its email unsent
    manager = make_member(team, Role.MANAGER)
    event_record(EventType.BUDGET_THRESHOLD, team_id=team.pk, subject="b", key="old")
    services.event_fan_out(key="old")
    OutboxEvent.objects.filter(key="old").update(fan_outs=0, dispatched_at=None)
    Notification.objects.filter(event__key="old").update(email_sent_at=None)
    # and an event never fanned out
    event_record(EventType.BUDGET_THRESHOLD, team_id=team.pk, subject="b", key="new")
    # when the migration counts what was fanned out
    counted.count_events_with_rows_as_fanned_out(apps, None)
    assert dict(OutboxEvent.objects.values_list("key", "fan_outs")) == {"old": 1, "new": 0}
    # then fanning out again skips the rows made before and sends the email not sent, once
    mail.outbox.clear()
    services.event_fan_out(key="old")
    services.event_fan_out(key="old")
    assert [m.to for m in mail.outbox] == [[manager.email]]
    assert Notification.objects.filter(event__key="old").count() == 1
