from django.urls import path

from portal.teams import views

urlpatterns = [
    path("teams/", views.team_list, name="team_list"),
    path("teams/new/", views.team_create, name="team_create"),
    path("teams/<slug:slug>/members/", views.team_members_page, name="team_members"),
    path("teams/<slug:slug>/members/add/", views.team_member_add, name="team_member_add"),
    path(
        "teams/<slug:slug>/members/<int:membership_id>/role/",
        views.team_member_role,
        name="team_member_role",
    ),
    path(
        "teams/<slug:slug>/members/<int:membership_id>/remove/",
        views.team_member_remove,
        name="team_member_remove",
    ),
    path(
        "teams/<slug:slug>/members/invite/",
        views.team_invitation_create,
        name="team_invitation_create",
    ),
    path(
        "teams/<slug:slug>/invitations/<int:invitation_id>/revoke/",
        views.team_invitation_revoke,
        name="team_invitation_revoke",
    ),
    # The emailed link: no login needed (see views.invitation_accept).
    path("invitations/<uuid:key>/<str:token>/", views.invitation_accept, name="invitation_accept"),
]
