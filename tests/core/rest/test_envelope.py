"""The error envelope under /api/ for what can go wrong outside one endpoint's own validation
(unknown URLs, wrong methods, any Accept header, throttling, refusals, crashes): JSON always,
never a traceback."""

import json
import logging

import pytest
from django.test import RequestFactory

from portal.core.rest.errors import server_error
from tests.api_world import LAUNCH_BODY, RUNS_URL, error_of

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nothing/",
        "/api/v2/teams/",
        "/api/v1/teams",
        "/api/v1/runs/not-a-uuid/",
        "/api/v1/runs/12345678-1234-1234-1234-1234567890ab/nope/",
        "/api/v1/teams/has%20space/runs/",
        "/api/",
    ],
)
def test_unknown_api_urls_are_404_envelopes(path, bob, api_client_for):
    for client in (bob, api_client_for(None)):
        error = error_of(client.get(path), 404)
        assert error["code"] == "NOT_FOUND"
    assert error_of(bob.post(path, {}), 404)["code"] == "NOT_FOUND"


def test_wrong_method_is_405(bob):
    response = bob.delete("/api/v1/teams/")

    assert error_of(response, 405)["code"] == "METHOD_NOT_ALLOWED"
    assert "GET" in response["Allow"]
    assert error_of(bob.put(RUNS_URL, {}), 405)["code"] == "METHOD_NOT_ALLOWED"


def test_json_whatever_the_accept_header(bob):
    response = bob.get("/api/v1/teams/", HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"


def test_a_crash_is_500_with_a_request_id_and_no_traceback(bob, monkeypatch, caplog):
    import portal.site.apis

    def boom(*args, **kwargs):
        raise RuntimeError("secret detail from deep inside")

    monkeypatch.setattr(portal.site.apis, "memberships_for_user", boom)

    with caplog.at_level(logging.ERROR, logger="portal.api"):
        response = bob.get("/api/v1/teams/")

    error = error_of(response, 500)
    assert error["code"] == "INTERNAL_ERROR"
    assert error["request_id"].startswith("req_")
    assert error["request_id"] in error["message"]
    assert "secret detail" not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    assert error["request_id"] in caplog.text and "secret detail" in caplog.text


def test_handler500_answers_json_under_api_and_html_elsewhere(db):
    api = server_error(RequestFactory().get("/api/v1/teams/"))
    page = server_error(RequestFactory().get("/teams/"))

    assert api.status_code == page.status_code == 500
    assert json.loads(api.content)["error"]["code"] == "INTERNAL_ERROR"
    assert page["Content-Type"].startswith("text/html")


def test_throttled_per_person_with_retry_after(world, api_client_for, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_read": "3/min", "api_write": "1/min"},
    }
    client, other = api_client_for(world.member), api_client_for(world.member)

    reads = [client.get("/api/v1/teams/").status_code for _ in range(4)]
    write = client.post(f"/api/v1/runs/{world.run.pk}/cancel/")
    second_write = client.post(f"/api/v1/runs/{world.run.pk}/cancel/")

    assert reads == [200, 200, 200, 429]
    assert write.status_code == 202  # writes have a budget of their own
    error = error_of(second_write, 429)
    assert error["code"] == "THROTTLED"
    assert 1 <= int(second_write["Retry-After"]) <= 60
    # another token of the same person shares the budget; another person has their own
    assert other.get("/api/v1/teams/").status_code == 429
    assert api_client_for(world.viewer).get("/api/v1/teams/").status_code == 200


def test_viewer_refusal_says_which_role_is_needed(world, api_client_for):
    response = api_client_for(world.viewer).post(RUNS_URL, LAUNCH_BODY)

    error = error_of(response, 403)
    assert error["code"] == "PERMISSION_DENIED"
    assert "member role" in error["message"]


def test_a_member_of_the_team_may_not_top_up(world, api_client_for):
    manager = api_client_for(world.manager)

    error = error_of(manager.post("/api/v1/teams/research/topups/", {"amount_cents": 1}), 403)

    assert "billing admins" in error["message"]
