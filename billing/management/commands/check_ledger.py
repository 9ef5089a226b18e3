from django.core.management.base import BaseCommand

from billing.invariants import ledger_problems, ledger_summary


class Command(BaseCommand):
    help = "Check the ledger's invariants; exit 1 naming every broken one."

    def handle(self, *args, **options):
        problems = ledger_problems()
        if problems:
            for problem in problems:
                self.stderr.write(self.style.ERROR(f"BROKEN: {problem}"))
            self.stderr.write(f"{len(problems)} broken invariant(s).")
            raise SystemExit(1)
        summary = ledger_summary()
        self.stdout.write(
            self.style.SUCCESS(
                "Ledger OK: {accounts} accounts summing to {sum_of_balances} cents, "
                "{transfers} transfers, {holds} holds ({open_holds} open).".format(**summary)
            )
        )
