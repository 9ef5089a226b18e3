"""Logins as an attacker tries them: guessing passwords on the login page and the admin's,
from one address or many, and what a password reset and a password change end."""

import logging
import re

import pytest
from axes.models import AccessAttempt, AccessFailureLog
from django.conf import settings
from django.core import mail
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from portal.core.logins import lockout_cool_off
from portal.core.models import ApiToken
from portal.core.services import api_token_create
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"
NEW_PASSWORD = "Nightingale-Orbit-2031!"


def _try(path, username, password, *, address="127.0.0.1"):
    client = Client(REMOTE_ADDR=address)
    response = client.post(path, {"username": username, "password": password})
    return response, client


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


# --- Lockout ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [LOGIN, ADMIN_LOGIN])
def test_forty_wrong_passwords_then_the_right_one_is_refused(path):
    # given an account (staff, so the admin login would let it in)
    UserFactory(username="alice", is_staff=True)
    # when 40 wrong passwords are tried, then the right one
    answers = [_try(path, "alice", f"guess-{n}")[0].status_code for n in range(40)]
    response, client = _try(path, "alice", PASSWORD)
    # then the guesses are cut off at the limit, and the right password does not get in
    limit = settings.LOGIN_FAILURE_LIMIT
    assert answers[: limit - 1] == [200] * (limit - 1)  # the form again, with its error
    assert set(answers[limit:]) == {429}
    assert response.status_code == 429
    assert b"Too many attempts" in response.content
    assert not _logged_in(client)


def test_an_account_locks_whatever_address_the_guesses_come_from():
    # given guesses at one account from many addresses
    UserFactory(username="alice")
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        _try(LOGIN, "alice", "wrong", address=f"198.51.100.{n + 1}")
    # when the right password comes from yet another address
    response, client = _try(LOGIN, "alice", PASSWORD, address="203.0.113.9")
    # then the account is locked
    assert response.status_code == 429
    assert not _logged_in(client)


def test_an_address_locks_whatever_accounts_it_guesses_at():
    # given one address guessing at many accounts
    UserFactory(username="bob")
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        _try(LOGIN, f"someone{n}", "wrong", address="198.51.100.7")
    # when a real person logs in from that address, and from another
    from_there, _ = _try(LOGIN, "bob", PASSWORD, address="198.51.100.7")
    elsewhere, client = _try(LOGIN, "bob", PASSWORD, address="203.0.113.9")
    # then that address is locked, and bob elsewhere is not
    assert from_there.status_code == 429
    assert elsewhere.status_code == 302
    assert _logged_in(client)


def test_the_lock_lifts_after_the_cool_off():
    # given a locked account
    UserFactory(username="alice")
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        _try(LOGIN, "alice", "wrong")
    assert _try(LOGIN, "alice", PASSWORD)[0].status_code == 429
    # when the cool-off has passed (the attempts are dated back past it)
    for attempt in AccessAttempt.objects.all():
        attempt.attempt_time -= lockout_cool_off(None) * 2
        attempt.save(update_fields=["attempt_time"])
    # then the right password gets in
    response, client = _try(LOGIN, "alice", PASSWORD)
    assert response.status_code == 302
    assert _logged_in(client)


def test_each_lockout_of_the_day_lasts_twice_as_long_as_the_one_before():
    # given the failures of one, two and three lockouts
    UserFactory(username="alice")
    request = RequestFactory().post(LOGIN, {"username": "alice"}, REMOTE_ADDR="203.0.113.1")
    limit = settings.LOGIN_FAILURE_LIMIT
    cool_offs = []
    for _lockout in range(3):
        AccessFailureLog.objects.bulk_create(
            AccessFailureLog(username="alice", ip_address="198.51.100.1", locked_out=False)
            for _ in range(limit)
        )
        cool_offs.append(lockout_cool_off(request))
    # then the cool-off doubles each time
    base = lockout_cool_off(None)
    assert cool_offs == [base, base * 2, base * 4]


def test_retries_refused_during_a_lockout_do_not_lengthen_the_back_off():
    # given forty wrong passwords in a row for one account (most refused as locked out)
    UserFactory(username="alice")
    for n in range(40):
        _try(LOGIN, "alice", f"guess-{n}")
    # then that is one lockout, with the first cool-off, not one lockout per five retries
    request = RequestFactory().post(LOGIN, {"username": "alice"}, REMOTE_ADDR="127.0.0.1")
    assert lockout_cool_off(request) == lockout_cool_off(None)
    assert AccessFailureLog.objects.filter(username="alice", locked_out=True).exists()


# --- Failures are logged and shown to admins ---------------------------------------------------


def test_failed_logins_are_logged_and_listed_in_the_admin(caplog):
    # given a few failed logins
    UserFactory(username="alice")
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            _try(LOGIN, "alice", "wrong", address="198.51.100.23")
    # then each is in the log and in the failure log, which the admin lists
    assert any("alice" in r.getMessage() and r.levelno >= logging.WARNING for r in caplog.records)
    assert (
        AccessFailureLog.objects.filter(username="alice", ip_address="198.51.100.23").count() == 2
    )
    admin = Client()
    admin.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    page = admin.get("/admin/axes/accessfailurelog/")
    assert page.status_code == 200
    assert b"198.51.100.23" in page.content
    attempts = admin.get("/admin/axes/accessattempt/")
    assert attempts.status_code == 200 and b"alice" in attempts.content


def test_a_password_is_never_logged_or_stored(caplog):
    UserFactory(username="alice")
    with caplog.at_level(logging.DEBUG):
        _try(LOGIN, "alice", "hunter2-secret-guess")
    assert "hunter2-secret-guess" not in caplog.text
    assert not AccessAttempt.objects.filter(post_data__contains="hunter2").exists()


# --- Password reset by email ------------------------------------------------------------------


def _reset_link() -> str:
    assert len(mail.outbox) == 1
    match = re.search(r"https?://[^/]+(/accounts/password/reset/\S+/)", mail.outbox[0].body)
    assert match, mail.outbox[0].body
    return match.group(1)


def test_a_password_is_reset_by_email_and_the_old_one_stops_working():
    # given a person who forgot their password, with a token and a session elsewhere
    carol = UserFactory(username="carol", email="carol@example.com")
    _row, token = api_token_create(user=carol, name="laptop")
    elsewhere = Client()
    elsewhere.force_login(carol)
    login_page = Client().get(LOGIN)
    assert b"/accounts/password/reset/" in login_page.content
    # when they ask for a reset, follow the emailed link and choose a new password
    client = Client()
    asked = client.post("/accounts/password/reset/", {"email": "carol@example.com"})
    assert asked.status_code == 302
    form = client.get(_reset_link(), follow=True)
    assert form.status_code == 200 and b"Choose a new password" in form.content
    saved = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    # then the new password works, the old one does not, and the old session and token are dead
    assert saved.status_code == 302 and saved["Location"].endswith("/reset/complete/")
    assert _try(LOGIN, "carol", PASSWORD, address="203.0.113.2")[0].status_code == 200
    response, logged_in = _try(LOGIN, "carol", NEW_PASSWORD, address="203.0.113.3")
    assert response.status_code == 302 and _logged_in(logged_in)
    assert elsewhere.get("/account/").status_code == 302  # sent to the login page
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.get("/api/v1/teams/").status_code == 401


def test_an_unknown_address_gets_the_same_answer_and_no_email():
    response = Client().post("/accounts/password/reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302
    assert response["Location"].endswith("/accounts/password/reset/sent/")
    assert mail.outbox == []


# --- A password change ends the other sessions and the tokens ---------------------------------


def test_a_password_change_ends_other_sessions_and_tokens_but_keeps_this_one():
    # given a person logged in twice, with an API token
    dave = UserFactory(username="dave")
    row, token = api_token_create(user=dave, name="script")
    here, there = Client(), Client()
    here.force_login(dave)
    there.force_login(dave)
    # when they change their password in one session
    response = here.post(
        "/accounts/password/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    # then that session goes on, the other is logged out, and the token is revoked
    assert response.status_code == 302
    assert here.get("/account/").status_code == 200
    assert there.get("/account/").status_code == 302
    row.refresh_from_db()
    assert row.revoked_at is not None
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.get("/api/v1/teams/").status_code == 401


def test_rehashing_the_same_password_revokes_nothing():
    # given a token (Django rehashes a password on login when its hasher's settings change)
    erin = UserFactory(username="erin")
    row, _token = api_token_create(user=erin, name="script")
    # when the same password is set and saved again, and another field changes
    erin.set_password(PASSWORD)
    erin.save()
    erin.first_name = "Erin"
    erin.save()
    # then the token still works
    assert ApiToken.objects.get(pk=row.pk).revoked_at is None


def test_a_login_without_a_request_is_left_to_the_password_check():
    # the test client's login() (and scripts) pass no request: nothing to lock, no error
    UserFactory(username="frank")
    assert Client().login(username="frank", password=PASSWORD)
    assert not Client().login(username="frank", password="wrong")


def test_a_password_reset_lifts_the_accounts_lockout():
    # given a locked account whose owner resets their password by email
    UserFactory(username="gina", email="gina@example.com")
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        _try(LOGIN, "gina", "wrong", address="198.51.100.40")
    assert _try(LOGIN, "gina", PASSWORD, address="203.0.113.40")[0].status_code == 429
    client = Client()
    client.post("/accounts/password/reset/", {"email": "gina@example.com"})
    form = client.get(_reset_link(), follow=True)
    client.post(
        form.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    # when they log in with the new password
    response, logged_in = _try(LOGIN, "gina", NEW_PASSWORD, address="203.0.113.40")
    # then they are in
    assert response.status_code == 302 and _logged_in(logged_in)


def test_old_failed_logins_are_purged_and_recent_ones_kept(settings):
    # given failures of a month and a half ago and of today (random usernames, say)
    import datetime as dt

    from django.utils import timezone

    from portal.core.tasks import purge_login_failures

    settings.LOGIN_FAILURE_LOG_DAYS = 30
    for n in range(3):
        _try(LOGIN, f"nobody-{n}", "wrong", address=f"198.51.100.{n + 1}")
    old = timezone.now() - dt.timedelta(days=45)
    AccessFailureLog.objects.filter(username__in=["nobody-0", "nobody-1"]).update(attempt_time=old)
    AccessAttempt.objects.filter(username__in=["nobody-0", "nobody-1"]).update(attempt_time=old)
    # when the daily job runs
    message = purge_login_failures()
    # then only today's remain
    assert message == "Purged 4 old failed login record(s)."
    assert list(AccessFailureLog.objects.values_list("username", flat=True)) == ["nobody-2"]
    assert list(AccessAttempt.objects.values_list("username", flat=True)) == ["nobody-2"]
