from django.contrib import admin

from portal.core.models import ApiToken, IdempotentRequest
from portal.core.services import api_token_revoke


class ReadOnlyAdmin(admin.ModelAdmin):
    """History in the admin is for reading: operators search and inspect, services write.

    Used for every append-only record (ledger rows, run events, webhook deliveries, audit
    trails): no add, change or delete, and no COUNT(*) over a large table on each list page.
    """

    show_full_result_count = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Tokens are made by their owners; here they are listed, and can be revoked in bulk."""

    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["user__username", "name", "prefix"]
    list_select_related = ["user"]
    fields = ("user", "name", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields  # never the hash: nothing here helps anyone rebuild a token
    actions = ["revoke"]

    def has_change_permission(self, request, obj=None):
        return obj is None  # the list (and its action), not the edit form

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        for token in queryset.filter(revoked_at__isnull=True):
            api_token_revoke(token=token)
        self.message_user(request, "Revoked. Requests with those tokens now get 401.")


@admin.register(IdempotentRequest)
class IdempotentRequestAdmin(ReadOnlyAdmin):
    """API requests made with an Idempotency-Key, for looking into a client's retries."""

    list_display = [
        "created_at",
        "user",
        "method",
        "path",
        "key",
        "response_status",
        "completed_at",
    ]
    search_fields = ["=key", "user__username", "path"]
    list_select_related = ["user"]
