from django.contrib import admin
from django.forms.models import BaseInlineFormSet

from portal.core.admin import ReadOnlyAdmin
from portal.teams import services
from portal.teams.forms import TeamAdminForm
from portal.teams.models import Invitation, Membership, MembershipChange, Role, Team
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
            deleted = bool(form.cleaned_data.get("DELETE"))
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
        """Membership edits made here go through the same services as the team pages, so they
        land in the team's audit trail and obey the same rules. The formset's clean() checked
        the whole edit already; promotions and additions are applied before anyone steps down
        or leaves, as there."""
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        formset.save(commit=False)  # sorts the forms into new, changed and deleted; writes nothing
        team, actor = form.instance, request.user
        for membership in formset.new_objects:
            services.membership_add(
                team=team, user=membership.user, role=membership.role, actor=actor
            )
        changed = sorted(
            formset.changed_objects, key=lambda pair: pair[0].role != Role.MANAGER
        )  # promotions first
        for membership, fields in changed:
            if "user" in fields:
                # Another person in this row: the first leaves, the second joins.
                before = Membership.objects.select_related("user").get(pk=membership.pk)
                services.membership_add(
                    team=team, user=membership.user, role=membership.role, actor=actor
                )
                services.membership_remove(membership=before, actor=actor)
            elif "role" in fields:
                services.membership_change_role(
                    membership=membership, role=membership.role, actor=actor
                )
        for membership in formset.deleted_objects:
            services.membership_remove(membership=membership, actor=actor)
        return None


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


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdmin):
    """Invitations are sent, revoked and accepted on the team pages; here they are looked up.
    Never the token's hash: nothing here helps anyone rebuild a link."""

    list_display = ["created_at", "team", "email", "role", "status", "invited_by", "expires_at"]
    list_filter = ["status", "team"]
    search_fields = ["email", "team__slug"]
    list_select_related = ["team", "invited_by"]
    fields = (
        "team",
        "email",
        "role",
        "status",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "accepted_by",
        "revoked_at",
        "revoked_by",
    )
    readonly_fields = fields
