from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Runs"

    def ready(self) -> None:
        from portal.core.crypto import register_encrypted_field
        from portal.core.periodic import Periodic, register_periodic
        from runs import tasks
        from runs.models import Run

        register_encrypted_field(Run, "webhook_secret_encrypted")

        register_periodic(
            self, [Periodic(name="runs: housekeeping", task=tasks.housekeeping, minutes=1)]
        )
