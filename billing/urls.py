from django.urls import path

from billing import views

urlpatterns = [
    path("teams/<slug:slug>/wallet/", views.wallet, name="wallet"),
    path(
        "teams/<slug:slug>/wallet/runs/<uuid:run_id>/",
        views.wallet_run_entries,
        name="wallet_run_entries",
    ),
    path("teams/<slug:slug>/wallet/ledger.csv", views.ledger_csv, name="wallet_ledger_csv"),
    path("teams/<slug:slug>/budget/", views.budget, name="budget"),
    path("billing/", views.overview, name="billing_overview"),
    path("billing/teams/<slug:slug>/", views.team_admin, name="billing_team"),
    path("billing/teams/<slug:slug>/top-up/", views.top_up, name="billing_top_up"),
    path("billing/teams/<slug:slug>/adjust/", views.adjust, name="billing_adjust"),
    path("billing/teams/<slug:slug>/alert-level/", views.threshold, name="billing_threshold"),
    path("billing/discrepancies/", views.discrepancies, name="billing_discrepancies"),
    path("billing/discrepancies/<int:pk>/", views.discrepancy, name="billing_discrepancy"),
]
