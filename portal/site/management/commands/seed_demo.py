"""Create the demo organisation: the people and teams the README and the acceptance tests use.

Idempotent: what exists is left as it is (a changed password stays changed), what is missing is
created. Running it twice changes nothing.
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from portal.teams.models import Membership, Role, Team
from portal.teams.services import membership_add

DEMO_PASSWORD = "demo-pass-2026"  # noqa: S105 — the documented demo login

TEAMS = {"research": "Research", "ops": "Ops"}

# username -> (is superuser, [(team slug, role)])
PEOPLE = {
    "admin": (True, []),
    "alice": (False, [("research", Role.MANAGER)]),
    "bob": (False, [("research", Role.MEMBER)]),
    "carol": (False, [("ops", Role.MEMBER)]),
    "victor": (False, [("research", Role.VIEWER)]),
}


class Command(BaseCommand):
    help = "Create the demo users and teams (idempotent)."

    def handle(self, *args, **options):
        User = get_user_model()
        created = []
        with transaction.atomic():
            teams = {}
            for slug, name in TEAMS.items():
                teams[slug], was_created = Team.objects.get_or_create(
                    slug=slug, defaults={"name": name}
                )
                if was_created:
                    created.append(f"team {slug}")
            admin = alice = None
            for username, (is_superuser, memberships) in PEOPLE.items():
                user = User.objects.filter(username=username).first()
                if user is None:
                    user = User.objects.create_user(
                        username=username,
                        email=f"{username}@example.com",
                        password=DEMO_PASSWORD,
                        is_staff=is_superuser,
                        is_superuser=is_superuser,
                    )
                    created.append(f"user {username}")
                if username == "admin":
                    admin = user
                if username == "alice":
                    alice = user
                for slug, role in memberships:
                    if not Membership.objects.filter(team=teams[slug], user=user).exists():
                        membership_add(team=teams[slug], user=user, role=role, actor=admin)
                        created.append(f"{username} as {role} of {slug}")
            created += self.seed_money(teams=teams, admin=admin)
            created += self.seed_endpoint(team=teams["research"], manager=alice)
        if created:
            self.stdout.write(self.style.SUCCESS("Created: " + ", ".join(created)))
        else:
            self.stdout.write("Demo data already in place; nothing changed.")

    def seed_money(self, *, teams, admin) -> list[str]:
        """Top up research and ops with 5000 cents each, and create the Billing admins group.

        Fixed idempotency keys make a second run find the first top-ups instead of adding more.
        """
        from django.contrib.auth.models import Group, Permission

        from billing.services import wallet_top_up

        created = []
        group, was_created = Group.objects.get_or_create(name="Billing admins")
        permission = Permission.objects.get(
            content_type__app_label="billing", codename="manage_wallets"
        )
        if was_created or not group.permissions.filter(pk=permission.pk).exists():
            group.permissions.add(permission)
            created.append("group Billing admins")
        for slug in ("research", "ops"):
            _transfer, topped_up = wallet_top_up(
                team=teams[slug],
                amount_cents=5000,
                reference="Demo credit",
                actor="command:seed_demo",
                idempotency_key=f"seed_demo:{slug}",
            )
            if topped_up:
                created.append(f"5000 cents for {slug}")
        return created

    def seed_endpoint(self, *, team, manager) -> list[str]:
        """Give research an endpoint at the simulator's demo receiver, so `make run` shows
        signed deliveries with nothing to set up. Only where local URLs are allowed (the
        simulator is on 127.0.0.1), and only once: one the team already has is left alone."""
        from django.conf import settings

        from portal.notifications.models import EventType, WebhookEndpoint
        from portal.notifications.services import endpoint_create

        url = settings.COASTY_BASE_URL.rstrip("/") + "/_sim/webhook-receiver"
        if not settings.NOTIFY_ALLOW_PRIVATE_URLS or not url.startswith(
            ("http://127.0.0.1", "http://localhost")
        ):
            return []
        if WebhookEndpoint.objects.filter(team=team, url=url).exists():
            return []
        endpoint_create(
            team=team,
            user=manager,
            url=url,
            events=[value for value in EventType.values if value.startswith(("run.", "wallet."))],
            description="Demo: the simulator's receiver (GET it to see what arrived)",
        )
        return [f"a demo endpoint for {team.slug}"]
