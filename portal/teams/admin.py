from django.contrib import admin
from django.forms.models import BaseInlineFormSet

from portal.core.admin import ReadOnlyAdmin
from portal.teams.forms import TeamAdminForm
from portal.teams.models import Membership, MembershipChange, Role, Team
from portal.teams.services import refuse_losing_last_manager


class MembershipInlineFormSet(BaseInlineFormSet):
    """A team's memberships in its admin page, under the team pages' rule: a team that has a
    manager keeps one."""

    def clean(self):
        super().clean()
        if any(self.errors) or self.instance.pk is None:
            return  # a new team has no manager to lose
        # Locked like the services do (the admin's change view is one transaction), so two
        # operators cannot each demote one of the last two managers.
        staying = list(
            Membership.objects.filter(team=self.instance).order_by("pk").select_for_update()
        )
        before = {m.pk: m for m in staying}
        leaving = []
        for form in self.forms:
            if not form.has_changed():
                continue
            current = before.get(form.instance.pk)
            deleted = self._should_delete_form(form)
            if current is None:  # a new membership
                if not deleted:
                    staying.append(Membership(role=form.cleaned_data["role"]))
            elif deleted:
                leaving.append((current, None))
            elif form.cleaned_data["role"] == Role.MANAGER:
                current.role = Role.MANAGER  # a promotion counts before anyone steps down
            elif form.cleaned_data["role"] != current.role:
                leaving.append((current, form.cleaned_data["role"]))
        # One change at a time, as if made on the team pages in turn.
        for membership, new_role in leaving:
            refuse_losing_last_manager(staying, leaving=membership, new_role=new_role)
            if new_role is None:
                staying.remove(membership)
            else:
                membership.role = new_role


class MembershipInline(admin.TabularInline):
    model = Membership
    formset = MembershipInlineFormSet
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

    def has_delete_permission(self, request, obj=None):
        return False  # a delete here (or "Delete selected") would leave no MembershipChange row


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
