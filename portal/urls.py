from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from portal import views
from portal.rest.errors import server_error

# Under /api/ a server error answers the API's JSON envelope; elsewhere the 500 page.
handler500 = server_error

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password/",
        auth_views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("account/", views.account, name="account"),
    path(
        "account/tokens/<int:token_id>/revoke/",
        views.api_token_revoke,
        name="api_token_revoke",
    ),
    path("api/", include("portal.rest.urls")),
    path("teams/", views.team_list, name="team_list"),
    path("teams/new/", views.team_create, name="team_create"),
    path("teams/<slug:slug>/", views.team_dashboard, name="team_dashboard"),
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
    path("", include("billing.urls")),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("runs.urls")),
]

if settings.BENCH_ENDPOINTS:
    # `make bench` only: the bare endpoint the webhook intake is measured against.
    urlpatterns.insert(0, path("bench/ok", views.bench_ok, name="bench_ok"))
