"""The login session reads through the API (the docs' "Try it out"), and never writes.

Every endpoint of the matrix, called by each kind of person logged in to the portal with no
token: a read answers what a token of that person gets (their own teams only, billing admins'
reads as on the pages); a write is refused with 403 PERMISSION_DENIED saying a token is
needed, whatever the CSRF token, and changes nothing. Tokens are unchanged.
"""

import pytest
from django.test import Client

from portal.core.services import api_token_create
from runs.models import Run
from tests.api_world import error_of, make_world
from tests.test_api_matrix import ENDPOINTS, SHAPES, expected, snapshot

pytestmark = pytest.mark.django_db

READS = [name for name, (method, *_rest) in ENDPOINTS.items() if method == "get"]
WRITES = [name for name, (method, *_rest) in ENDPOINTS.items() if method != "get"]
PEOPLE = ["member", "manager", "viewer", "outsider", "billing_admin"]


def session_of(user, *, enforce_csrf_checks=False) -> Client:
    client = Client(enforce_csrf_checks=enforce_csrf_checks)
    client.force_login(user)
    return client


def url_of(world, name) -> str:
    return ENDPOINTS[name][1].format(team=world.team.slug, run=world.run.pk)


@pytest.mark.parametrize("name", READS)
@pytest.mark.parametrize("caller", PEOPLE)
def test_a_session_reads_what_a_token_of_the_same_person_reads(caller, name):
    # given the organisation and the person logged in, with no token
    world = make_world()
    client = session_of(getattr(world, caller))

    # when they read the endpoint through their session
    response = client.get(url_of(world, name))

    # then they get what their token would: their own teams only, 404 for another team
    status, code = expected(caller, name)
    assert response.status_code == status, response.content
    if code is None:
        assert set(response.json()) == SHAPES[name]
    else:
        assert error_of(response, status)["code"] == code


def test_a_session_lists_only_the_persons_own_teams():
    world = make_world()

    body = session_of(world.outsider).get("/api/v1/teams/").json()

    assert [team["slug"] for team in body["results"]] == ["ops"]


def test_a_billing_admin_session_reads_a_wallet_but_not_a_run_of_a_team_they_are_not_in():
    # the same rules as the billing admin's token: wallets and ledgers, no runs
    world = make_world()
    client = session_of(world.billing_admin)

    assert client.get("/api/v1/teams/research/wallet/").status_code == 200
    assert error_of(client.get(f"/api/v1/runs/{world.run.pk}/"), 404)["code"] == "NOT_FOUND"


@pytest.mark.parametrize("name", WRITES)
@pytest.mark.parametrize("caller", PEOPLE)
def test_a_session_write_is_refused_with_a_reason_and_changes_nothing(caller, name):
    # given a person logged in, with no token, who may do this with a token
    world = make_world()
    client = session_of(getattr(world, caller))
    method, _, body, _ = ENDPOINTS[name]
    before = snapshot()

    # when they call a write through their session
    response = getattr(client, method)(
        url_of(world, name),
        body or {},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=f"session-{caller}",
    )

    # then it is refused, saying a token is needed, and nothing changed
    error = error_of(response, 403)
    assert error["code"] == "PERMISSION_DENIED"
    assert "API token" in error["message"]
    assert snapshot() == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("patch", "/api/v1/teams/research/budget/"),
        ("put", "/api/v1/teams/research/budget/"),
        ("delete", "/api/v1/teams/research/runs/"),
    ],
)
def test_every_other_write_method_is_refused_through_the_session(method, path):
    world = make_world()
    response = getattr(session_of(world.manager), method)(
        path, {"monthly_limit_cents": 1}, content_type="application/json"
    )
    assert error_of(response, 403)["code"] == "PERMISSION_DENIED"


def test_a_session_write_with_a_valid_csrf_token_is_still_refused(settings):
    # given a member's browser that passes Django's CSRF check (token in cookie and header)
    world = make_world()
    client = session_of(world.member, enforce_csrf_checks=True)
    client.get("/teams/research/runs/new/")  # a page with a form sets the CSRF cookie
    csrf = client.cookies[settings.CSRF_COOKIE_NAME].value
    runs_before = Run.objects.count()

    # when it launches a run through the API with the session
    response = client.post(
        "/api/v1/teams/research/runs/",
        {"machine_id": "vm-linux-1", "task": "Export", "max_steps": 10},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=csrf,
    )

    # then CSRF is no way in: writes need a token
    assert error_of(response, 403)["code"] == "PERMISSION_DENIED"
    assert Run.objects.count() == runs_before


def test_a_cross_site_style_write_without_csrf_is_refused_before_anything():
    # a form posted from another site would carry the cookie (top-level POST is not sent with
    # SameSite=Lax, but older browsers) and no CSRF token: refused the same way
    world = make_world()
    client = session_of(world.member, enforce_csrf_checks=True)

    response = client.post(f"/api/v1/runs/{world.run.pk}/cancel/")

    assert error_of(response, 403)["code"] == "PERMISSION_DENIED"
    world.run.refresh_from_db()
    assert world.run.status == "awaiting_human"


def test_the_session_cookie_is_not_sent_cross_site(settings):
    # reads are safe from other sites because the browser does not send the cookie along
    assert settings.SESSION_COOKIE_SAMESITE in ("Lax", "Strict")
    response = session_of(make_world().member).get("/api/v1/teams/")
    assert "Access-Control-Allow-Origin" not in response


def test_anonymous_is_still_401_with_the_bearer_challenge():
    make_world()
    response = Client().get("/api/v1/teams/")
    assert error_of(response, 401)["code"] == "UNAUTHENTICATED"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_a_disabled_account_session_reads_nothing():
    world = make_world()
    client = session_of(world.member)
    world.member.is_active = False
    world.member.save()
    assert client.get("/api/v1/teams/").status_code == 401


def test_a_token_wins_over_the_session_and_keeps_its_scopes():
    # given a member logged in whose request also carries a token with billing:read only
    world = make_world()
    _, token = api_token_create(user=world.member, name="ledger", scopes=["billing:read"])
    client = session_of(world.member)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    # then the token's scopes decide, not the session
    assert client.get("/api/v1/teams/research/wallet/", **auth).status_code == 200
    refused = client.get(f"/api/v1/runs/{world.run.pk}/", **auth)
    assert error_of(refused, 403)["code"] == "PERMISSION_DENIED"
    assert "runs:read" in refused.json()["error"]["message"]
    # and a bad token is not rescued by the session
    bad = client.get("/api/v1/teams/", HTTP_AUTHORIZATION="Bearer nope")
    assert error_of(bad, 401)["code"] == "UNAUTHENTICATED"


def test_a_token_still_writes(api_client_for):
    world = make_world()
    response = api_client_for(world.member).post(
        f"/api/v1/runs/{world.run.pk}/cancel/", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert response.status_code == 202, response.content


def test_the_schema_documents_the_session_for_reads_only():
    schema = Client().get("/api/schema/?format=json").json()
    assert schema["components"]["securitySchemes"]["sessionCookie"]["in"] == "cookie"
    runs = schema["paths"]["/api/v1/teams/{slug}/runs/"]
    assert {"sessionCookie": []} in runs["get"]["security"]
    assert {"sessionCookie": []} not in runs["post"]["security"]


def test_session_reads_share_the_persons_read_budget(settings, api_client_for):
    # given a tight read budget
    from django.core.cache import cache

    cache.clear()
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_read": "4/min", "api_write": "1/min"},
    }
    world = make_world()
    token = api_client_for(world.member)
    session = session_of(world.member)

    # when the person reads through a token and through the docs page in turn
    answers = [(token if n % 2 else session).get("/api/v1/teams/").status_code for n in range(6)]

    # then the session is no way around the budget
    assert answers == [200, 200, 200, 200, 429, 429]
