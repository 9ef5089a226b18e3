"""Sending a delivery: retried with back-off until a 2xx, the same webhook-id every time, never
lost by a worker that dies mid-send, and never sent where it may not go."""

import socket
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from portal.notifications import delivery as sending
from portal.notifications import services
from portal.notifications.destinations import DestinationRefused, url_check
from portal.notifications.models import EventType, Notification, WebhookDelivery
from portal.notifications.services import event_record
from portal.teams.models import Role
from tests.notifications.test_fan_out import verify_standard_webhook

pytestmark = pytest.mark.django_db


def one_delivery(team, receiver, key="k"):
    endpoint, secret = services.endpoint_create(
        team=team, user=None, url=receiver.url, events=[EventType.RUN_FAILED]
    )
    event_record(EventType.RUN_FAILED, team_id=team.pk, subject="run:1", key=key, data={})
    [delivery_id] = services.event_fan_out(key=key)
    return WebhookDelivery.objects.get(pk=delivery_id), endpoint, secret


def attempt_when_due(delivery):
    """One attempt at the moment the delivery is next due (time moved on, not waited for)."""
    delivery.refresh_from_db()
    return sending.delivery_attempt(delivery_id=delivery.pk, now=delivery.next_attempt_at)


def test_a_receiver_failing_twice_gets_the_same_webhook_id_three_times(team, receiver):
    # given a receiver that answers 500, then 503, then 200
    receiver.statuses = [500, 503]
    delivery, _, secret = one_delivery(team, receiver)
    # when the delivery is attempted whenever it is due
    for _ in range(3):
        attempt_when_due(delivery)
    # then the receiver saw three attempts with one webhook-id, each signed afresh
    ids = [got.headers["webhook-id"] for got in receiver.received]
    assert ids == [delivery.webhook_id] * 3
    assert all(verify_standard_webhook(secret, r.headers, r.body) for r in receiver.received)
    assert len({got.body for got in receiver.received}) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 3, 200)
    assert [a.status_code for a in delivery.attempt_log.all()] == [500, 503, 200]


def test_retries_back_off_from_seconds_to_an_hour_then_fail(team, receiver):
    # given a receiver that always fails
    receiver.statuses = [500] * 20
    delivery, _, _ = one_delivery(team, receiver)
    first = timezone.now()
    waits = []
    # when every attempt is made when due
    while True:
        before = WebhookDelivery.objects.get(pk=delivery.pk).next_attempt_at
        after = attempt_when_due(delivery)
        if after.status != "pending":
            break
        waits.append((after.next_attempt_at - before).total_seconds())
    # then: first retry within 10 s, at least 6 attempts, over at least an hour, then failed
    assert waits[0] <= 10
    assert waits == sorted(waits)
    assert after.attempts >= 6
    assert after.next_attempt_at - first >= timedelta(hours=1)
    assert after.status == "failed"
    assert len(receiver.received) == after.attempts


def test_a_worker_killed_between_claim_and_answer_loses_nothing(team, receiver):
    # given a worker that claimed the delivery and died before recording anything
    delivery, _, _ = one_delivery(team, receiver)
    now = timezone.now()
    assert sending.delivery_claim(delivery_id=delivery.pk, now=now) is not None
    # when another worker tries while the lease still runs: it leaves it alone
    assert sending.delivery_attempt(delivery_id=delivery.pk, now=now + timedelta(seconds=5)) is None
    assert sending.due_deliveries(now=now + timedelta(seconds=5)) == []
    # and once the lease has run out, the sweep finds it and a worker sends it
    later = now + sending.lease_length() + timedelta(seconds=1)
    assert sending.due_deliveries(now=later) == [delivery.pk]
    after = sending.delivery_attempt(delivery_id=delivery.pk, now=later)
    # then it is delivered with its one webhook-id; the log shows the attempt that got no answer
    assert after.status == "delivered"
    [got] = receiver.received
    assert got.headers["webhook-id"] == delivery.webhook_id
    first, second = after.attempt_log.all()
    assert first.finished_at is None and second.status_code == 200


def test_the_same_attempt_is_never_sent_twice_by_two_workers(team, receiver):
    delivery, _, _ = one_delivery(team, receiver)
    now = timezone.now()
    assert sending.delivery_claim(delivery_id=delivery.pk, now=now) is not None
    assert sending.delivery_claim(delivery_id=delivery.pk, now=now) is None


def test_redirects_are_not_followed(team, receiver):
    receiver.statuses = [302]
    delivery, _, _ = one_delivery(team, receiver)
    after = attempt_when_due(delivery)
    assert len(receiver.received) == 1
    assert after.status == "pending" and after.last_status_code == 302
    assert "Redirects are not followed" in after.last_error


def test_only_the_start_of_an_answer_is_kept(team, receiver):
    receiver.answer_body = b"x" * 5000
    delivery, _, _ = one_delivery(team, receiver)
    after = attempt_when_due(delivery)
    assert len(after.attempt_log.get().response_prefix) <= 200


def test_a_rotated_secret_signs_alongside_the_old_one_for_the_overlap(team, receiver):
    # given an endpoint whose secret was rotated
    delivery, endpoint, old = one_delivery(team, receiver)
    new = services.endpoint_secret_rotate(endpoint=endpoint)
    # when a delivery is sent during the overlap window
    attempt_when_due(delivery)
    # then both the old and the new secret verify it
    [got] = receiver.received
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert verify_standard_webhook(old, got.headers, got.body)
    assert verify_standard_webhook(new, got.headers, got.body)


def test_the_secret_is_stored_encrypted(team, receiver):
    _, endpoint, secret = one_delivery(team, receiver)
    assert secret.startswith("whsec_")
    assert secret not in endpoint.secret_encrypted
    assert services.endpoint_secrets(endpoint) == [secret]


def test_an_endpoint_that_keeps_failing_is_disabled_and_its_managers_told(
    team, make_member, receiver, settings, django_capture_on_commit_callbacks
):
    # given a manager, and an endpoint whose deliveries all fail
    settings.NOTIFY_DISABLE_AFTER_FAILED_DELIVERIES = 2
    settings.NOTIFY_RETRY_DELAYS = (1,)
    manager = make_member(team, Role.MANAGER)
    receiver.statuses = [500] * 10
    delivery, endpoint, _ = one_delivery(team, receiver, key="k1")
    event_record(EventType.RUN_FAILED, team_id=team.pk, subject="run:2", key="k2", data={})
    [second_id] = services.event_fan_out(key="k2")
    mail.outbox.clear()
    # when both deliveries fail every attempt
    with django_capture_on_commit_callbacks(execute=True):
        for pk in (delivery.pk, second_id):
            while attempt_when_due(WebhookDelivery.objects.get(pk=pk)).status == "pending":
                pass
    # then the endpoint is disabled, and the manager hears about it in the portal and by email
    endpoint.refresh_from_db()
    assert not endpoint.enabled and "failed" in endpoint.disabled_reason
    [told] = Notification.objects.filter(type="endpoint.disabled")
    assert told.user == manager
    assert [m.to for m in mail.outbox] == [[manager.email]]


def test_a_manual_resend_sends_the_same_webhook_id_again(team, receiver, settings):
    settings.NOTIFY_RETRY_DELAYS = (1,)
    receiver.statuses = [500, 500]
    delivery, _, _ = one_delivery(team, receiver)
    while attempt_when_due(delivery).status == "pending":
        pass
    services.delivery_resend(delivery=delivery)
    after = attempt_when_due(delivery)
    assert after.status == "delivered"
    assert {got.headers["webhook-id"] for got in receiver.received} == {delivery.webhook_id}


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://10.1.2.3/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/x",
        "https://localhost/x",
    ],
)
def test_only_public_https_urls_without_the_setting(settings, url):
    settings.NOTIFY_ALLOW_PRIVATE_URLS = False
    with pytest.raises(DestinationRefused):
        url_check(url, resolve=True)


def test_a_name_resolving_to_a_private_address_is_refused(settings, monkeypatch):
    settings.NOTIFY_ALLOW_PRIVATE_URLS = False
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.1.5", 443))],
    )
    with pytest.raises(DestinationRefused, match="resolves to a private"):
        url_check("https://hooks.example.com/x", resolve=True)


def test_an_attempt_connects_to_the_address_it_checked_not_a_second_lookup(
    team, settings, monkeypatch
):
    # given an endpoint whose name resolves to a public address once, then to loopback (DNS
    # rebinding: the check sees one address, a second lookup by the HTTP client another)
    import httpx

    endpoint, _ = services.endpoint_create(
        team=team, user=None, url="https://hooks.example.com:8443/in?x=1", events=["run.failed"]
    )
    settings.NOTIFY_ALLOW_PRIVATE_URLS = False
    answers = iter(["93.184.216.34", "127.0.0.1", "127.0.0.1"])
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), 443))],
    )
    sent = []

    def receiver(request):
        sent.append(request)
        return httpx.Response(204)

    real_client = httpx.Client
    monkeypatch.setattr(
        sending.httpx,
        "Client",
        lambda **kwargs: real_client(transport=httpx.MockTransport(receiver), **kwargs),
    )
    event_record(EventType.RUN_FAILED, team_id=team.pk, subject="run:1", key="k", data={})
    [delivery_id] = services.event_fan_out(key="k")

    # when it is attempted
    after = attempt_when_due(WebhookDelivery.objects.get(pk=delivery_id))

    # then it went to the checked address, with the endpoint's own host for HTTP and TLS
    [request] = sent
    assert str(request.url) == "https://93.184.216.34:8443/in?x=1"
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    assert after.status == "delivered" and endpoint.url == "https://hooks.example.com:8443/in?x=1"


def test_the_pinned_address_is_ipv4_when_the_name_has_both(settings, monkeypatch):
    settings.NOTIFY_ALLOW_PRIVATE_URLS = False
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *a, **k: [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2606:2800:220:1::1", 443, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443)),
        ],
    )
    assert url_check("https://hooks.example.com/x", resolve=True) == "93.184.216.34"


def test_a_private_url_is_refused_when_the_endpoint_is_made(team, settings):
    settings.NOTIFY_ALLOW_PRIVATE_URLS = False
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        services.endpoint_create(
            team=team, user=None, url="http://127.0.0.1:9/x", events=["run.failed"]
        )


def test_the_simulators_demo_receiver_gets_the_demo_teams_deliveries(team):
    # given an endpoint at the simulator's receiver, as seed_demo makes for `make run`
    import httpx

    from runs.simulator.testing import run_simulator

    with run_simulator() as sim:
        services.endpoint_create(
            team=team, user=None, url=sim.base_url + "/_sim/webhook-receiver", events=["run.failed"]
        )
        event_record(EventType.RUN_FAILED, team_id=team.pk, subject="run:1", key="k", data={})
        [delivery_id] = services.event_fan_out(key="k")
        # when it is sent
        after = sending.delivery_attempt(delivery_id=delivery_id)
        # then it arrived, and the receiver lists it with its webhook-id
        assert after.status == "delivered"
        [got] = httpx.get(sim.base_url + "/_sim/webhook-receiver").json()["received"]
        assert got["headers"]["webhook-id"] == after.webhook_id


def test_an_endpoint_deleted_mid_send_does_not_break_the_worker(team, receiver):
    delivery, endpoint, _ = one_delivery(team, receiver)
    attempt = sending.delivery_claim(delivery_id=delivery.pk)
    services.endpoint_delete(endpoint=endpoint)
    after = sending.delivery_attempt_record(
        attempt=attempt, result=sending.AttemptResult(status_code=200), now=timezone.now()
    )
    assert after.pk == delivery.pk
    assert not WebhookDelivery.objects.exists()
