from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from portal.core.services import api_token_create


class Command(BaseCommand):
    help = "Make a personal API token for a user and print it (once: only its hash is kept)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="made with manage.py", help="What will use it.")

    def handle(self, *args, username, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user called {username!r}.")
        if not user.is_active:
            raise CommandError(f"{username} is disabled; a token of theirs would not work.")
        try:
            row, token = api_token_create(user=user, name=name)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stderr.write(
            f"API token {row.prefix}… ({row.name!r}) made for {username}. It is printed once; "
            "store it now. Revoke it on the Account page."
        )
        # The token alone on stdout, so scripts can capture it: TOKEN=$(manage.py create_api_token …)
        self.stdout.write(token)
