"""The teams admin: an operator cannot give a team an address the portal uses either."""

import pytest
from django.urls import reverse

from portal.teams.models import Team
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_admin_refuses_an_address_the_portal_uses(team, client):
    # given an operator in the admin
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))

    # when they add a team called "New", and rename an existing team's address to "new"
    added = client.post(
        reverse("admin:portal_team_add"),
        {
            "name": "New",
            "slug": "new",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    changed = client.post(
        reverse("admin:portal_team_change", args=[team.pk]),
        {
            "name": "Research",
            "slug": "new",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )

    # then both forms come back with the reason, and nothing changed
    for response in (added, changed):
        assert response.status_code == 200
        assert "“new” is used by the portal" in response.content.decode()
    assert not Team.objects.filter(slug="new").exists()
