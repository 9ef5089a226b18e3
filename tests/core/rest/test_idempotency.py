"""Idempotency-Key on the two creating POSTs: replay, reuse, in flight, malformed keys, expiry
and purge, per-user keys, a crashed first attempt, and many concurrent requests with one key."""

import datetime as dt
import threading
import time

import pytest
from django.db import connections
from django.utils import timezone

from billing.models import Hold, Transfer
from portal.core.models import IdempotentRequest
from portal.core.rest.idempotency import (
    body_fingerprint,
    derived_key,
    idempotency_purge_expired,
    launch_token_for,
)
from portal.teams.models import Role
from runs import services as run_services
from runs.models import Run
from tests.api_world import LAUNCH_BODY
from tests.factories import top_up as fund

RUNS_URL = "/api/v1/teams/research/runs/"
TOP_UP_URL = "/api/v1/teams/research/topups/"


@pytest.fixture
def funded(team):
    fund(team, 5000)
    return team


@pytest.fixture
def member(funded, make_member):
    return make_member(funded, Role.MEMBER, username="bob")


def post(client, url, body, key):
    return client.post(url, body, HTTP_IDEMPOTENCY_KEY=key) if key else client.post(url, body)


@pytest.mark.django_db
def test_same_key_same_body_replays_the_first_response(member, api_client_for):
    client = api_client_for(member)

    # when the same launch is sent twice with one key (the second with its keys reordered)
    first = post(client, RUNS_URL, LAUNCH_BODY, "launch-1")
    second = post(client, RUNS_URL, dict(reversed(LAUNCH_BODY.items())), "launch-1")

    # then one run exists, and the second answer is the first one, marked as a replay
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert second["Location"] == first["Location"] == f"/api/v1/runs/{first.json()['id']}/"
    assert Run.objects.count() == 1
    assert Hold.objects.count() == 1


@pytest.mark.django_db
def test_same_key_other_body_is_422_and_changes_nothing(member, api_client_for):
    client = api_client_for(member)
    post(client, RUNS_URL, LAUNCH_BODY, "launch-1")

    response = post(client, RUNS_URL, {**LAUNCH_BODY, "max_steps": 11}, "launch-1")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert Run.objects.count() == 1


@pytest.mark.django_db
def test_same_key_on_another_endpoint_is_422(member, billing_admin, api_client_for):
    # given a billing admin who is also a member, and a launch made with key K
    from portal.teams.models import Membership

    Membership.objects.create(team=member.memberships.get().team, user=billing_admin, role="member")
    client = api_client_for(billing_admin)
    assert post(client, RUNS_URL, LAUNCH_BODY, "K").status_code == 201

    # when the same key comes with a top-up
    response = post(client, TOP_UP_URL, {"amount_cents": 100, "reference": "INV-9"}, "K")

    # then it is refused: the key belongs to the launch
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"


@pytest.mark.django_db
def test_a_request_while_the_first_is_in_flight_gets_409(member, api_client_for, monkeypatch):
    # given a launch that, while it is being carried out, sees a retry with the same key
    client = api_client_for(member)
    retry_answers = []
    real_launch = run_services.run_launch

    def launch_with_a_retry_meanwhile(**kwargs):
        retry_answers.append(post(api_client_for(member), RUNS_URL, LAUNCH_BODY, "launch-1"))
        return real_launch(**kwargs)

    monkeypatch.setattr(run_services, "run_launch", launch_with_a_retry_meanwhile)

    # when the first request runs
    first = post(client, RUNS_URL, LAUNCH_BODY, "launch-1")

    # then the retry was told to come back, and only the first one launched
    (retry,) = retry_answers
    assert retry.status_code == 409
    assert retry.json()["error"]["code"] == "IDEMPOTENCY_IN_FLIGHT"
    assert retry["Retry-After"] == "1"
    assert first.status_code == 201
    assert Run.objects.count() == 1
    # and once it is done the same retry gets the stored answer
    again = post(client, RUNS_URL, LAUNCH_BODY, "launch-1")
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "key", ["", "x" * 129, "has space", "slash/es", "ümlaut", "semi;colon", "dot.ted"]
)
def test_malformed_key_is_400_and_creates_nothing(key, member, api_client_for):
    response = api_client_for(member).post(RUNS_URL, LAUNCH_BODY, HTTP_IDEMPOTENCY_KEY=key)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert list(error["fields"]) == ["Idempotency-Key"]
    assert Run.objects.count() == 0
    assert IdempotentRequest.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["a", "x" * 128, "Az09_-:", "2026-11-28:launch:7"])
def test_well_formed_keys_are_accepted(key, member, api_client_for):
    assert post(api_client_for(member), RUNS_URL, LAUNCH_BODY, key).status_code == 201


@pytest.mark.django_db
def test_keys_are_per_user(funded, make_member, api_client_for):
    # given two members of one team
    bob = make_member(funded, Role.MEMBER, username="bob")
    alice = make_member(funded, Role.MANAGER, username="alice")

    # when both launch the same body with the same key
    responses = [post(api_client_for(u), RUNS_URL, LAUNCH_BODY, "nightly") for u in (bob, alice)]

    # then each got their own run
    assert [r.status_code for r in responses] == [201, 201]
    assert not any(r.has_header("Idempotent-Replayed") for r in responses)
    assert len({r.json()["id"] for r in responses}) == 2
    assert {r.json()["created_by"] for r in responses} == {"bob", "alice"}


@pytest.mark.django_db
def test_two_tokens_of_one_person_share_keys(member, api_client_for):
    first = post(api_client_for(member), RUNS_URL, LAUNCH_BODY, "k1")
    second = post(api_client_for(member), RUNS_URL, LAUNCH_BODY, "k1")

    assert second["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]


@pytest.mark.django_db
def test_without_a_key_every_request_launches(member, api_client_for):
    client = api_client_for(member)

    ids = {post(client, RUNS_URL, LAUNCH_BODY, None).json()["id"] for _ in range(2)}

    assert len(ids) == 2
    assert IdempotentRequest.objects.count() == 0


@pytest.mark.django_db
def test_a_refusal_is_not_stored_so_the_key_can_be_retried(team, make_member, api_client_for):
    # given an empty wallet
    bob = make_member(team, Role.MEMBER, username="bob")
    client = api_client_for(bob)

    # when a launch is refused for lack of funds, the wallet is topped up, and it is retried
    refused = post(client, RUNS_URL, LAUNCH_BODY, "launch-1")
    fund(team, 5000)
    retried = post(client, RUNS_URL, LAUNCH_BODY, "launch-1")

    # then the retry launched the run
    assert refused.status_code == 402
    assert retried.status_code == 201
    assert not retried.has_header("Idempotent-Replayed")
    # and an invalid body then a valid one with one key also works
    invalid = post(client, RUNS_URL, {**LAUNCH_BODY, "max_steps": 0}, "launch-2")
    valid = post(client, RUNS_URL, LAUNCH_BODY, "launch-2")
    assert (invalid.status_code, valid.status_code) == (400, 201)


@pytest.mark.django_db
def test_expired_keys_are_forgotten_and_purged(member, api_client_for, settings):
    client = api_client_for(member)
    first = post(client, RUNS_URL, LAUNCH_BODY, "old-key")
    post(client, RUNS_URL, LAUNCH_BODY, "fresh-key")

    # when the first key's 24 h have passed
    IdempotentRequest.objects.filter(key="old-key").update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )

    # then the key may start a new request (another body is not a reuse any more)
    again = post(client, RUNS_URL, {**LAUNCH_BODY, "max_steps": 12}, "old-key")
    assert again.status_code == 201
    assert again.json()["id"] != first.json()["id"]
    # and the purge deletes expired keys only
    IdempotentRequest.objects.filter(key="old-key").update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert idempotency_purge_expired() == 1
    assert list(IdempotentRequest.objects.values_list("key", flat=True)) == ["fresh-key"]


def _expire(key, *, purge):
    """The key's 24 h pass; with `purge` the purge job has run, else the row is still there."""
    IdempotentRequest.objects.filter(key=key).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    if purge:
        assert idempotency_purge_expired() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("purge", [True, False], ids=["purged", "not-yet-purged"])
def test_same_body_after_expiry_launches_a_second_run(purge, member, api_client_for):
    # given a launch whose key has expired
    client = api_client_for(member)
    first = post(client, RUNS_URL, LAUNCH_BODY, "nightly")
    _expire("nightly", purge=purge)

    # when the very same request comes again (a script that reuses its key every day)
    again = post(client, RUNS_URL, LAUNCH_BODY, "nightly")

    # then it is a new request: a second run, not the first one passed off as new
    assert again.status_code == 201
    assert not again.has_header("Idempotent-Replayed")
    assert again.json()["id"] != first.json()["id"]
    assert Run.objects.count() == 2
    assert Hold.objects.count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("purge", [True, False], ids=["purged", "not-yet-purged"])
def test_same_top_up_after_expiry_adds_the_money_again(purge, team, billing_admin, api_client_for):
    # given a top-up made with a key that has since expired
    client = api_client_for(billing_admin)
    body = {"amount_cents": 2500, "reference": "monthly"}
    first = post(client, TOP_UP_URL, body, "monthly-top-up")
    _expire("monthly-top-up", purge=purge)

    # when the recurring script sends the same key and body again
    again = post(client, TOP_UP_URL, body, "monthly-top-up")

    # then a second top-up is made and the wallet holds both
    assert again.status_code == 201
    assert not again.has_header("Idempotent-Replayed")
    assert again.json()["id"] != first.json()["id"]
    assert Transfer.objects.filter(kind="top_up").count() == 2
    assert client.get("/api/v1/teams/research/wallet/").json()["available_cents"] == 5000


@pytest.mark.django_db
def test_purge_job_is_scheduled_once():
    from django.core.management.sql import emit_post_migrate_signal
    from django_q.models import Schedule

    from portal.core.tasks import purge_idempotency_keys

    # when migrate finishes twice more (the test database was migrated once already)
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")

    # then there is one purge job, and it runs
    schedule = Schedule.objects.get(name="api: purge expired idempotency keys")
    assert schedule.func == "portal.core.tasks.purge_idempotency_keys"
    assert purge_idempotency_keys() == "Purged 0 expired idempotency key(s)."


@pytest.mark.django_db
def test_a_crashed_first_attempt_is_taken_over_after_its_lease(member, funded, api_client_for):
    # given a first attempt that reserved the key, created the run, then died before answering
    now = timezone.now()
    reservation = IdempotentRequest.objects.create(
        user=member,
        key="k",
        method="POST",
        path=RUNS_URL,
        fingerprint=body_fingerprint(method="POST", path=RUNS_URL, data=LAUNCH_BODY),
        holder="00000000-0000-0000-0000-000000000001",
        lease_until=now + dt.timedelta(seconds=20),
        expires_at=now + dt.timedelta(hours=24),
    )
    crashed_run, _ = run_services.run_launch(
        team=funded,
        user=member,
        request=run_services.LaunchRequest(**LAUNCH_BODY),
        launch_token=launch_token_for(derived_key(reservation)),
    )
    client = api_client_for(member)

    # when a retry comes within the lease, then after it
    within = post(client, RUNS_URL, LAUNCH_BODY, "k")
    IdempotentRequest.objects.update(lease_until=now - dt.timedelta(seconds=1))
    after = post(client, RUNS_URL, LAUNCH_BODY, "k")

    # then the first is told to wait; the second takes over and finds the run, not a new one
    assert within.status_code == 409
    assert after.status_code == 201
    assert after.json()["id"] == str(crashed_run.pk)
    assert Run.objects.count() == 1
    assert Hold.objects.count() == 1
    assert IdempotentRequest.objects.get().completed_at is not None


@pytest.mark.django_db
def test_top_up_replay_adds_the_money_once(team, billing_admin, api_client_for):
    client = api_client_for(billing_admin)
    body = {"amount_cents": 2500, "reference": "INV-7"}

    first = post(client, TOP_UP_URL, body, "topup-7")
    second = post(client, TOP_UP_URL, body, "topup-7")

    assert [r.status_code for r in (first, second)] == [201, 201]
    assert second["Idempotent-Replayed"] == "true"
    assert first.json() == second.json()
    assert Transfer.objects.filter(kind="top_up").count() == 1
    assert client.get("/api/v1/teams/research/wallet/").json()["available_cents"] == 2500


@pytest.mark.django_db
def test_a_failure_after_the_top_up_committed_is_retried_without_a_second_one(
    team, billing_admin, api_client_for, monkeypatch
):
    # given a top-up that commits, then fails before answering (say, a task queue that is down)
    from billing import services as billing_services

    real_top_up = billing_services.wallet_top_up

    def top_up_then_fail(**kwargs):
        real_top_up(**kwargs)
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(billing_services, "wallet_top_up", top_up_then_fail)
    client = api_client_for(billing_admin)
    body = {"amount_cents": 2500, "reference": "INV-8"}
    failed = post(client, TOP_UP_URL, body, "topup-8")
    monkeypatch.undo()

    # when the client retries at once with the same key and body
    retried = post(client, TOP_UP_URL, body, "topup-8")

    # then the retry takes the reservation over and finds that top-up instead of adding another
    assert failed.status_code == 500
    assert retried.status_code == 201
    assert Transfer.objects.filter(kind="top_up").count() == 1
    assert client.get("/api/v1/teams/research/wallet/").json()["available_cents"] == 2500
    assert IdempotentRequest.objects.get().completed_at is not None


# --- Concurrency ------------------------------------------------------------------------------


def _launch_concurrently(member, token, *, threads: int, key: str, slow_launch: float = 0.0):
    """`threads` requests with one key, released together; returns their responses."""
    from rest_framework.test import APIClient

    barrier = threading.Barrier(threads)
    responses = [None] * threads
    errors = []

    def one(i):
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
            barrier.wait(timeout=10)
            responses[i] = client.post(RUNS_URL, LAUNCH_BODY, HTTP_IDEMPOTENCY_KEY=key)
        except Exception as exc:  # reported below, with the thread's number
            errors.append((i, exc))
        finally:
            connections.close_all()

    workers = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not errors, errors
    return responses


def _assert_exactly_one_launch(responses):
    executed = [
        r for r in responses if r.status_code == 201 and not r.has_header("Idempotent-Replayed")
    ]
    replayed = [r for r in responses if r.has_header("Idempotent-Replayed")]
    in_flight = [r for r in responses if r.status_code == 409]
    assert len(executed) == 1, [(r.status_code, r.content[:200]) for r in responses]
    assert len(executed) + len(replayed) + len(in_flight) == len(responses)
    assert all(r.json()["error"]["code"] == "IDEMPOTENCY_IN_FLIGHT" for r in in_flight)
    assert all(r.json() == executed[0].json() for r in replayed)
    return executed[0].json()["id"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_launch_once(
    team, make_member, api_token_for, monkeypatch
):
    # given a funded team, a member's token, and a launch slow enough for the others to see it
    fund(team, 5000)
    bob = make_member(team, Role.MEMBER, username="bob")
    token = api_token_for(bob)
    real_launch = run_services.run_launch

    def slow_launch(**kwargs):
        time.sleep(0.3)
        return real_launch(**kwargs)

    monkeypatch.setattr(run_services, "run_launch", slow_launch)

    # when eight requests with one key arrive together
    responses = _launch_concurrently(bob, token, threads=8, key="together")

    # then exactly one run was created and one hold placed; the others were told so
    run_id = _assert_exactly_one_launch(responses)
    assert str(Run.objects.get().pk) == run_id
    assert Hold.objects.count() == 1
    assert any(r.status_code == 409 for r in responses)


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_launch_once_postgres(
    requires_postgres, team, make_member, api_token_for, settings
):
    # given a funded team and a member's token (no slowing down: a bare race on PostgreSQL)
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_read": "1000/min", "api_write": "1000/min"},
    }
    fund(team, 50_000)
    bob = make_member(team, Role.MEMBER, username="bob")
    token = api_token_for(bob)

    # when sixteen requests race with one key, five times over with five keys
    for round_number in range(5):
        responses = _launch_concurrently(bob, token, threads=16, key=f"race-{round_number}")

        # then each key launched exactly once
        _assert_exactly_one_launch(responses)
    assert Run.objects.count() == 5
    assert Hold.objects.count() == 5
    assert IdempotentRequest.objects.filter(completed_at__isnull=False).count() == 5
