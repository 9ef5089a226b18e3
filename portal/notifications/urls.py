from django.urls import path

from portal.notifications import views

urlpatterns = [
    path("notifications/", views.notification_list, name="notifications"),
    path(
        "notifications/<int:notification_id>/open/",
        views.notification_open,
        name="notification_open",
    ),
    path("account/email/", views.email_preferences, name="email_preferences"),
    path("teams/<slug:slug>/endpoints/", views.endpoint_list, name="endpoint_list"),
    path(
        "teams/<slug:slug>/endpoints/<int:endpoint_id>/",
        views.endpoint_detail,
        name="endpoint_detail",
    ),
    path(
        "teams/<slug:slug>/endpoints/<int:endpoint_id>/<str:action>/",
        views.endpoint_action,
        name="endpoint_action",
    ),
    path(
        "teams/<slug:slug>/endpoints/<int:endpoint_id>/deliveries/<int:delivery_id>/resend/",
        views.delivery_resend,
        name="delivery_resend",
    ),
]
