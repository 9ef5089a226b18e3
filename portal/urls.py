"""The root URLconf: every app's pages, the REST API, the admin and the sign-in pages."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from portal.core.rest.errors import server_error

# Under /api/ a server error answers the API's JSON envelope; elsewhere the 500 page.
handler500 = server_error

urlpatterns = [
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
    path("api/", include("portal.api_urls")),
    # The team pages before the site's /teams/<slug>/: /teams/new/ is the create page.
    path("", include("portal.teams.urls")),
    path("", include("portal.notifications.urls")),
    path("", include("portal.site.urls")),
    path("", include("billing.urls")),
    path("admin/", admin.site.urls),
    path("", include("runs.urls")),
]
