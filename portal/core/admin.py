"""The core's admin bases and records, and the admin rules every page obeys.

Every admin page and action needs its model permission (Django's default, which the admins
here keep: no `has_*_permission` answers yes by itself, every action names its permission).
Two third-party admins are tightened where their default is too wide: django-q2's schedules and
tasks (a schedule names any function to run, a task can be resubmitted) are for superusers only,
and django-axes' "clean up" action needs the delete permission.
"""

from axes import models as axes_models
from django.contrib import admin
from django_q import models as q_models

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

    list_display = [
        "name",
        "user",
        "prefix",
        "scopes",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["user__username", "name", "prefix"]
    list_select_related = ["user"]
    fields = (
        "user",
        "name",
        "prefix",
        "scopes",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    )
    readonly_fields = fields  # never the hash: nothing here helps anyone rebuild a token
    actions = ["revoke"]

    def has_change_permission(self, request, obj=None):
        # The change permission allows the list's revoke action, never the edit form.
        return obj is None and admin.ModelAdmin.has_change_permission(self, request, obj)

    @admin.action(description="Revoke selected tokens", permissions=["change"])
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


class SuperusersOnly:
    """Mixed in front of a ModelAdmin: only superusers see or touch it, whatever their
    permissions (a django-q2 schedule names any importable function, which is code execution)."""

    @staticmethod
    def _superuser(request) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_module_permission(self, request):
        return self._superuser(request) and super().has_module_permission(request)  # type: ignore[misc]

    def has_view_permission(self, request, obj=None):
        return self._superuser(request) and super().has_view_permission(request, obj)  # type: ignore[misc]

    def has_add_permission(self, request, *args):
        return self._superuser(request) and super().has_add_permission(request, *args)  # type: ignore[misc]

    def has_change_permission(self, request, obj=None):
        return self._superuser(request) and super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request, obj=None):
        return self._superuser(request) and super().has_delete_permission(request, obj)  # type: ignore[misc]


def _tighten(model, mixin: type | None = None, **attributes) -> None:
    """Re-register a third-party model's admin as a subclass of its own (after its app)."""
    if not admin.site.is_registered(model):
        return
    original = type(admin.site.get_model_admin(model))
    admin.site.unregister(model)
    bases = (mixin, original) if mixin else (original,)
    admin.site.register(model, type(f"Portal{original.__name__}", bases, attributes))


for _model in (q_models.Schedule, q_models.Success, q_models.Failure, q_models.OrmQ):
    _tighten(_model, SuperusersOnly)


class CleanupNeedsDelete:
    """django-axes' "clean up expired attempts" deletes rows: it needs the delete permission."""

    @admin.action(description="Clean up expired attempts", permissions=["delete"])
    def cleanup_expired_attempts(self, request, queryset):
        return super().cleanup_expired_attempts(request, queryset)  # type: ignore[misc]


_tighten(axes_models.AccessAttempt, CleanupNeedsDelete)
