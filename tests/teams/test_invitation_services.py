"""Invitations by email (issue 18): the services that send, revoke and accept them."""

import datetime as dt
import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from portal.teams import services
from portal.teams.models import Invitation, Membership, MembershipChange, Role
from portal.teams.selectors import invitation_for_link
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

User = get_user_model()


@pytest.fixture
def alice(team, make_member):
    return make_member(team, Role.MANAGER, username="alice")


def invite(team, alice, email="dana@example.com", role=Role.MEMBER):
    return services.invitation_create(team=team, email=email, role=role, invited_by=alice)


def test_an_invitation_stores_only_the_hash_and_mails_the_link(
    team, alice, django_capture_on_commit_callbacks
):
    # when alice invites an address (typed with capitals)
    with django_capture_on_commit_callbacks(execute=True):
        invitation, token = invite(team, alice, email="Dana@Example.com ", role=Role.VIEWER)

    # then one pending invitation for 7 days is stored, under the token's hash only
    invitation.refresh_from_db()
    assert invitation.email == "dana@example.com"
    assert invitation.status == Invitation.Status.PENDING
    assert invitation.role == Role.VIEWER
    assert invitation.expires_at - invitation.created_at == pytest.approx(
        dt.timedelta(days=7), abs=dt.timedelta(seconds=5)
    )
    assert invitation.token_sha256 == Invitation.digest(token)
    stored = str(list(Invitation.objects.values()))
    assert token not in stored
    # and the email, to that address, carries the link with the token, never the hash
    [email] = mail.outbox
    assert email.to == ["dana@example.com"]
    assert "Research" in email.subject
    link = f"/invitations/{invitation.key}/{token}/"
    for body in (email.body, email.alternatives[0][0]):
        assert link in body
        assert invitation.token_sha256 not in body
    assert "alice" in email.body


def test_nothing_is_mailed_when_the_invitation_rolls_back(
    team, alice, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        invite(team, alice)
    # the email waits for the commit
    assert len(callbacks) == 1
    assert mail.outbox == []


def test_the_link_verifies_only_with_the_right_key_and_token(team, alice):
    invitation, token = invite(team, alice)
    assert invitation_for_link(key=invitation.key, token=token) == invitation
    assert invitation_for_link(key=invitation.key, token=token[:-1] + "x") is None
    assert invitation_for_link(key=invitation.key, token="") is None
    _, other_token = invite(team, alice, email="erin@example.com")
    assert invitation_for_link(key=invitation.key, token=other_token) is None


def test_accepting_as_a_new_person_makes_the_account_and_records_the_addition(team, alice):
    # given an invitation of an address without an account
    invitation, _ = invite(team, alice, role=Role.VIEWER)

    # when the person makes their account through it
    user = services.invitation_accept_new_user(
        invitation=invitation, username="dana", password="a-long-pass-2026", name="Dana Scully"
    )

    # then they are a viewer of the team, with the invited address and a working password
    assert user.email == "dana@example.com"
    assert (user.first_name, user.last_name) == ("Dana", "Scully")
    assert user.check_password("a-long-pass-2026")
    assert Membership.objects.get(team=team, user=user).role == Role.VIEWER
    # and the team's history says alice added dana, as for any addition
    change = MembershipChange.objects.get(team=team, member=user)
    assert (change.action, change.actor, change.new_role) == ("added", alice, Role.VIEWER)
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.ACCEPTED
    assert invitation.accepted_by == user
    assert invitation.accepted_at is not None


def test_accepting_with_an_existing_account_joins_the_team(team, alice):
    dana = UserFactory(username="dana", email="DANA@example.com")
    invitation, _ = invite(team, alice)

    membership = services.invitation_accept(invitation=invitation, user=dana)

    assert membership.role == Role.MEMBER
    assert MembershipChange.objects.filter(team=team, member=dana, action="added").count() == 1
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.ACCEPTED


def test_an_account_with_another_address_cannot_accept(team, alice):
    invitation, _ = invite(team, alice)
    mallory = UserFactory(username="mallory")
    with pytest.raises(ValidationError, match=r"dana@example\.com"):
        services.invitation_accept(invitation=invitation, user=mallory)
    assert not Membership.objects.filter(team=team, user=mallory).exists()
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.PENDING


def test_a_link_works_once(team, alice):
    invitation, _ = invite(team, alice)
    services.invitation_accept_new_user(
        invitation=invitation, username="dana", password="a-long-pass-2026"
    )
    with pytest.raises(services.InvitationClosed) as closed:
        services.invitation_accept_new_user(
            invitation=invitation, username="dana2", password="a-long-pass-2026"
        )
    assert closed.value.reason == "used"
    assert not User.objects.filter(username="dana2").exists()


def test_an_expired_invitation_cannot_be_accepted(team, alice):
    invitation, _ = invite(team, alice)
    past = timezone.now() - dt.timedelta(days=8)
    Invitation.objects.filter(pk=invitation.pk).update(
        created_at=past, expires_at=past + services.INVITATION_LIFETIME
    )
    invitation.refresh_from_db()
    assert services.invitation_closed_reason(invitation) == "expired"
    with pytest.raises(services.InvitationClosed) as closed:
        services.invitation_accept_new_user(
            invitation=invitation, username="dana", password="a-long-pass-2026"
        )
    assert closed.value.reason == "expired"
    assert not User.objects.filter(username="dana").exists()


def test_a_taken_username_leaves_the_invitation_usable(team, alice):
    UserFactory(username="dana", email="someone-else@example.com")
    invitation, _ = invite(team, alice)
    with pytest.raises(ValidationError):
        services.invitation_accept_new_user(
            invitation=invitation, username="dana", password="a-long-pass-2026"
        )
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.PENDING


def test_re_inviting_replaces_the_pending_invitation(team, alice):
    first, _ = invite(team, alice)
    second, _ = invite(team, alice, email="DANA@example.com", role=Role.MANAGER)

    first.refresh_from_db()
    assert first.status == Invitation.Status.REPLACED
    assert services.invitation_closed_reason(first) == "revoked"
    assert list(Invitation.objects.filter(status="pending")) == [second]
    with pytest.raises(services.InvitationClosed):
        services.invitation_accept_new_user(
            invitation=first, username="dana", password="a-long-pass-2026"
        )
    user = services.invitation_accept_new_user(
        invitation=second, username="dana", password="a-long-pass-2026"
    )
    assert Membership.objects.get(team=team, user=user).role == Role.MANAGER


def test_a_revoked_invitation_cannot_be_accepted(team, alice):
    invitation, _ = invite(team, alice)
    services.invitation_revoke(invitation=invitation, actor=alice)
    services.invitation_revoke(invitation=invitation, actor=alice)  # twice is once
    invitation.refresh_from_db()
    assert (invitation.status, invitation.revoked_by) == (Invitation.Status.REVOKED, alice)
    with pytest.raises(services.InvitationClosed) as closed:
        services.invitation_accept_new_user(
            invitation=invitation, username="dana", password="a-long-pass-2026"
        )
    assert closed.value.reason == "revoked"


def test_an_accepted_invitation_cannot_be_revoked(team, alice):
    invitation, _ = invite(team, alice)
    services.invitation_accept_new_user(
        invitation=invitation, username="dana", password="a-long-pass-2026"
    )
    with pytest.raises(ValidationError, match="already accepted"):
        services.invitation_revoke(invitation=invitation, actor=alice)
    assert Invitation.objects.get(pk=invitation.pk).status == Invitation.Status.ACCEPTED


def test_inviting_a_member_is_refused(team, alice, make_member):
    bob = make_member(team, Role.MEMBER, username="bob")
    with pytest.raises(ValidationError, match="bob"):
        invite(team, alice, email=bob.email.upper())
    assert not Invitation.objects.exists()


def test_invitations_are_limited_per_hour(team, alice, monkeypatch):
    monkeypatch.setattr(services, "INVITATIONS_PER_HOUR_MAX", 2)
    invite(team, alice, email="a@example.com")
    invite(team, alice, email="b@example.com")
    with pytest.raises(ValidationError, match="last hour"):
        invite(team, alice, email="c@example.com")
    assert not Invitation.objects.filter(email="c@example.com").exists()


def test_pending_invitations_are_capped(team, alice, monkeypatch):
    monkeypatch.setattr(services, "INVITATIONS_PENDING_MAX", 1)
    invite(team, alice, email="a@example.com")
    invite(team, alice, email="a@example.com")  # a replacement does not add one
    with pytest.raises(ValidationError, match="pending"):
        invite(team, alice, email="b@example.com")


def test_a_failing_mail_server_is_reported_and_the_invitation_kept(
    team, alice, settings, django_capture_on_commit_callbacks, monkeypatch
):
    def refuse(self, *args, **kwargs):
        raise OSError("connection refused")

    monkeypatch.setattr("django.core.mail.EmailMultiAlternatives.send", refuse)
    with (
        pytest.raises(services.InvitationEmailNotSent),
        django_capture_on_commit_callbacks(execute=True),
    ):
        invite(team, alice)
    assert Invitation.objects.filter(status="pending").count() == 1


def test_the_link_in_the_email_is_under_the_public_url(
    team, alice, settings, django_capture_on_commit_callbacks
):
    settings.PORTAL_PUBLIC_URL = "https://portal.example.org"
    with django_capture_on_commit_callbacks(execute=True):
        invitation, token = invite(team, alice)
    [email] = mail.outbox
    assert re.search(
        rf"https://portal\.example\.org/invitations/{invitation.key}/{re.escape(token)}/",
        email.body,
    )


def test_the_database_keeps_one_pending_invitation_per_address_and_team(team, other_team, alice):
    from django.db import IntegrityError, transaction

    invitation, _ = invite(team, alice)
    fields = {"email": invitation.email, "token_sha256": "0" * 64, "expires_at": timezone.now()}
    Invitation.objects.create(team=other_team, **fields)  # another team: fine
    Invitation.objects.create(team=team, status=Invitation.Status.REVOKED, **fields)  # ended: fine
    with pytest.raises(IntegrityError), transaction.atomic():
        Invitation.objects.create(team=team, **fields)
