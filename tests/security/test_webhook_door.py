"""Attacks on the public webhook URL (issue 13, case 1): it is not a free disk, not a lock
anyone can take, not a log anyone can write, and it does not say which runs exist."""

import json
import logging
import time
import uuid

import pytest
from django.core.cache import cache
from django.urls import reverse

from runs import sql
from runs.coasty import signature_header
from runs.models import Run, RunStatus, WebhookDelivery, WebhookRefusalCount
from tests.factories import UserFactory
from tests.security.support import accepted_run

pytestmark = pytest.mark.django_db

SECRET = "whsec_security_secret_1"
FORGED_SIZE = 256 * 1024 - 64  # just under the intake's cap, so each one is read and verified


@pytest.fixture
def run(team, make_member):
    return accepted_run(team, make_member(team), secret=SECRET)


def forged_body() -> bytes:
    filler = "x" * (FORGED_SIZE - 100)
    return json.dumps({"event": "run.succeeded", "status": "succeeded", "pad": filler}).encode()


def post(client, run_id, body: bytes, *, signed_with="whsec_not_the_secret", address="203.0.113.9"):
    return client.post(
        reverse("coasty_webhook", args=[run_id]),
        data=body,
        content_type="application/json",
        headers={"Coasty-Signature": signature_header(signed_with, int(time.time()), body)},
        REMOTE_ADDR=address,
    )


def webhook_bytes_stored() -> int:
    """What the intake has written: every stored delivery's body, headers and result, plus the
    counter rows (a generous 64 bytes each)."""
    total = 0
    for delivery in WebhookDelivery.objects.all():
        total += len(bytes(delivery.body)) + len(json.dumps(delivery.headers))
        total += len(delivery.result) + len(delivery.body_sha256) + len(delivery.event)
    return total + 64 * WebhookRefusalCount.objects.count()


@pytest.mark.parametrize("rate_limited", [True, False], ids=["rate-limited", "no-rate-limit"])
def test_forty_forged_256kb_posts_store_a_few_kilobytes(client, run, settings, rate_limited):
    # given a known run, and (or not) the default refusal rate limits
    if not rate_limited:
        settings.WEBHOOK_REFUSALS_PER_RUN_PER_MINUTE = 10_000
        settings.WEBHOOK_REFUSALS_PER_ADDRESS_PER_MINUTE = 10_000
    before = webhook_bytes_stored()
    body = forged_body()
    # when an attacker posts 40 forged deliveries of 256 KB each (10 MB in all)
    statuses = [post(client, run.pk, body).status_code for _ in range(40)]
    # then every one is refused, the run is untouched, and only a few KB were stored
    stored = webhook_bytes_stored() - before
    print(f"40 forged 256 KB posts ({40 * len(body):,} bytes) stored {stored:,} bytes")
    assert set(statuses) <= {401, 429}
    assert stored < 16 * 1024
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    counts = dict(WebhookRefusalCount.objects.filter(run=run).values_list("verdict", "count"))
    if rate_limited:
        limit = settings.WEBHOOK_REFUSALS_PER_RUN_PER_MINUTE
        assert statuses.count(401) == limit and statuses.count(429) == 40 - limit
        assert counts["bad_signature"] == limit
        assert 16 <= counts["throttled"] <= 40 - limit  # kept within a factor of two
    else:
        assert statuses == [401] * 40
        assert counts == {"bad_signature": 40}
        # every refusal is counted, with the bytes it carried, while only a few are samples
        assert WebhookRefusalCount.objects.get(run=run).bytes_refused == 40 * len(body)
    samples = WebhookDelivery.objects.filter(run=run)
    assert 1 <= samples.count() <= 8
    for sample in samples:
        assert sample.body_size == len(body) and len(bytes(sample.body)) <= 256
        assert sample.client_address == "203.0.113.9"


def test_refusals_are_not_logged_at_warning_per_request(client, run, caplog):
    # when 40 forged deliveries arrive
    with caplog.at_level(logging.INFO):
        for _ in range(40):
            post(client, run.pk, b'{"forged": true}')
    # then at most one WARNING says the run is being rate limited; no line per request
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 1
    assert all("rate limited" in r.getMessage() for r in warnings)


def test_a_forged_delivery_takes_no_lock_and_writes_nothing_to_the_run(client, run, monkeypatch):
    # given the run lock may not be taken
    def no_lock(run_id):
        raise AssertionError("a forged delivery locked the run")

    monkeypatch.setattr(sql, "run_locked_for_webhook", no_lock)
    # when a forged delivery arrives, then it is refused without ever locking the run
    assert post(client, run.pk, b'{"forged": true}').status_code == 401


def test_the_rate_limit_is_per_client_address(client, settings):
    # given one address probing run ids that do not exist
    limit = settings.WEBHOOK_REFUSALS_PER_ADDRESS_PER_MINUTE
    statuses = [post(client, uuid.uuid4(), b"{}").status_code for _ in range(limit + 5)]
    # then it is answered 404 up to its budget, then 429 (unread), with Retry-After
    assert statuses == [404] * limit + [429] * 5
    throttled = post(client, uuid.uuid4(), b"{}")
    assert throttled.status_code == 429 and int(throttled["Retry-After"]) > 0
    # while another address is not affected
    assert post(client, uuid.uuid4(), b"{}", address="198.51.100.7").status_code == 404


def test_the_rate_limit_is_per_run_across_addresses(client, run, settings):
    # given forgeries for one run from many addresses
    limit = settings.WEBHOOK_REFUSALS_PER_RUN_PER_MINUTE
    statuses = [
        post(client, run.pk, b"{}", address=f"198.51.100.{n}").status_code
        for n in range(1, limit + 4)
    ]
    # then the run's budget runs out whatever the address
    assert statuses == [401] * limit + [429] * 3


def test_coasty_signed_deliveries_do_not_use_the_budget(client, run, settings):
    # given Coasty delivering many signed bodies from one address
    settings.WEBHOOK_REFUSALS_PER_ADDRESS_PER_MINUTE = 3
    for n in range(6):
        body = json.dumps(
            {
                "event": "run.awaiting_human",
                "run_id": run.upstream_id,
                "status": "awaiting_human",
                "awaiting_human_reason": f"captcha {n}",
                "created_at": f"2026-11-28T10:00:0{n}Z",
            }
        ).encode()
        # then none is throttled: only refusals count against an address
        assert post(client, run.pk, body, signed_with=SECRET).status_code == 200


def test_a_run_without_a_secret_is_indistinguishable_from_an_unknown_run(client, run):
    # given a run launched without webhooks (it never gets a secret)
    Run.objects.filter(pk=run.pk).update(webhook_secret_encrypted="")
    # when probed, and an id that does not exist is probed the same way
    secretless = post(client, run.pk, forged_body())
    unknown = post(client, uuid.uuid4(), forged_body())
    # then the answers are the same, and nothing is stored or counted
    assert secretless.status_code == unknown.status_code == 404
    assert secretless.json() == unknown.json()
    assert not WebhookDelivery.objects.exists() and not WebhookRefusalCount.objects.exists()


def test_an_oversized_body_is_refused_unread_and_counted(client, run):
    # when a body over the intake's cap arrives
    response = post(client, run.pk, b"{" + b" " * (300 * 1024) + b"}")
    # then it is refused, counted with its size, and sampled without its bytes
    assert response.status_code == 413
    count = WebhookRefusalCount.objects.get(run=run, verdict="malformed")
    assert count.count == 1 and count.bytes_refused > 300 * 1024
    assert bytes(WebhookDelivery.objects.get(run=run).body) == b""


def test_the_admin_shows_the_refusal_counters(client, run):
    # given refused deliveries for a run
    for _ in range(3):
        post(client, run.pk, b'{"forged": true}')
    # when an operator opens the counters and the run in the admin
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    listing = client.get(reverse("admin:runs_webhookrefusalcount_changelist")).content.decode()
    page = client.get(reverse("admin:runs_run_change", args=[run.pk])).content.decode()
    # then both show the run's count of bad signatures
    assert "bad_signature" in listing or "Refused: bad signature" in listing
    assert "Refused: bad signature" in page
    assert WebhookRefusalCount.objects.get(run=run).count == 3


def test_a_stored_secret_still_verifies_after_the_flood(client, run):
    # given a flood of forgeries was throttled
    for _ in range(40):
        post(client, run.pk, b"{}")
    # when the rate-limit window has moved on (a new minute: the cache's counts are gone)
    cache.clear()
    body = json.dumps(
        {"event": "run.succeeded", "run_id": run.upstream_id, "status": "succeeded"}
    ).encode()
    assert post(client, run.pk, body, signed_with=SECRET).status_code == 200
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED


def test_behind_the_proxy_the_limit_is_per_forwarded_address(client, settings):
    # given the portal behind its TLS proxy: every request comes from the proxy's address
    settings.BEHIND_TLS_PROXY = True
    limit = settings.WEBHOOK_REFUSALS_PER_ADDRESS_PER_MINUTE

    def probe(forwarded):
        return client.post(
            reverse("coasty_webhook", args=[uuid.uuid4()]),
            data=b"{}",
            content_type="application/json",
            REMOTE_ADDR="10.0.0.2",
            # a client may send its own X-Forwarded-For; the proxy appends the real address
            HTTP_X_FORWARDED_FOR=f"1.2.3.4, {forwarded}",
        ).status_code

    # when one client exhausts its budget
    statuses = [probe("203.0.113.50") for _ in range(limit + 1)]
    # then it alone is throttled, not everyone behind the proxy
    assert statuses[-1] == 429 and statuses[:-1] == [404] * limit
    assert probe("198.51.100.60") == 404


def test_a_replayed_genuine_delivery_stores_its_body_once(client, run):
    # given a genuine delivery captured by someone, with 2 KB of result text
    body = json.dumps(
        {
            "event": "run.succeeded",
            "run_id": run.upstream_id,
            "status": "succeeded",
            "result": {"text": "r" * 2048},
        }
    ).encode()
    before = webhook_bytes_stored()
    # when it is replayed 20 times within the signature's five minutes
    statuses = {post(client, run.pk, body, signed_with=SECRET).status_code for _ in range(21)}
    # then it was applied once, and its bytes are stored once (duplicates keep hash and size)
    assert statuses == {200}
    stored = webhook_bytes_stored() - before
    assert len(body) < stored < len(body) + 21 * 400
    duplicates = WebhookDelivery.objects.filter(run=run, verdict="duplicate")
    assert duplicates.count() == 20
    assert all(bytes(d.body) == b"" and d.body_size == len(body) for d in duplicates)
