"""Everything under /api/: the v1 endpoints, the OpenAPI schema and its docs page, and a
NOT_FOUND envelope for any other path (unknown endpoints, malformed run ids and team slugs)."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.negotiation import DefaultContentNegotiation

from billing.apis import BudgetApi, LedgerApi, MemberLimitApi, TopUpApi, WalletApi
from portal.core.rest.errors import api_not_found
from portal.notifications.apis import (
    EndpointApi,
    EndpointDeliveriesApi,
    EndpointTestApi,
    NotificationsApi,
    TeamEndpointsApi,
)
from portal.site.apis import TeamListApi
from runs.apis import (
    RunApproveApi,
    RunCancelApi,
    RunDetailApi,
    RunEventsApi,
    RunRejectApi,
    RunResumeApi,
    TeamRunsApi,
)
from schedules.apis import ScheduleDetailApi, ScheduleLaunchesApi, TeamSchedulesApi

v1 = [
    path("teams/", TeamListApi.as_view(), name="api_teams"),
    path("teams/<slug:slug>/runs/", TeamRunsApi.as_view(), name="api_team_runs"),
    path("teams/<slug:slug>/wallet/", WalletApi.as_view(), name="api_wallet"),
    path("teams/<slug:slug>/ledger/", LedgerApi.as_view(), name="api_ledger"),
    path("teams/<slug:slug>/topups/", TopUpApi.as_view(), name="api_topups"),
    path("teams/<slug:slug>/budget/", BudgetApi.as_view(), name="api_budget"),
    path(
        "teams/<slug:slug>/members/<str:username>/limit/",
        MemberLimitApi.as_view(),
        name="api_member_limit",
    ),
    path("runs/<uuid:run_id>/", RunDetailApi.as_view(), name="api_run"),
    path("runs/<uuid:run_id>/cancel/", RunCancelApi.as_view(), name="api_run_cancel"),
    path("runs/<uuid:run_id>/resume/", RunResumeApi.as_view(), name="api_run_resume"),
    path("runs/<uuid:run_id>/events/", RunEventsApi.as_view(), name="api_run_events"),
    path("runs/<uuid:run_id>/approve/", RunApproveApi.as_view(), name="api_run_approve"),
    path("runs/<uuid:run_id>/reject/", RunRejectApi.as_view(), name="api_run_reject"),
    path("teams/<slug:slug>/schedules/", TeamSchedulesApi.as_view(), name="api_team_schedules"),
    path("schedules/<uuid:schedule_id>/", ScheduleDetailApi.as_view(), name="api_schedule"),
    path(
        "schedules/<uuid:schedule_id>/launches/",
        ScheduleLaunchesApi.as_view(),
        name="api_schedule_launches",
    ),
    path(
        "teams/<slug:slug>/webhook-endpoints/",
        TeamEndpointsApi.as_view(),
        name="api_webhook_endpoints",
    ),
    path(
        "webhook-endpoints/<int:endpoint_id>/", EndpointApi.as_view(), name="api_webhook_endpoint"
    ),
    path(
        "webhook-endpoints/<int:endpoint_id>/test/",
        EndpointTestApi.as_view(),
        name="api_webhook_endpoint_test",
    ),
    path(
        "webhook-endpoints/<int:endpoint_id>/deliveries/",
        EndpointDeliveriesApi.as_view(),
        name="api_webhook_endpoint_deliveries",
    ),
    path("notifications/", NotificationsApi.as_view(), name="api_notifications"),
]

urlpatterns = [
    path("v1/", include(v1)),
    # YAML by default, JSON with ?format=json (the API's own endpoints always answer JSON).
    path(
        "schema/",
        SpectacularAPIView.as_view(content_negotiation_class=DefaultContentNegotiation),
        name="api_schema",
    ),
    # The split view serves Swagger UI's set-up script as a URL of its own, not inline: the
    # Content-Security-Policy allows no inline script.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api_schema"), name="api_docs"),
    re_path(r"^", api_not_found),
]
