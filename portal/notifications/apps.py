from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "portal.notifications"
    label = "notifications"
    verbose_name = "Notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from portal.core.crypto import register_encrypted_field
        from portal.core.periodic import Periodic, register_periodic
        from portal.notifications import tasks
        from portal.notifications.models import WebhookEndpoint

        # Team endpoints' signing secrets (and the previous one, during a rotation):
        # manage.py rotate_encryption_keys re-encrypts them with the newest key.
        register_encrypted_field(WebhookEndpoint, "secret_encrypted")
        register_encrypted_field(WebhookEndpoint, "previous_secret_encrypted")

        register_periodic(
            self,
            [Periodic(name="notifications: sweep", task=tasks.notifications_sweep, minutes=1)],
        )
