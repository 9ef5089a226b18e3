"""A real django-q2 worker SIGKILLed while a delivery is in flight: nothing is lost, and the
delivery that another worker sends afterwards carries the same webhook-id."""

import threading
import time

import pytest

from portal.notifications import services
from portal.notifications.models import WebhookDelivery
from portal.notifications.tasks import notifications_sweep
from tests.live import Worker, wait_until
from tests.notifications.receiver import Receiver, start_receiver

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_worker_killed_mid_send_loses_no_delivery(team, live_server):
    # given a receiver that holds the first request open, and a worker whose lease is short
    release = threading.Event()
    receiver = Receiver()
    server = start_receiver(receiver)
    original = receiver.next_status

    def slow_first() -> int:
        if len(receiver.received) == 1:
            release.wait(timeout=30)
        return original()

    receiver.next_status = slow_first  # type: ignore[method-assign]
    env = {"NOTIFY_DELIVERY_LEASE_SECONDS": "2", "NOTIFY_ALLOW_PRIVATE_URLS": "true"}
    first = Worker(coasty_base_url="http://127.0.0.1:9", public_url=live_server.url, extra_env=env)
    endpoint, _ = services.endpoint_create(
        team=team, user=None, url=receiver.url, events=["run.failed"]
    )
    try:
        first.start()
        # when a delivery is in flight (the test-send is queued on commit) and the worker dies
        delivery = services.endpoint_test_send(endpoint=endpoint)
        wait_until(lambda: len(receiver.received) == 1, timeout=60, what="the first attempt")
        first.kill()
        release.set()
        # then the delivery is still pending, its attempt without an answer
        delivery.refresh_from_db()
        assert delivery.status == "pending" and delivery.attempts == 1
        assert delivery.attempt_log.get().finished_at is None
        # and once the dead worker's lease has run out, the sweep hands it to a new worker
        time.sleep(2.5)
        second = Worker(
            coasty_base_url="http://127.0.0.1:9", public_url=live_server.url, extra_env=env
        ).start()
        try:
            notifications_sweep()
            wait_until(
                lambda: WebhookDelivery.objects.get(pk=delivery.pk).status == "delivered",
                timeout=60,
                what="the re-send",
            )
        finally:
            second.stop()
    finally:
        release.set()
        first.stop()
        server.shutdown()
    ids = [got.headers["webhook-id"] for got in receiver.received]
    assert ids == [delivery.webhook_id, delivery.webhook_id]
    assert len({got.body for got in receiver.received}) == 1
