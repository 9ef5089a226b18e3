"""`manage.py create_api_token <username> [--scope S ...] [--expires-days N]`.

It lives with the site (not the core) because its default scopes come from the person's team
roles (portal.teams.access.token_scopes_allowed), which the core may not know about.
"""

import datetime as dt

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from portal.core.models import ALL_TOKEN_SCOPES
from portal.core.services import api_token_create
from portal.teams.access import token_scopes_allowed

EXPIRES_DAYS_MAX = 3650


class Command(BaseCommand):
    help = "Make a personal API token for a user and print it (once: only its hash is kept)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="made with manage.py", help="What will use it.")
        parser.add_argument(
            "--scope",
            action="append",
            choices=ALL_TOKEN_SCOPES,
            dest="scopes",
            help="What the token may do; repeat for several. Default: every scope the "
            "user's roles allow.",
        )
        parser.add_argument(
            "--expires-days",
            type=int,
            default=None,
            help="Expire after this many days (default: never, until revoked).",
        )

    def handle(self, *args, username, name, scopes, expires_days, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user called {username!r}.")
        if not user.is_active:
            raise CommandError(f"{username} is disabled; a token of theirs would not work.")
        if expires_days is not None and not 1 <= expires_days <= EXPIRES_DAYS_MAX:
            raise CommandError(f"--expires-days must be between 1 and {EXPIRES_DAYS_MAX}.")
        if scopes is None:
            scopes = token_scopes_allowed(user)
        expires_at = timezone.now() + dt.timedelta(days=expires_days) if expires_days else None
        try:
            row, token = api_token_create(
                user=user, name=name, scopes=scopes, expires_at=expires_at
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        until = f"until {row.expires_at:%Y-%m-%d %H:%M} UTC" if row.expires_at else "until revoked"
        self.stderr.write(
            f"API token {row.prefix}… ({row.name!r}) made for {username}, scopes "
            f"{' '.join(row.scopes)}, {until}. It is printed once; store it now. Revoke it on "
            "the Account page."
        )
        # The token alone on stdout, so scripts can capture it: TOKEN=$(manage.py create_api_token …)
        self.stdout.write(token)
