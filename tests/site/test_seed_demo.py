"""manage.py seed_demo: the demo's people, teams and money, made once however often it runs."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command

from billing.models import Account, AccountKind, Transfer, TransferKind
from portal.teams.models import Membership, MembershipChange, Team

pytestmark = pytest.mark.django_db


def test_seed_demo_is_idempotent_and_matches_the_contract():
    call_command("seed_demo")
    snapshot = _snapshot()
    call_command("seed_demo")
    assert _snapshot() == snapshot

    User = get_user_model()
    assert User.objects.get(username="admin").is_superuser
    roles = dict(
        Membership.objects.values_list("user__username", "role").order_by("user__username")
    )
    assert roles == {"alice": "manager", "bob": "member", "carol": "member", "victor": "viewer"}
    assert set(
        Membership.objects.filter(user__username="carol").values_list("team__slug", flat=True)
    ) == {"ops"}
    for name in ["admin", "alice", "bob", "carol", "victor"]:
        assert User.objects.get(username=name).check_password("demo-pass-2026")


def _snapshot():
    User = get_user_model()
    return (
        list(User.objects.order_by("pk").values_list("pk", "username", "password")),
        list(Team.objects.order_by("pk").values_list("pk", "slug")),
        list(Membership.objects.order_by("pk").values_list("pk", "team_id", "user_id", "role")),
        MembershipChange.objects.count(),
    )


def test_seed_demo_tops_up_the_demo_teams_once():
    # when seed_demo runs twice
    call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo", stdout=StringIO())
    # then research and ops have 5000 cents each, from one top-up each by the command
    for slug in ("research", "ops"):
        team = Team.objects.get(slug=slug)
        assert Account.objects.get(team=team, kind=AccountKind.AVAILABLE).balance_cents == 5000
    top_ups = Transfer.objects.filter(kind=TransferKind.TOP_UP)
    assert top_ups.count() == 2
    assert set(top_ups.values_list("caused_by", flat=True)) == {"command:seed_demo"}
    # and a Billing admins group carries the permission
    group = Group.objects.get(name="Billing admins")
    assert group.permissions.filter(codename="manage_wallets").exists()
