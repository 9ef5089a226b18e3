from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Teams and people"

    def ready(self) -> None:
        # The OpenAPI extension (bearer scheme) registers itself when its module is imported.
        import portal.rest.schema  # noqa: F401
        from portal.schedules import ensure_schedules

        post_migrate.connect(ensure_schedules, sender=self)
