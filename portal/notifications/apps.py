from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "portal.notifications"
    label = "notifications"
    verbose_name = "Notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from portal.core.periodic import Periodic, register_periodic
        from portal.notifications import tasks

        register_periodic(
            self,
            [Periodic(name="notifications: sweep", task=tasks.notifications_sweep, minutes=1)],
        )
