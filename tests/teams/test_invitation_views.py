"""Invitations by email (issue 18): the members page that sends and revokes them, and the
unauthenticated page their link opens."""

import datetime as dt
import re
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from portal.teams import services
from portal.teams.models import Invitation, Membership, MembershipChange, Role
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

User = get_user_model()
PASSWORD = "a-long-pass-2026"


@pytest.fixture
def alice(team, make_member):
    return make_member(team, Role.MANAGER, username="alice")


@pytest.fixture
def sent(team, alice):
    """A pending invitation of dana@example.com to `team` as a member, and its token."""
    return services.invitation_create(
        team=team, email="dana@example.com", role=Role.MEMBER, invited_by=alice
    )


def link(invitation, token):
    return reverse("invitation_accept", args=[invitation.key, token])


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


# --- The members page ---------------------------------------------------------------------------


def test_a_manager_invites_from_the_members_page_and_sees_it_pending(
    team, alice, client_for, django_capture_on_commit_callbacks
):
    client = client_for(alice)
    # when alice sends an invitation from the members page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("team_invitation_create", args=[team.slug]),
            {"invite-email": "dana@example.com", "invite-role": Role.VIEWER},
        )

    # then she is sent back to the page, which lists it with its inviter, expiry and Revoke
    assert response.status_code == 302
    invitation = Invitation.objects.get()
    assert (invitation.email, invitation.role, invitation.invited_by) == (
        "dana@example.com",
        Role.VIEWER,
        alice,
    )
    page = text(client.get(response.url))
    assert "Invited dana@example.com" in page
    assert "Pending invitations (1)" in page
    assert "invited by alice" in page
    assert invitation.expires_at.strftime("%-d %b %Y") in page
    assert reverse("team_invitation_revoke", args=[team.slug, invitation.pk]) in page
    # and dana got the link
    [email] = mail.outbox
    assert email.to == ["dana@example.com"]
    assert f"/invitations/{invitation.key}/" in email.body


def test_members_who_do_not_manage_see_no_invitations(team, sent, make_member, client_for):
    bob = make_member(team, Role.MEMBER, username="bob")
    page = text(client_for(bob).get(reverse("team_members", args=[team.slug])))
    assert "dana@example.com" not in page
    assert "Invite by email" not in page


def test_inviting_a_member_is_a_form_error(team, alice, make_member, client_for):
    make_member(team, Role.VIEWER, username="victor")
    response = client_for(alice).post(
        reverse("team_invitation_create", args=[team.slug]),
        {"invite-email": "Victor@Example.com", "invite-role": Role.MEMBER},
    )
    assert response.status_code == 400
    assert "victor (victor@example.com) is already in Research." in text(response)
    assert not Invitation.objects.exists()


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"invite-email": "not an address", "invite-role": "member"}, "valid email"),
        ({"invite-email": "x@example.com", "invite-role": "owner"}, "Select a valid choice"),
        ({"invite-email": "", "invite-role": "member"}, "This field is required"),
    ],
)
def test_bad_input_is_a_form_error(team, alice, client_for, payload, error):
    response = client_for(alice).post(reverse("team_invitation_create", args=[team.slug]), payload)
    assert response.status_code == 400
    assert error in text(response)
    assert not Invitation.objects.exists()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MEMBER])
def test_only_managers_invite_and_revoke(team, sent, make_member, client_for, role):
    invitation, _ = sent
    client = client_for(make_member(team, role))
    invited = client.post(
        reverse("team_invitation_create", args=[team.slug]),
        {"invite-email": "eve@example.com", "invite-role": Role.MANAGER},
    )
    revoked = client.post(reverse("team_invitation_revoke", args=[team.slug, invitation.pk]))
    assert (invited.status_code, revoked.status_code) == (403, 403)
    assert "manager role" in text(invited)
    assert list(Invitation.objects.values_list("email", "status")) == [
        ("dana@example.com", "pending")
    ]


def test_another_teams_manager_cannot_see_send_or_revoke_this_teams_invitations(
    team, other_team, sent, make_member, client_for
):
    invitation, _ = sent
    carol = client_for(make_member(other_team, Role.MANAGER, username="carol"))
    # through this team's addresses: no such team, for her
    assert carol.get(reverse("team_members", args=[team.slug])).status_code == 404
    assert (
        carol.post(
            reverse("team_invitation_create", args=[team.slug]),
            {"invite-email": "eve@example.com", "invite-role": Role.MANAGER},
        ).status_code
        == 404
    )
    assert (
        carol.post(reverse("team_invitation_revoke", args=[team.slug, invitation.pk])).status_code
        == 404
    )
    # through her own team's address with this invitation's id: not her team's invitation
    response = carol.post(reverse("team_invitation_revoke", args=[other_team.slug, invitation.pk]))
    assert response.status_code == 404
    # and her own members page lists none of this team's invitations
    assert "dana@example.com" not in text(
        carol.get(reverse("team_members", args=[other_team.slug]))
    )
    assert Invitation.objects.get().status == Invitation.Status.PENDING


def test_a_manager_revokes_and_the_link_stops_working(team, alice, sent, client_for, client):
    invitation, token = sent
    response = client_for(alice).post(
        reverse("team_invitation_revoke", args=[team.slug, invitation.pk]), follow=True
    )
    assert "Revoked the invitation of dana@example.com." in text(response)
    assert "Pending invitations (0)" in text(response)

    opened = client.get(link(invitation, token))
    assert opened.status_code == 410
    assert "This invitation was withdrawn" in text(opened)
    assert client.post(link(invitation, token), _sign_up()).status_code == 410
    assert not User.objects.filter(username="dana").exists()


def test_re_inviting_replaces_the_pending_link(team, alice, sent, client_for, client):
    old, old_token = sent
    client_for(alice).post(
        reverse("team_invitation_create", args=[team.slug]),
        {"invite-email": "dana@example.com", "invite-role": Role.MANAGER},
    )
    assert Invitation.objects.filter(status="pending").count() == 1
    opened = client.get(link(old, old_token))
    assert opened.status_code == 410
    assert "replaced by a newer one" in text(opened)


# --- The link -----------------------------------------------------------------------------------


def _sign_up(**fields):
    return {
        "name": "Dana Scully",
        "username": "dana",
        "password1": PASSWORD,
        "password2": PASSWORD,
        **fields,
    }


def test_a_new_person_sets_a_password_and_lands_in_the_team(team, alice, sent, client):
    invitation, token = sent
    # when dana opens the link
    page = client.get(link(invitation, token))
    assert page.status_code == 200
    assert "Join Research" in text(page)
    assert "alice invites <strong>dana@example.com</strong>" in text(page)

    # and makes her account
    response = client.post(link(invitation, token), _sign_up())

    # then she is logged in, on the team's dashboard, a member, recorded as added by alice
    assert response.status_code == 302
    assert response.url == reverse("team_dashboard", args=[team.slug])
    dana = User.objects.get(username="dana")
    assert dana.email == "dana@example.com"
    assert client.session["_auth_user_id"] == str(dana.pk)
    assert client.get(response.url).status_code == 200
    assert Membership.objects.get(team=team, user=dana).role == Role.MEMBER
    assert MembershipChange.objects.filter(team=team, member=dana, actor=alice).exists()


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"password1": "short", "password2": "short"}, "too short"),
        ({"password1": "password123", "password2": "password123"}, "too common"),
        ({"password1": "dana-scully", "password2": "dana-scully"}, "too similar"),
        ({"password2": "something-else-2026"}, "didn’t match"),
        ({"username": "alice"}, "already exists"),
        ({"username": "no spaces"}, "Enter a valid username"),
    ],
)
def test_a_bad_account_is_a_form_error_and_keeps_the_link(team, alice, sent, client, fields, error):
    invitation, token = sent
    response = client.post(link(invitation, token), _sign_up(**fields))
    assert response.status_code == 400
    assert error in text(response)
    assert Invitation.objects.get().status == Invitation.Status.PENDING
    assert not User.objects.filter(email="dana@example.com").exists()


def test_the_second_use_of_a_link_is_a_clear_page(team, sent, client):
    invitation, token = sent
    client.post(link(invitation, token), _sign_up())
    for other in (client, type(client)()):  # dana, logged in, and anyone else
        again = other.get(link(invitation, token))
        assert again.status_code == 410
        assert "This invitation was already used" in text(again)
        assert other.post(link(invitation, token), _sign_up(username="dana2")).status_code == 410
    assert not User.objects.filter(username="dana2").exists()


def test_an_expired_link_is_a_clear_page(team, sent, client):
    invitation, token = sent
    past = timezone.now() - dt.timedelta(days=7, minutes=1)
    Invitation.objects.filter(pk=invitation.pk).update(
        created_at=past, expires_at=past + dt.timedelta(days=7)
    )
    opened = client.get(link(invitation, token))
    assert opened.status_code == 410
    assert "This invitation has expired" in text(opened)
    assert "Ask alice to invite you again" in text(opened)
    assert client.post(link(invitation, token), _sign_up()).status_code == 410
    assert not User.objects.filter(username="dana").exists()


def test_wrong_links_are_one_uniform_404_that_stores_nothing(team, sent, client):
    invitation, token = sent
    before = (User.objects.count(), Session.objects.count(), list(Invitation.objects.values()))
    wrong_token = client.get(link(invitation, token[:-2] + "xy"))
    wrong_key = client.get(link(type(invitation)(key=uuid.uuid4()), token))
    posted = client.post(link(invitation, "x" * 43), _sign_up())
    hash_as_token = client.get(link(invitation, invitation.token_sha256))

    for response in (wrong_token, wrong_key, posted, hash_as_token):
        assert response.status_code == 404
        assert response.content == wrong_key.content
        assert not response.cookies, "a wrong link set a cookie"
    after = (User.objects.count(), Session.objects.count(), list(Invitation.objects.values()))
    assert after == before


def test_someone_with_an_account_logs_in_then_joins(team, alice, sent, client):
    invitation, token = sent
    dana = UserFactory(username="dana", email="Dana@example.com")
    # when dana, logged out, opens the link: she is asked to log in, and sent back after
    page = client.get(link(invitation, token))
    assert page.status_code == 200
    assert "Log in to accept" in text(page)
    assert f"/accounts/login/?next=%2Finvitations%2F{invitation.key}%2F" in text(page)
    assert not User.objects.filter(username="").exists()

    client.force_login(dana)
    page = client.get(link(invitation, token))
    assert "Join Research" in text(page)
    assert not Membership.objects.filter(team=team, user=dana).exists(), "a GET joined"

    # when she confirms
    response = client.post(link(invitation, token))
    assert response.status_code == 302
    assert response.url == reverse("team_dashboard", args=[team.slug])
    assert Membership.objects.get(team=team, user=dana).role == Role.MEMBER
    assert MembershipChange.objects.filter(team=team, member=dana, action="added").count() == 1


def test_signing_up_is_refused_when_the_address_has_an_account(team, sent, client):
    invitation, token = sent
    UserFactory(username="dana", email="dana@example.com")
    response = client.post(link(invitation, token), _sign_up(username="dana-two"))
    assert response.status_code == 200
    assert "Log in to accept" in text(response)
    assert not User.objects.filter(username="dana-two").exists()


def test_another_account_cannot_accept(team, sent, make_member, other_team, client_for):
    invitation, token = sent
    carol = client_for(make_member(other_team, Role.MANAGER, username="carol"))
    page = carol.get(link(invitation, token))
    assert page.status_code == 403
    assert "This invitation is for another address" in text(page)
    assert carol.post(link(invitation, token)).status_code == 403
    assert not Membership.objects.filter(team=team, user__username="carol").exists()
    assert Invitation.objects.get().status == Invitation.Status.PENDING


def test_someone_added_meanwhile_uses_up_the_link_and_keeps_their_role(
    team, alice, sent, client_for
):
    invitation, token = sent
    dana = UserFactory(username="dana", email="dana@example.com")
    services.membership_add(team=team, user=dana, role=Role.MANAGER, actor=alice)
    response = client_for(dana).post(link(invitation, token))
    assert response.status_code == 302
    assert Membership.objects.get(team=team, user=dana).role == Role.MANAGER
    assert Invitation.objects.get().status == Invitation.Status.ACCEPTED


def test_the_admin_lists_invitations_read_only_without_the_hash(team, sent, client):
    invitation, token = sent
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    listing = client.get(reverse("admin:portal_invitation_changelist"))
    detail = client.get(reverse("admin:portal_invitation_change", args=[invitation.pk]))
    assert listing.status_code == detail.status_code == 200
    assert "dana@example.com" in text(listing)
    for page in (listing, detail):
        assert invitation.token_sha256 not in text(page)
        assert token not in text(page)
    assert 'name="_save"' not in text(detail)
    assert client.get(reverse("admin:portal_invitation_add")).status_code == 403


def test_anonymous_people_are_sent_to_log_in_to_invite_or_revoke(team, sent, client):
    invitation, _ = sent
    for url in (
        reverse("team_invitation_create", args=[team.slug]),
        reverse("team_invitation_revoke", args=[team.slug, invitation.pk]),
    ):
        response = client.post(url, {"invite-email": "eve@example.com", "invite-role": "member"})
        assert response.status_code == 302
        assert response.url.startswith("/accounts/login/")
    assert list(Invitation.objects.values_list("email", "status")) == [
        ("dana@example.com", "pending")
    ]


@pytest.mark.django_db(transaction=True)
def test_a_mail_server_failure_is_told_to_the_manager(team, alice, client_for, monkeypatch):
    # given a mail server that refuses (the request commits for real here, so the email is
    # sent as in production: after the commit, within the request)
    def refuse(self, *args, **kwargs):
        raise OSError("connection refused")

    monkeypatch.setattr("django.core.mail.EmailMultiAlternatives.send", refuse)
    response = client_for(alice).post(
        reverse("team_invitation_create", args=[team.slug]),
        {"invite-email": "dana@example.com", "invite-role": "member"},
        follow=True,
    )
    # then alice is told, and the invitation waits to be sent again
    assert response.status_code == 200
    assert "the email could not be sent" in text(response)
    assert "Pending invitations (1)" in text(response)
