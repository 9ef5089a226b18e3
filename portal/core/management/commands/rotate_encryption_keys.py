from django.core.management.base import BaseCommand, CommandError

from portal.core.services import encrypted_secrets_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (webhook secrets, notification endpoint secrets) with "
        "the newest FIELD_ENCRYPTION_KEYS key. Safe to repeat. Run it after putting a new key "
        "first in FIELD_ENCRYPTION_KEYS; drop the old keys once it reports nothing unreadable."
    )

    def handle(self, *args, **options):
        report = encrypted_secrets_rotate()
        self.stdout.write(
            f"Re-encrypted {report.rotated} secret(s); {report.current} already under the "
            f"newest key; {len(report.unreadable)} unreadable."
        )
        if report.unreadable:
            for where in report.unreadable[:20]:
                self.stderr.write(f"  unreadable with the configured keys: {where}")
            raise CommandError(
                "Some secrets cannot be decrypted with any configured key (left as they were)."
            )
