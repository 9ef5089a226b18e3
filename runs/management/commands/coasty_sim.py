"""manage.py coasty_sim: run the Coasty API simulator (default http://127.0.0.1:8765).

Same options as ``python -m runs.simulator``; see runs/simulator/README.md.
"""

from django.core.management.base import BaseCommand, CommandError

from runs.simulator.cli import add_arguments, config_from_options, serve


class Command(BaseCommand):
    help = "Run the local Coasty API simulator (runs, idempotency, SSE, webhooks, fault injection)."

    def add_arguments(self, parser):
        add_arguments(parser)

    def handle(self, *args, **options):
        try:
            config = config_from_options(options)
        except (ValueError, TypeError) as exc:
            raise CommandError(str(exc)) from exc
        serve(
            config,
            options["host"],
            options["port"],
            log_level=options["log_level"],
            out=self.stdout,
        )
