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
]
