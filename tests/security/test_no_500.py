"""Inputs that used to answer 500 (issue 13, case 5): bodies over Django's upload limit, numbers
past Python's digit limit or a bigint, and a 404 that told "not yours" from "does not exist"."""

import re
import uuid

import pytest
from django.conf import settings
from django.urls import reverse

from tests.api_world import RUNS_URL, schedule_and_endpoint

pytestmark = pytest.mark.django_db

HUGE = "9" * 5000  # past Python's int-from-string digit limit (4300)
BIG = str(2**64)  # fits Python, not a database bigint


def same_page(response) -> bytes:
    """The page with what differs on every request anyway (CSRF tokens, CSP nonces) blanked."""
    return re.sub(rb'(csrfmiddlewaretoken" value|nonce)="[^"]*"', rb'\1=""', response.content)


def too_big_body() -> bytes:
    return b'{"task": "' + b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10) + b'"}'


def test_an_api_body_over_the_upload_limit_is_413_in_the_envelope(world, bob):
    # when a JSON body over DATA_UPLOAD_MAX_MEMORY_SIZE is posted to the launch endpoint
    response = bob.post(RUNS_URL, data=too_big_body(), content_type="application/json")
    # then it is refused as too large, in the API's envelope, and nothing was launched
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert world.team.runs.count() == 1  # the world's own run only


def test_an_api_body_over_the_limit_without_a_token_is_still_413_not_500(world, api_client_for):
    response = api_client_for(None).post(
        RUNS_URL, data=too_big_body(), content_type="application/json"
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_a_form_body_over_the_limit_is_a_plain_413_page(world, client_for):
    # when a page's form is posted with a field over the limit
    client = client_for(world.member)
    response = client.post(
        reverse("run_launch", args=["research"]),
        data={"machine_id": "vm", "task": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)},
    )
    # then a plain 413 page answers, not a 500 (nor the API's JSON)
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/html")
    assert b"too large" in response.content.lower()


@pytest.mark.parametrize(
    "url",
    [
        "/teams/research/wallet/?before={n}",
        "/teams/research/wallet/?after={n}",
        "/teams/research/wallet/ledger.csv?before={n}",
        "/teams/research/runs/?before={n}",
        "/teams/research/runs/?after={n}",
        "/teams/research/runs/?creator={n}",
        "/runs/{run}/?before={n}",
        "/runs/{run}/live/?after={n}",
        "/teams/?team={n}",
    ],
)
@pytest.mark.parametrize(
    "n", [HUGE, BIG, "-" + BIG, "1e309", "٣"], ids=["huge", "big", "neg", "exp", "arabic-digit"]
)
def test_numeric_query_parameters_on_pages_are_bounded(world, client_for, url, n):
    # when a page is asked for with a number no database or int() could take
    response = client_for(world.member).get(url.format(n=n, run=world.run.pk))
    # then it answers (the page, or a clear 400), never a 500
    assert response.status_code in (200, 400), response.status_code


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/runs/{run}/events/?after={n}",
        "/api/v1/teams/research/runs/?cursor={n}",
        "/api/v1/teams/research/ledger/?cursor={n}",
        "/api/v1/teams/research/runs/?status={n}",
    ],
)
@pytest.mark.parametrize("n", [HUGE, BIG, "-" + BIG], ids=["huge", "big", "neg"])
def test_numeric_query_parameters_in_the_api_are_bounded(world, bob, url, n):
    response = bob.get(url.format(n=n, run=world.run.pk))
    assert response.status_code in (200, 400), response.status_code
    if response.status_code == 400:
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_another_teams_run_answers_exactly_like_an_unknown_run_in_the_api(world, api_client_for):
    # given a run of another team, and an id that is no run at all
    outsider = api_client_for(world.outsider)
    for suffix in ("", "events/", "cancel/", "resume/"):
        method = outsider.post if suffix in ("cancel/", "resume/") else outsider.get
        theirs = method(f"/api/v1/runs/{world.run.pk}/{suffix}")
        unknown = method(f"/api/v1/runs/{uuid.uuid4()}/{suffix}")
        # then both answer the same 404 envelope, word for word
        assert theirs.status_code == unknown.status_code == 404, suffix
        assert theirs.json() == unknown.json(), suffix


def test_another_teams_run_answers_exactly_like_an_unknown_run_on_pages(world, client_for):
    client = client_for(world.outsider)
    for name in ("run_detail", "run_live", "run_cancel", "run_resume"):
        method = client.post if name in ("run_cancel", "run_resume") else client.get
        theirs = method(reverse(name, args=[world.run.pk]))
        unknown = method(reverse(name, args=[uuid.uuid4()]))
        assert theirs.status_code == unknown.status_code == 404, name
        assert same_page(theirs) == same_page(unknown), name


def test_another_teams_pages_answer_exactly_like_an_unknown_team(world, client_for):
    client = client_for(world.outsider)  # a manager of ops, not of research
    for url in (
        "/teams/{slug}/",
        "/teams/{slug}/runs/",
        "/teams/{slug}/runs/new/",
        "/teams/{slug}/wallet/",
        "/teams/{slug}/wallet/ledger.csv",
        "/teams/{slug}/members/",
    ):
        theirs = client.get(url.format(slug="research"))
        unknown = client.get(url.format(slug="no-such-team"))
        assert theirs.status_code == unknown.status_code == 404, url
        assert same_page(theirs) == same_page(unknown), url


def test_a_throttled_api_request_is_429_throttled_in_the_envelope(world, bob, settings):
    # given a read budget of two a minute
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_read": "2/min", "api_write": "2/min"},
    }
    from rest_framework.settings import api_settings

    api_settings.reload()
    try:
        # when a third read is made within the minute
        statuses = [bob.get("/api/v1/teams/").status_code for _ in range(3)]
        response = bob.get("/api/v1/teams/")
    finally:
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK}
        api_settings.reload()
    # then it is refused with THROTTLED and told when to come back
    assert statuses[:2] == [200, 200] and response.status_code == 429
    assert response.json()["error"]["code"] == "THROTTLED"
    assert int(response["Retry-After"]) >= 1


def test_launching_a_run_is_still_fine(world, bob):
    # the 413 guard does not get in the way of an ordinary body
    response = bob.post(
        RUNS_URL, data={"machine_id": "vm-linux-1", "task": "ok", "max_steps": 2}, format="json"
    )
    assert response.status_code == 201, response.content


def test_another_teams_endpoints_answer_exactly_like_an_unknown_team(world, bob):
    for suffix in ("runs/", "wallet/", "ledger/"):
        theirs = bob.get(f"/api/v1/teams/ops/{suffix}")
        unknown = bob.get(f"/api/v1/teams/no-such-team/{suffix}")
        assert theirs.status_code == unknown.status_code == 404, suffix
        assert theirs.json() == unknown.json(), suffix
    theirs = bob.post("/api/v1/teams/ops/runs/", data={"task": "t"}, format="json")
    unknown = bob.post("/api/v1/teams/no-such-team/runs/", data={"task": "t"}, format="json")
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json() == unknown.json()


def test_another_teams_membership_answers_like_an_unknown_one(world, client_for):
    # given a manager of research, and a membership of ops
    ops_membership = world.other_team.memberships.get()
    client = client_for(world.manager)
    for action, data in (("role", {"role": "viewer"}), ("remove", {})):
        theirs = client.post(f"/teams/research/members/{ops_membership.pk}/{action}/", data)
        unknown = client.post(f"/teams/research/members/987654321/{action}/", data)
        assert theirs.status_code == unknown.status_code == 404, action
        assert same_page(theirs) == same_page(unknown), action
    ops_membership.refresh_from_db()
    assert ops_membership.role == "manager"


def test_another_teams_schedules_and_endpoints_answer_like_unknown_ones(world, api_client_for):
    # given a schedule and a webhook endpoint of ops, and ids that are neither
    schedule, endpoint = schedule_and_endpoint(
        world.other_team, owner=world.outsider, manager=world.outsider
    )
    manager = api_client_for(world.manager)  # a manager of research, not of ops
    unknown_schedule, unknown_endpoint = uuid.uuid4(), 987654321
    for method, path in (
        ("get", "/api/v1/schedules/{s}/"),
        ("get", "/api/v1/schedules/{s}/launches/"),
        ("get", "/api/v1/webhook-endpoints/{e}/deliveries/"),
        ("post", "/api/v1/webhook-endpoints/{e}/test/"),
        ("delete", "/api/v1/webhook-endpoints/{e}/"),
    ):
        call = getattr(manager, method)
        theirs = call(path.format(s=schedule.pk, e=endpoint.pk))
        unknown = call(path.format(s=unknown_schedule, e=unknown_endpoint))
        # then both answer the same 404 envelope, word for word
        assert theirs.status_code == unknown.status_code == 404, path
        assert theirs.json() == unknown.json(), path
    # and nothing of ops's changed
    endpoint.refresh_from_db()
    assert endpoint.enabled and not endpoint.deliveries.exists()
