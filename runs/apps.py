from django.apps import AppConfig
from django.db.models.signals import post_migrate


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Runs"

    def ready(self) -> None:
        from runs.schedules import ensure_schedules

        post_migrate.connect(ensure_schedules, sender=self)
