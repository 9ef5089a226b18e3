from django.contrib import admin

from portal.core.admin import ReadOnlyAdmin
from runs.models import (
    FollowerSlot,
    Run,
    RunActivity,
    RunEvent,
    WebhookDelivery,
    WebhookRefusalCount,
)


class RunEventInline(admin.TabularInline):
    model = RunEvent
    fields = ("seq", "type", "data", "created_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ["-seq"]
    show_change_link = True


class WebhookRefusalCountInline(admin.TabularInline):
    """Refused deliveries to this run's webhook URL, counted per verdict."""

    model = WebhookRefusalCount
    fields = ("verdict", "count", "bytes_refused", "first_at", "last_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    verbose_name_plural = "refused webhook deliveries (counted; samples under Webhook deliveries)"


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    inlines = [WebhookRefusalCountInline]
    list_display = [
        "id",
        "team",
        "status",
        "steps_completed",
        "max_steps",
        "charged_cents",
        "held_cents",
        "created_by",
        "created_at",
    ]
    list_filter = ["status", "team", "cua_version"]
    search_fields = ["=id", "=upstream_id", "=idempotency_key", "=orphan_upstream_id", "task"]
    date_hierarchy = "created_at"
    list_select_related = ["team", "created_by"]
    exclude = ["webhook_secret_encrypted"]  # never shown, not even encrypted
    readonly_fields = [
        "id",
        "team",
        "created_by",
        "status",
        "pending_action",
        "machine_id",
        "task",
        "cua_version",
        "max_steps",
        "deadline_seconds",
        "on_awaiting_human",
        "instructions",
        "system_prompt",
        "webhook_url",
        "price_cents",
        "held_cents",
        "charged_cents",
        "idempotency_key",
        "upstream_id",
        "submit_attempts",
        "submit_next_at",
        "status_seq",
        "status_at",
        "last_seq",
        "steps_completed",
        "awaiting_human_reason",
        "resume_note",
        "result",
        "error",
        "follow_owner",
        "follow_lease_until",
        "last_event_at",
        "upstream_steps_completed",
        "upstream_credits_charged",
        "settled_at",
        "created_at",
        "accepted_at",
        "finished_at",
        "launch_token",
        "submit_body",
        "test_mode",
        "upstream_missing_since",
        "lost_upstream_at",
        "orphan_upstream_id",
        "orphan_cancelled_at",
    ]


@admin.register(RunEvent)
class RunEventAdmin(ReadOnlyAdmin):
    list_display = ["run", "seq", "type", "actor", "created_at"]
    list_filter = ["type"]
    search_fields = ["=run__id", "=run__upstream_id"]
    raw_id_fields = ["run"]


@admin.register(RunActivity)
class RunActivityAdmin(ReadOnlyAdmin):
    list_display = ["run", "after_seq", "kind", "actor", "created_at"]
    list_filter = ["kind"]
    search_fields = ["=run__id"]
    raw_id_fields = ["run", "actor"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "received_at",
        "run",
        "event",
        "verdict",
        "body_size",
        "client_address",
        "result",
    ]
    list_filter = ["verdict", "event"]
    search_fields = ["=run__id", "=run__upstream_id", "=body_sha256"]
    raw_id_fields = ["run"]
    readonly_fields = [
        "run",
        "received_at",
        "headers",
        "body_text",
        "body_sha256",
        "verdict",
        "event",
        "dedupe_key",
        "result",
        "body_size",
        "client_address",
    ]
    exclude = ["body"]

    @admin.display(description="Body")
    def body_text(self, obj):
        return bytes(obj.body).decode("utf-8", errors="replace")


@admin.register(WebhookRefusalCount)
class WebhookRefusalCountAdmin(ReadOnlyAdmin):
    """Every refused delivery, counted per run and verdict (only a few are sampled as rows of
    Webhook deliveries): where forgeries, stale replays or floods are aimed."""

    list_display = ["run", "verdict", "count", "bytes_refused", "first_at", "last_at"]
    list_filter = ["verdict"]
    search_fields = ["=run__id", "=run__upstream_id"]
    raw_id_fields = ["run"]
    ordering = ["-last_at"]


@admin.register(FollowerSlot)
class FollowerSlotAdmin(ReadOnlyAdmin):
    list_display = ["number", "owner", "lease_until"]
