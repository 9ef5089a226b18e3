from django.conf import settings
from django.urls import path

from portal.site import views

urlpatterns = [
    path("", views.home, name="home"),
    path("account/", views.account, name="account"),
    path(
        "account/tokens/<int:token_id>/revoke/",
        views.api_token_revoke,
        name="api_token_revoke",
    ),
    path("teams/<slug:slug>/", views.team_dashboard, name="team_dashboard"),
    path("inbox/", views.inbox, name="inbox"),
    path("teams/<slug:slug>/live/", views.team_dashboard_live, name="team_dashboard_live"),
    path("healthz", views.healthz, name="healthz"),
]

if settings.BENCH_ENDPOINTS:
    # `make bench` only: the bare endpoint, and the durable minimum the webhook intake is
    # measured against.
    urlpatterns.insert(0, path("bench/ok", views.bench_ok, name="bench_ok"))
    urlpatterns.insert(
        0, path("bench/durable/<uuid:run_id>/", views.bench_durable, name="bench_durable")
    )
