"""Teams and roles: every team page is scoped by membership and role."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from portal.teams.models import Membership, MembershipChange, Role, Team
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

# (url name, method, needed role) for every team-scoped view in portal.
TEAM_VIEWS = [
    ("team_dashboard", "get", Role.VIEWER),
    ("team_members", "get", Role.VIEWER),
    ("team_member_add", "post", Role.MANAGER),
    ("team_member_role", "post", Role.MANAGER),
    ("team_member_remove", "post", Role.MANAGER),
]


def _url(name, team, membership):
    if name in ("team_member_role", "team_member_remove"):
        return reverse(name, args=[team.slug, membership.pk])
    return reverse(name, args=[team.slug])


def _payload(name, target):
    if name == "team_member_add":
        return {"person": target.user.username, "role": Role.VIEWER}
    if name == "team_member_role":
        return {"role": Role.VIEWER}
    return {}


@pytest.mark.parametrize(("name", "method", "needed"), TEAM_VIEWS)
@pytest.mark.parametrize("role", [None, Role.VIEWER, Role.MEMBER, Role.MANAGER])
def test_role_matrix(name, method, needed, role, team, other_team, make_member, client_for):
    # given a team with a manager, a member to act on, and a caller with `role` (None: outsider)
    make_member(team, Role.MANAGER, username="boss")
    target = MembershipFactory(team=team, role=Role.MEMBER)
    if name == "team_member_add":
        target = MembershipFactory(team=other_team, role=Role.MEMBER)  # someone not yet in team
    caller = make_member(team, role) if role else make_member(other_team, Role.MANAGER)
    before = list(Membership.objects.order_by("pk").values_list("pk", "team_id", "role"))

    # when they open or use the view
    response = getattr(client_for(caller), method)(_url(name, team, target), _payload(name, target))

    # then outsiders get 404, too-low roles 403 with a message, the rest succeed
    if role is None:
        assert response.status_code == 404
    elif Membership(role=role).has_role(needed):
        # a page, or the change made (target's role in team; None: not in it) and a redirect
        assert response.status_code == (302 if method == "post" else 200)
        role_now = Membership.objects.filter(team=team, user=target.user).values_list("role")
        assert role_now.first() == {
            "team_member_add": (Role.VIEWER,),
            "team_member_role": (Role.VIEWER,),
            "team_member_remove": None,
        }.get(name, (Role.MEMBER,))
    else:
        assert response.status_code == 403
        assert "role" in response.content.decode()
    if role is None or not Membership(role=role).has_role(needed):
        after = list(Membership.objects.order_by("pk").values_list("pk", "team_id", "role"))
        assert after == before, "a refused request changed memberships"


def test_anonymous_is_sent_to_login(client, team):
    response = client.get(reverse("team_dashboard", args=[team.slug]))
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


def test_manager_adds_changes_and_removes_and_it_is_recorded(team, make_member, client_for):
    # given a manager and a registered person outside the team
    alice = make_member(team, Role.MANAGER, username="alice")
    dave = UserFactory(username="dave", email="dave@example.com")
    client = client_for(alice)

    # when alice adds dave by email, makes him a manager, then removes him
    client.post(
        reverse("team_member_add", args=[team.slug]),
        {"person": "DAVE@example.com", "role": "member"},
    )
    membership = Membership.objects.get(team=team, user=dave)
    client.post(reverse("team_member_role", args=[team.slug, membership.pk]), {"role": "manager"})
    membership.refresh_from_db()
    assert membership.role == Role.MANAGER
    client.post(reverse("team_member_remove", args=[team.slug, membership.pk]))

    # then dave is out, and the team page shows who did what
    assert not Membership.objects.filter(team=team, user=dave).exists()
    changes = list(
        MembershipChange.objects.filter(team=team)
        .order_by("id")
        .values_list("actor__username", "action", "member_username", "old_role", "new_role")
    )
    assert changes == [
        ("alice", "added", "dave", "", "member"),
        ("alice", "role_changed", "dave", "member", "manager"),
        ("alice", "removed", "dave", "manager", ""),
    ]
    page = client.get(reverse("team_members", args=[team.slug])).content.decode()
    assert "changed the role of" in page and "dave" in page


def test_add_member_errors_are_inline_and_change_nothing(team, make_member, client_for):
    alice = make_member(team, Role.MANAGER, username="alice")
    client = client_for(alice)
    count = Membership.objects.count()

    unknown = client.post(
        reverse("team_member_add", args=[team.slug]), {"person": "nobody", "role": "member"}
    )
    twice = client.post(
        reverse("team_member_add", args=[team.slug]), {"person": "alice", "role": "member"}
    )
    bad_role = client.post(
        reverse("team_member_add", args=[team.slug]), {"person": "alice", "role": "owner"}
    )

    assert unknown.status_code == 400 and "No one is registered as" in unknown.content.decode()
    assert twice.status_code == 400 and "already in" in twice.content.decode()
    assert bad_role.status_code == 400 and "Select a valid choice" in bad_role.content.decode()
    assert Membership.objects.count() == count


def test_last_manager_cannot_leave_or_be_demoted(team, make_member, client_for):
    alice = make_member(team, Role.MANAGER, username="alice")
    membership = Membership.objects.get(user=alice)
    client = client_for(alice)

    demote = client.post(
        reverse("team_member_role", args=[team.slug, membership.pk]),
        {"role": "viewer"},
        follow=True,
    )
    leave = client.post(reverse("team_member_remove", args=[team.slug, membership.pk]), follow=True)

    assert "at least one manager" in demote.content.decode()
    assert "at least one manager" in leave.content.decode()
    membership.refresh_from_db()
    assert membership.role == Role.MANAGER


def test_membership_of_another_team_is_404(team, other_team, make_member, client_for):
    # a manager of research cannot touch an ops membership through research's URL
    alice = make_member(team, Role.MANAGER)
    ops_membership = MembershipFactory(team=other_team)
    response = client_for(alice).post(
        reverse("team_member_remove", args=[team.slug, ops_membership.pk])
    )
    assert response.status_code == 404
    assert Membership.objects.filter(pk=ops_membership.pk).exists()


def test_people_see_only_their_teams(team, other_team, make_member, client_for):
    bob = make_member(team, Role.MEMBER)
    page = client_for(bob).get(reverse("team_list")).content.decode()
    assert "Research" in page and "Ops" not in page
    assert client_for(bob).get(reverse("home")).url == reverse("team_dashboard", args=["research"])


def test_team_create_needs_permission_and_makes_creator_manager(make_member, team, client_for):
    bob = make_member(team, Role.MANAGER)
    assert client_for(bob).get(reverse("team_create")).status_code == 403

    bob.user_permissions.add(Permission.objects.get(codename="add_team"))
    response = client_for(bob).post(reverse("team_create"), {"name": "Growth Lab", "slug": ""})

    created = Team.objects.get(slug="growth-lab")
    assert response.url == reverse("team_members", args=["growth-lab"])
    assert Membership.objects.get(team=created, user=bob).role == Role.MANAGER
    duplicate = client_for(bob).post(
        reverse("team_create"), {"name": "Growth Lab", "slug": "growth-lab"}
    )
    assert duplicate.status_code == 200 and "already exists" in duplicate.content.decode()
    assert Team.objects.filter(slug="growth-lab").count() == 1


def test_team_switcher_lists_own_teams(team, other_team, make_member, client_for):
    bob = make_member(team, Role.MEMBER)
    MembershipFactory(team=other_team, user=bob, role=Role.VIEWER)
    page = client_for(bob).get(reverse("team_dashboard", args=["ops"])).content.decode()
    assert 'id="team-switch"' in page
    assert '<option value="ops" selected>Ops</option>' in page
    assert '<option value="research" >Research</option>' in page


def test_team_switcher_goes_to_the_chosen_team_without_script(
    team, other_team, make_member, client_for
):
    # given bob in research only
    bob = make_member(team, Role.MEMBER)
    client = client_for(bob)

    # when the switcher's form is sent (its Go button, or app.js on a choice)
    chosen = client.get(reverse("team_list"), {"team": "research"})
    foreign = client.get(reverse("team_list"), {"team": "ops"})
    everything = client.get(reverse("team_list"), {"team": ""})

    # then his team opens; a team he is not in, or "All my teams", shows his list
    assert chosen.status_code == 302 and chosen.url == reverse("team_dashboard", args=["research"])
    assert foreign.status_code == 200 and everything.status_code == 200


@pytest.mark.parametrize("form", [{"name": "New", "slug": ""}, {"name": "Fresh", "slug": "new"}])
def test_team_create_refuses_an_address_the_portal_uses(form, make_member, team, client_for):
    # given someone allowed to create teams
    bob = make_member(team, Role.MANAGER)
    bob.user_permissions.add(Permission.objects.get(codename="add_team"))

    # when they create a team whose address would be /teams/new/
    response = client_for(bob).post(reverse("team_create"), form)

    # then the form says why, and no team is made (its dashboard would be the create page)
    assert response.status_code == 200
    assert "“new” is used by the portal" in response.content.decode()
    assert not Team.objects.filter(slug="new").exists()


@pytest.fixture
def creator(make_member, team):
    bob = make_member(team, Role.MANAGER)
    bob.user_permissions.add(Permission.objects.get(codename="add_team"))
    return bob


def test_a_long_name_gets_an_address_cut_to_fit(creator, client_for):
    # given a name whose address would be longer than 50 characters, with a dash at the cut
    name = "a" * 49 + " quarterly growth experiments"

    # when a team is created with it and no address
    response = client_for(creator).post(reverse("team_create"), {"name": name, "slug": ""})

    # then the address is the name's, cut to 50 characters, without a dash left at the end
    created = Team.objects.get(name=name)
    assert created.slug == "a" * 49
    assert response.url == reverse("team_members", args=[created.slug])


def test_an_address_derived_from_the_name_that_is_taken_is_a_form_error(creator, client_for):
    # given a team whose address is a long name cut to fit
    long_name = "Quarterly growth experiments for the north-east region"
    client_for(creator).post(reverse("team_create"), {"name": long_name, "slug": ""})
    assert Team.objects.count() == 2  # research and the new one

    # when another team's name leads to a taken address: same beginning, or the same words
    same_start = client_for(creator).post(
        reverse("team_create"), {"name": long_name + " and south", "slug": ""}
    )
    same_words = client_for(creator).post(reverse("team_create"), {"name": "RESEARCH", "slug": ""})

    # then the form says the address exists, and no team is made
    for response in (same_start, same_words):
        assert response.status_code == 200
        assert "already exists" in response.content.decode()
    assert Team.objects.count() == 2


def test_the_last_managers_remove_is_disabled_with_the_reason(team, make_member, client_for):
    # given a team with one manager and one member
    alice = make_member(team, "manager", username="alice")
    bob = make_member(team, "member", username="bob")
    url = f"/teams/{team.slug}/members/"

    page = client_for(alice).get(url).content.decode()

    # then alice's Remove is disabled and says why; bob's is offered
    assert "The team's only manager: make someone else a manager first." in page
    assert re.search(r'<button[^>]*disabled[^>]*>Remove<span class="visually-hidden"> alice', page)
    assert f"/members/{bob.memberships.get().pk}/remove/" in page

    # when bob becomes a manager too, then both may be removed
    bob.memberships.update(role="manager")
    page = client_for(alice).get(url).content.decode()
    assert "only manager" not in page
