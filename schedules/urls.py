from django.urls import path

from schedules import views

urlpatterns = [
    path("teams/<slug:slug>/schedules/", views.schedule_list, name="schedule_list"),
    path("teams/<slug:slug>/schedules/new/", views.schedule_create, name="schedule_create"),
    path(
        "teams/<slug:slug>/schedules/<uuid:schedule_id>/",
        views.schedule_detail,
        name="schedule_detail",
    ),
    path(
        "teams/<slug:slug>/schedules/<uuid:schedule_id>/edit/",
        views.schedule_edit,
        name="schedule_edit",
    ),
    path(
        "teams/<slug:slug>/schedules/<uuid:schedule_id>/pause/",
        views.schedule_toggle,
        name="schedule_toggle",
    ),
    path(
        "teams/<slug:slug>/schedules/<uuid:schedule_id>/delete/",
        views.schedule_delete,
        name="schedule_delete",
    ),
]
