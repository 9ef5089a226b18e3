from django.contrib import admin

from schedules.models import Schedule, ScheduleLaunch


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "team",
        "cron",
        "timezone",
        "enabled",
        "next_occurrence_at",
        "created_by",
    )
    list_filter = ("enabled", "catch_up")
    search_fields = ("name", "team__slug", "task")
    raw_id_fields = ("team", "created_by")
    readonly_fields = (
        "next_occurrence_at",
        "last_occurrence_at",
        "enabled_at",
        "created_at",
        "updated_at",
    )


@admin.register(ScheduleLaunch)
class ScheduleLaunchAdmin(admin.ModelAdmin):
    """The history of occurrences: read-only, like every record of what happened."""

    list_display = ("schedule", "occurrence", "outcome", "run", "recorded_at")
    list_filter = ("outcome",)
    raw_id_fields = ("schedule", "run")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
