from django.core.management.base import BaseCommand

from billing.tasks import reconcile_billing


class Command(BaseCommand):
    help = "Re-check recently finished holds (and open discrepancies) against Coasty's figures."

    def handle(self, *args, **options):
        self.stdout.write(reconcile_billing())
