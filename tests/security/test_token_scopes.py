"""API tokens as an attacker would use them: with a scope they were not given, after they
expired, by the dozen to dodge throttles, and after the password changed."""

import datetime as dt
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import URLPattern, URLResolver
from django.utils import timezone
from rest_framework.test import APIClient

from portal import api_urls
from portal.core.models import ALL_TOKEN_SCOPES, ApiToken
from portal.core.services import API_TOKENS_LIVE_MAX, api_token_create, api_token_revoke
from tests.api_world import LAUNCH_BODY, RUNS_URL, make_world
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return make_world()


def _client(user, scopes=None, **kwargs):
    _row, token = api_token_create(user=user, name="t", scopes=scopes, **kwargs)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def _calls(world):
    """Every v1 endpoint: (who calls it, method, path, body, the scope it needs)."""
    run = f"/api/v1/runs/{world.run.pk}/"
    return [
        ("member", "get", RUNS_URL, None, "runs:read"),
        ("member", "post", RUNS_URL, LAUNCH_BODY, "runs:write"),
        ("member", "get", run, None, "runs:read"),
        ("member", "get", f"{run}events/", None, "runs:read"),
        ("member", "post", f"{run}resume/", {"note": "done"}, "runs:write"),
        ("member", "post", f"{run}cancel/", {}, "runs:write"),
        ("member", "get", "/api/v1/teams/research/wallet/", None, "billing:read"),
        ("member", "get", "/api/v1/teams/research/ledger/", None, "billing:read"),
        (
            "billing_admin",
            "post",
            "/api/v1/teams/research/topups/",
            {"amount_cents": 100, "reference": "scope test"},
            "billing:write",
        ),
    ]


def test_each_endpoint_refuses_a_token_without_its_scope_and_names_it(world):
    for who, method, path, body, scope in _calls(world):
        # given a token with every scope but the one this endpoint needs
        others = [s for s in ALL_TOKEN_SCOPES if s != scope]
        client = _client(getattr(world, who), scopes=others)
        # when it calls the endpoint
        response = getattr(client, method)(path, body, format="json")
        # then 403 PERMISSION_DENIED naming the missing scope, and nothing happened
        assert response.status_code == 403, (path, response.content)
        error = response.json()["error"]
        assert error["code"] == "PERMISSION_DENIED"
        assert scope in error["message"], error


def test_each_endpoint_lets_a_token_with_just_its_scope_through(world):
    for who, method, path, body, scope in _calls(world):
        client = _client(getattr(world, who), scopes=[scope])
        response = getattr(client, method)(path, body, format="json")
        assert response.status_code in (200, 201, 202), (path, response.content)


def test_a_scope_does_not_widen_a_role(world):
    # a viewer's token with runs:write still may not launch: the role decides too
    response = _client(world.viewer, scopes=["runs:write"]).post(RUNS_URL, LAUNCH_BODY)
    assert response.status_code == 403
    assert "member role" in response.json()["error"]["message"]


def _v1_views(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _v1_views(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.callback


def test_every_api_endpoint_names_the_scope_it_needs():
    # A new endpoint without `scope_area` refuses every token (fail closed); this says which.
    undeclared = [
        path
        for path, view in _v1_views(api_urls.v1)
        if not hasattr(getattr(view, "view_class", None), "scope_area")
    ]
    assert undeclared == [], f"set scope_area on the views of: {undeclared}"


# --- Expiry -----------------------------------------------------------------------------------


def test_an_expired_token_is_refused_with_401(world):
    row, token = api_token_create(
        user=world.member, name="t", expires_at=timezone.now() + dt.timedelta(days=1)
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get("/api/v1/teams/").status_code == 200
    ApiToken.objects.filter(pk=row.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    response = client.get("/api/v1/teams/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"
    assert "expired" in response.json()["error"]["message"]


def test_an_expiry_in_the_past_is_refused():
    from tests.factories import UserFactory

    with pytest.raises(ValidationError):
        api_token_create(
            user=UserFactory(), name="t", expires_at=timezone.now() - dt.timedelta(days=1)
        )


# --- At most 20 live tokens -------------------------------------------------------------------


def test_at_most_twenty_live_tokens_per_person(world):
    # given a person with 20 live tokens, an expired one and a revoked one
    bob = world.member
    tokens = [api_token_create(user=bob, name=f"t{n}")[0] for n in range(API_TOKENS_LIVE_MAX)]
    # when they ask for a 21st
    with pytest.raises(ValidationError, match="20 live API tokens"):
        api_token_create(user=bob, name="one too many")
    # then revoking or expiring one frees a place
    api_token_revoke(token=tokens[0])
    api_token_create(user=bob, name="after a revoke")
    ApiToken.objects.filter(pk=tokens[1].pk).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    api_token_create(user=bob, name="after an expiry")
    assert ApiToken.objects.filter(user=bob).count() == API_TOKENS_LIVE_MAX + 2


def test_the_account_page_says_when_the_limit_is_reached(world, client_for):
    for n in range(API_TOKENS_LIVE_MAX):
        api_token_create(user=world.member, name=f"t{n}")
    response = client_for(world.member).post("/account/", {"name": "more", "scopes": ["runs:read"]})
    assert response.status_code == 400
    assert "Revoke one you no longer use" in response.content.decode()


def test_the_account_page_makes_a_token_with_the_chosen_scopes_and_expiry(world, client_for):
    page = client_for(world.viewer).get("/account/").content.decode()
    assert 'value="runs:read"' in page and 'value="billing:write"' in page
    client_for(world.member).post(
        "/account/", {"name": "reader", "scopes": ["runs:read"], "expires_in_days": "30"}
    )
    row = ApiToken.objects.get(user=world.member, name="reader")
    assert row.scopes == ["runs:read"]
    assert timezone.now() + dt.timedelta(days=29) < row.expires_at
    assert row.expires_at < timezone.now() + dt.timedelta(days=31)


# --- Throttles per person ---------------------------------------------------------------------


def test_more_tokens_buy_no_more_requests(world, settings):
    # given a tight read budget
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_read": "5/min", "api_write": "1/min"},
    }
    # when a person spreads their reads over ten tokens
    answers = [_client(world.member).get("/api/v1/teams/").status_code for _ in range(10)]
    # then the budget is theirs, not each token's
    assert answers.count(200) == 5
    assert answers[5:] == [429] * 5


# --- A password change revokes every token ----------------------------------------------------


def test_a_password_change_revokes_the_persons_tokens_only(world):
    mine = _client(world.member)
    theirs = _client(world.viewer)
    world.member.set_password("A-whole-new-password-2027")
    world.member.save()
    assert mine.get("/api/v1/teams/").status_code == 401
    assert theirs.get("/api/v1/teams/").status_code == 200


# --- The command ------------------------------------------------------------------------------


def _command(*args):
    out, err = StringIO(), StringIO()
    call_command("create_api_token", *args, stdout=out, stderr=err)
    token = out.getvalue().strip()
    return ApiToken.objects.get(secret_sha256=ApiToken.digest(token))


def test_the_command_gives_by_default_what_the_roles_allow(world):
    assert _command(world.viewer.username).scopes == ["runs:read", "billing:read"]
    assert _command(world.member.username).scopes == ["runs:read", "runs:write", "billing:read"]
    assert _command(world.billing_admin.username).scopes == [
        "runs:read",
        "billing:read",
        "billing:write",
    ]


def test_the_command_takes_scopes_and_an_expiry(world):
    row = _command(
        world.member.username, "--scope", "runs:read", "--scope", "billing:read",
        "--expires-days", "7",
    )  # fmt: skip
    assert row.scopes == ["runs:read", "billing:read"]
    assert timezone.now() + dt.timedelta(days=6) < row.expires_at
    assert row.expires_at < timezone.now() + dt.timedelta(days=8)
    with pytest.raises(CommandError):
        _command(world.member.username, "--scope", "everything")
    with pytest.raises(CommandError):
        _command(world.member.username, "--expires-days", "0")


# --- Tokens made before scopes ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_tokens_made_before_scopes_get_every_scope_on_migration():
    # given the database as it was before scopes, with a token in it
    executor = MigrationExecutor(connection)
    before = [("core", "0002_purge_job_path")]
    after = [("core", "0003_apitoken_scopes_and_expiry")]
    executor.migrate(before)
    old_apps = executor.loader.project_state(before).apps
    user = old_apps.get_model("auth", "User").objects.create(username="early", password=PASSWORD)
    old_apps.get_model("core", "ApiToken").objects.create(
        user=user, name="old script", prefix="cpt_abcdefgh", secret_sha256="a" * 64
    )
    # when the migration runs
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    # then the token can still do everything
    new_apps = executor.loader.project_state(after).apps
    token = new_apps.get_model("core", "ApiToken").objects.get(name="old script")
    assert token.scopes == list(ALL_TOKEN_SCOPES)
    assert token.expires_at is None


def _second_wave_calls(world):
    """The endpoints of budgets, approvals, schedules and team endpoints, each with what it
    needs to answer 2xx: (who, method, path, body, the scope it needs)."""
    from runs.models import Run, RunStatus
    from tests.api_world import launch, schedule_and_endpoint

    schedule, endpoint = schedule_and_endpoint(
        world.team, owner=world.member, manager=world.manager
    )
    waiting = [launch(world.team, world.member) for _ in range(2)]
    Run.objects.filter(pk__in=[r.pk for r in waiting]).update(status=RunStatus.AWAITING_APPROVAL)
    budget = "/api/v1/teams/research/budget/"
    return [
        ("member", "get", budget, None, "billing:read"),
        (
            "manager",
            "put",
            budget,
            {"monthly_limit_cents": 100000, "approval_above_cents": None, "alert_percents": []},
            "billing:write",
        ),
        (
            "manager",
            "put",
            f"/api/v1/teams/research/members/{world.member.username}/limit/",
            {"monthly_limit_cents": 5000},
            "billing:write",
        ),
        ("manager", "post", f"/api/v1/runs/{waiting[0].pk}/approve/", {}, "runs:write"),
        (
            "manager",
            "post",
            f"/api/v1/runs/{waiting[1].pk}/reject/",
            {"reason": "no"},
            "runs:write",
        ),
        ("member", "get", "/api/v1/teams/research/schedules/", None, "runs:read"),
        (
            "member",
            "post",
            "/api/v1/teams/research/schedules/",
            {
                "name": "Weekly",
                "cron": "0 9 * * 1",
                "run": {"machine_id": "vm-linux-1", "task": "t"},
            },
            "runs:write",
        ),
        ("member", "get", f"/api/v1/schedules/{schedule.pk}/", None, "runs:read"),
        ("member", "patch", f"/api/v1/schedules/{schedule.pk}/", {"enabled": False}, "runs:write"),
        ("member", "get", f"/api/v1/schedules/{schedule.pk}/launches/", None, "runs:read"),
        ("manager", "get", "/api/v1/teams/research/webhook-endpoints/", None, "runs:read"),
        (
            "manager",
            "post",
            "/api/v1/teams/research/webhook-endpoints/",
            {"url": "https://hooks.example.com/two", "events": ["run.failed"]},
            "runs:write",
        ),
        (
            "manager",
            "get",
            f"/api/v1/webhook-endpoints/{endpoint.pk}/deliveries/",
            None,
            "runs:read",
        ),
        ("manager", "post", f"/api/v1/webhook-endpoints/{endpoint.pk}/test/", {}, "runs:write"),
        ("manager", "delete", f"/api/v1/webhook-endpoints/{endpoint.pk}/", None, "runs:write"),
        ("member", "delete", f"/api/v1/schedules/{schedule.pk}/", None, "runs:write"),
    ]


def test_budgets_approvals_schedules_and_endpoints_refuse_a_token_without_their_scope(world):
    for who, method, path, body, scope in _second_wave_calls(world):
        others = [s for s in ALL_TOKEN_SCOPES if s != scope]
        response = getattr(_client(getattr(world, who), scopes=others), method)(
            path, body, format="json"
        )
        assert response.status_code == 403, (method, path, response.content)
        error = response.json()["error"]
        assert error["code"] == "PERMISSION_DENIED" and scope in error["message"], error


def test_budgets_approvals_schedules_and_endpoints_need_just_their_scope(world):
    for who, method, path, body, scope in _second_wave_calls(world):
        response = getattr(_client(getattr(world, who), scopes=[scope]), method)(
            path, body, format="json"
        )
        assert response.status_code in (200, 201, 202, 204), (method, path, response.content)


def test_my_notifications_are_read_with_any_scope(world):
    # a person's own notifications are theirs, whatever the token was made for
    for scope in ALL_TOKEN_SCOPES:
        response = _client(world.member, scopes=[scope]).get("/api/v1/notifications/")
        assert response.status_code == 200, (scope, response.content)
