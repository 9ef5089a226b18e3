from django.contrib import admin


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
