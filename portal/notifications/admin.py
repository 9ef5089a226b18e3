from django.contrib import admin

from portal.core.admin import ReadOnlyAdmin
from portal.notifications.models import (
    DeliveryAttempt,
    EmailPreference,
    Notification,
    OutboxEvent,
    WebhookDelivery,
    WebhookEndpoint,
)


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    list_display = ["type", "team", "subject", "created_at", "dispatched_at"]
    list_filter = ["type", ("dispatched_at", admin.EmptyFieldListFilter)]
    search_fields = ["key", "subject", "team__slug"]
    list_select_related = ["team"]


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["user", "type", "text", "created_at", "read_at", "email_sent_at"]
    list_filter = ["type"]
    search_fields = ["user__username", "text"]
    list_select_related = ["user"]


@admin.register(EmailPreference)
class EmailPreferenceAdmin(ReadOnlyAdmin):
    list_display = ["user", "event_type", "enabled"]
    search_fields = ["user__username"]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdmin):
    """Managers manage endpoints on the team's pages; here they are inspected (never the
    secret)."""

    list_display = ["team", "url", "format", "enabled", "failed_streak", "created_at"]
    list_filter = ["enabled", "format"]
    search_fields = ["team__slug", "url"]
    exclude = ["secret_encrypted", "previous_secret_encrypted"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["webhook_id", "endpoint", "event_type", "status", "attempts", "created_at"]
    list_filter = ["status", "event_type"]
    search_fields = ["webhook_id"]


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(ReadOnlyAdmin):
    list_display = ["delivery", "number", "started_at", "status_code", "error"]
