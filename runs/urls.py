from django.urls import path

from runs import views

urlpatterns = [
    path("teams/<slug:slug>/runs/", views.run_list, name="run_list"),
    path("teams/<slug:slug>/runs/live/", views.run_list_live, name="run_list_live"),
    path("teams/<slug:slug>/runs/export.csv", views.run_export, name="run_export"),
    path("teams/<slug:slug>/runs/new/", views.run_launch, name="run_launch"),
    path("runs/<uuid:run_id>/", views.run_detail, name="run_detail"),
    path("runs/<uuid:run_id>/live/", views.run_live, name="run_live"),
    path("runs/<uuid:run_id>/cancel/", views.run_cancel, name="run_cancel"),
    path("runs/<uuid:run_id>/resume/", views.run_resume, name="run_resume"),
    path("runs/<uuid:run_id>/approve/", views.run_approve, name="run_approve"),
    path("runs/<uuid:run_id>/reject/", views.run_reject, name="run_reject"),
]

# Coasty's deliveries: the busiest URL of all. The root URLconf names it before every other
# pattern, so that a delivery is resolved at the first try instead of after some sixty.
webhook_urlpatterns = [
    path("webhooks/coasty/runs/<uuid:run_id>/", views.coasty_webhook, name="coasty_webhook"),
]
