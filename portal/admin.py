from django.contrib import admin

from portal.forms import TeamAdminForm
from portal.models import ApiToken, IdempotentRequest, Membership, MembershipChange, Team
from portal.readonly_admin import ReadOnlyAdmin
from portal.services import api_token_revoke


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    form = TeamAdminForm
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at", "created_by"]
    inlines = [MembershipInline]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change):
        """Membership edits made here land in the team's audit trail like those made in the UI."""
        instances = formset.save(commit=False)  # fills formset.deleted_objects, writes nothing
        changes = [
            (membership, MembershipChange.Action.REMOVED, membership.role, "")
            for membership in formset.deleted_objects
        ]
        for membership in instances:
            if membership.pk is None:
                changes.append((membership, MembershipChange.Action.ADDED, "", membership.role))
            else:
                old_role = (
                    Membership.objects.filter(pk=membership.pk)
                    .values_list("role", flat=True)
                    .first()
                )
                if old_role != membership.role:
                    changes.append(
                        (
                            membership,
                            MembershipChange.Action.ROLE_CHANGED,
                            old_role or "",
                            membership.role,
                        )
                    )
        formset.save()
        for membership, action, old_role, new_role in changes:
            MembershipChange.objects.create(
                team=form.instance,
                actor=request.user,
                member=membership.user,
                member_username=membership.user.get_username(),
                action=action,
                old_role=old_role,
                new_role=new_role,
            )


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Listed for search; edits go through the team page (or a team's inline) to be recorded."""

    list_display = ["team", "user", "role", "created_at"]
    list_filter = ["role", "team"]
    search_fields = ["user__username", "team__slug"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(MembershipChange)
class MembershipChangeAdmin(ReadOnlyAdmin):
    """The audit trail: read-only, like every history in the portal."""

    list_display = [
        "created_at",
        "team",
        "actor",
        "action",
        "member_username",
        "old_role",
        "new_role",
    ]
    list_filter = ["action", "team"]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Tokens are made by their owners; here they are listed, and can be revoked in bulk."""

    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["user__username", "name", "prefix"]
    list_select_related = ["user"]
    fields = ["user", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
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
