"""Personal API tokens: bearer authentication, the Account page, the command and the admin."""

import datetime as dt
import hashlib
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from portal.core.models import ApiToken
from portal.core.services import api_token_create, api_token_revoke
from portal.teams.models import Role

pytestmark = pytest.mark.django_db

TEAMS = "/api/v1/teams/"


def test_a_token_authenticates_as_its_owner(team, make_member, api_client_for):
    bob = make_member(team, Role.VIEWER, username="bob")

    response = api_client_for(bob).get(TEAMS)

    assert response.status_code == 200
    assert response.json()["results"][0]["role"] == "viewer"


def test_only_the_tokens_hash_is_stored(team, make_member):
    bob = make_member(team, username="bob")

    row, token = api_token_create(user=bob, name="laptop")

    assert token.startswith("cpt_") and len(token) == 47
    assert row.secret_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert row.prefix == token[:12]
    stored = ApiToken.objects.filter(pk=row.pk).values().get()
    assert not any(token in str(value) for value in stored.values())


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer two parts",
        "Basic Ym9iOnNlY3JldA==",
        "Token cpt_" + "a" * 43,
        "Bearer cpt_short",
        "Bearer sk-coasty-live-0123456789",
        "Bearer cpt_" + "a" * 43,  # well formed, but no such token
        "Bearer cpt_" + "é" * 43,
    ],
)
def test_malformed_or_unknown_tokens_are_401(header, team, api_client_for):
    client = api_client_for(None)
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get(TEAMS)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_a_browser_session_reads_without_a_token_but_writes_need_one(team, make_member, client_for):
    # issue 18: the API docs' "Try it out" works for a logged-in person's reads
    bob = make_member(team, username="bob")

    assert client_for(bob).get(TEAMS).status_code == 200
    response = client_for(bob).post(
        "/api/v1/teams/research/runs/", {}, content_type="application/json"
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "PERMISSION_DENIED"


def test_revoked_token_is_401_and_says_so(team, make_member, api_client_for):
    bob = make_member(team, username="bob")
    row, token = api_token_create(user=bob, name="old")
    client = api_client_for(token=token)
    assert client.get(TEAMS).status_code == 200

    api_token_revoke(token=row)
    response = client.get(TEAMS)

    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


def test_disabled_accounts_tokens_are_401(team, make_member, api_client_for):
    bob = make_member(team, username="bob")
    client = api_client_for(bob)
    bob.is_active = False
    bob.save()

    assert client.get(TEAMS).status_code == 401


def test_last_use_is_written_at_most_once_a_minute(team, make_member, api_client_for):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    bob = make_member(team, username="bob")
    row, token = api_token_create(user=bob, name="cron")
    client = api_client_for(token=token)

    client.get(TEAMS)
    first = ApiToken.objects.get(pk=row.pk).last_used_at
    # a second call within the minute writes nothing
    with CaptureQueriesContext(connection) as queries:
        client.get(TEAMS)
    assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert ApiToken.objects.get(pk=row.pk).last_used_at == first

    ApiToken.objects.filter(pk=row.pk).update(last_used_at=first - dt.timedelta(minutes=2))
    client.get(TEAMS)
    assert ApiToken.objects.get(pk=row.pk).last_used_at > first - dt.timedelta(seconds=1)
    assert first is not None and first <= timezone.now()


# --- The Account page ---------------------------------------------------------------------------


def test_account_page_makes_a_token_and_shows_it_once(team, make_member, client_for):
    bob = make_member(team, username="bob")
    browser = client_for(bob)

    made = browser.post(
        "/account/", {"name": "nightly export", "scopes": ["runs:read"]}, follow=True
    )

    # the POST redirects, so a refresh of the page cannot make a second token
    assert made.redirect_chain == [("/account/", 302)]
    token = made.context["new_token"]
    page = made.content.decode()
    assert token in page
    assert 'data-copy="new-token"' in page
    assert "no-store" in made["Cache-Control"] or "max-age=0" in made["Cache-Control"]
    row = ApiToken.objects.get(user=bob)
    assert row.name == "nightly export"
    # later visits list it by prefix only
    later = browser.get("/account/").content.decode()
    assert token not in later
    assert row.prefix in later
    assert "never" in later
    assert ApiToken.objects.filter(user=bob).count() == 1


def test_account_page_refuses_a_blank_name(team, make_member, client_for):
    bob = make_member(team, username="bob")

    response = client_for(bob).post("/account/", {"name": "  "})

    assert response.status_code == 400
    assert not ApiToken.objects.exists()


def test_revoke_from_the_account_page(team, make_member, client_for, api_client_for):
    bob = make_member(team, username="bob")
    row, token = api_token_create(user=bob, name="laptop")
    browser = client_for(bob)

    assert browser.get(f"/account/tokens/{row.pk}/revoke/").status_code == 405
    response = browser.post(f"/account/tokens/{row.pk}/revoke/")

    assert response.status_code == 302
    assert ApiToken.objects.get(pk=row.pk).revoked_at is not None
    assert api_client_for(token=token).get(TEAMS).status_code == 401
    assert "Revoked" in browser.get("/account/").content.decode()


def test_nobody_revokes_someone_elses_token(team, make_member, client_for):
    bob = make_member(team, username="bob")
    alice = make_member(team, Role.MANAGER, username="alice")
    row, _ = api_token_create(user=bob, name="laptop")

    response = client_for(alice).post(f"/account/tokens/{row.pk}/revoke/")

    assert response.status_code == 404
    assert ApiToken.objects.get(pk=row.pk).revoked_at is None


def test_account_page_needs_a_login(client):
    response = client.get("/account/")

    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


# --- The command and the admin --------------------------------------------------------------------


def test_create_api_token_command_prints_a_working_token(team, make_member, api_client_for):
    make_member(team, username="bob")
    out, err = StringIO(), StringIO()

    call_command("create_api_token", "bob", "--name", "ci", stdout=out, stderr=err)

    token = out.getvalue().strip()
    assert api_client_for(token=token).get(TEAMS).status_code == 200
    assert ApiToken.objects.get().name == "ci"
    assert "printed once" in err.getvalue()


def test_create_api_token_command_refuses_unknown_users(db):
    with pytest.raises(CommandError, match="No user"):
        call_command("create_api_token", "nobody", stdout=StringIO())


def test_admin_lists_tokens_without_their_hash(team, make_member, admin_client):
    bob = make_member(team, username="bob")
    row, token = api_token_create(user=bob, name="laptop")

    listing = admin_client.get("/admin/core/apitoken/").content.decode()
    detail = admin_client.get(f"/admin/core/apitoken/{row.pk}/change/").content.decode()

    assert row.prefix in listing
    for page in (listing, detail):
        assert row.secret_sha256 not in page
        assert token not in page
    response = admin_client.post(
        "/admin/core/apitoken/", {"action": "revoke", "_selected_action": [row.pk]}
    )
    assert response.status_code == 302
    assert ApiToken.objects.get(pk=row.pk).revoked_at is not None
