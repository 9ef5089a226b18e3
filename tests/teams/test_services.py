"""The membership services: a race with another manager is a refusal, not a crash."""

import pytest

from portal.teams.models import Membership, MembershipChange, Role
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_adding_someone_another_manager_adds_at_that_moment_is_refused_not_a_crash(
    team, make_member, monkeypatch
):
    from django.core.exceptions import ValidationError
    from django.db import transaction
    from django.db.models import QuerySet

    from portal.teams import services

    # given another manager's add of alice, committed just after bob's "is she a member yet?"
    # check looked (so the check did not see it)
    bob = make_member(team, Role.MANAGER, username="bob")
    alice = UserFactory(username="alice")
    Membership.objects.create(team=team, user=alice, role=Role.VIEWER)
    real_exists = QuerySet.exists
    raced = []

    def check_then_lose_the_race(queryset):
        if queryset.model is Membership and not raced:
            raced.append(True)
            return False
        return real_exists(queryset)

    monkeypatch.setattr(QuerySet, "exists", check_then_lose_the_race)

    # when bob's add runs inside a transaction that carries on afterwards
    with transaction.atomic():
        with pytest.raises(ValidationError, match="already a member"):
            services.membership_add(team=team, user=alice, role=Role.MEMBER, actor=bob)

        # then he is told she is already a member, and the transaction is still usable
        assert Membership.objects.get(team=team, user=alice).role == Role.VIEWER
    assert raced
    assert not MembershipChange.objects.filter(actor=bob).exists()
