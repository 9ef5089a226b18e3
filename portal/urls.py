"""The root URLconf: every app's pages, the REST API, the admin and the sign-in pages."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from portal.core.rest.errors import bad_request, server_error
from portal.site.views import PasswordResetConfirmView
from runs.urls import webhook_urlpatterns

# Under /api/ a server error answers the API's JSON envelope; elsewhere the 500 page.
handler500 = server_error
# A body found too large only while it was read answers 413, like the up-front check.
handler400 = bad_request

urlpatterns = [
    *webhook_urlpatterns,
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
    # Password reset by email (Django's views; templates/registration/password_reset_*).
    path(
        "accounts/password/reset/",
        auth_views.PasswordResetView.as_view(),
        name="password_reset",
    ),
    path(
        "accounts/password/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "accounts/password/reset/<uidb64>/<token>/",
        PasswordResetConfirmView.as_view(),  # also lifts the account's login lockout
        name="password_reset_confirm",
    ),
    path(
        "accounts/password/reset/complete/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("api/", include("portal.api_urls")),
    # The team pages before the site's /teams/<slug>/: /teams/new/ is the create page.
    path("", include("portal.teams.urls")),
    path("", include("portal.notifications.urls")),
    path("", include("portal.site.urls")),
    path("", include("billing.urls")),
    path("admin/", admin.site.urls),
    path("", include("runs.urls")),
    path("", include("schedules.urls")),
]
