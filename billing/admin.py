"""The ledger in the Django admin: to look at, never to edit.

Money only moves through billing.services (top-ups and corrections have their own pages), so
accounts, transfers, holds and reconciliations are read-only here: no add, change or delete.
Budgets, members' limits and month usage too: managers set the first two on the team's spend
controls page (billing.services.budget_set, member_limit_set); holds keep the third.
"""

from django.contrib import admin

from billing.models import (
    Account,
    Budget,
    Hold,
    MemberLimit,
    MonthUsage,
    ReconcileCursor,
    Reconciliation,
    Transfer,
)
from portal.core.admin import ReadOnlyAdmin


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["id", "team", "kind", "balance_cents", "low_balance_threshold_cents"]
    list_filter = ["kind"]
    list_select_related = ["team"]
    search_fields = ["team__slug"]


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "team",
        "kind",
        "amount_cents",
        "debit_account",
        "credit_account",
        "reference",
        "caused_by",
    ]
    list_filter = ["kind"]
    list_select_related = ["team", "debit_account__team", "credit_account__team"]
    search_fields = ["=idempotency_key", "=run_id", "reference"]
    raw_id_fields = ["hold", "caused_by_user"]


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "team",
        "reference",
        "amount_cents",
        "captured_cents",
        "released_cents",
        "captured_steps",
        "status",
    ]
    list_filter = ["status"]
    list_select_related = ["team"]
    search_fields = ["=reference", "=run_id"]


@admin.register(Reconciliation)
class ReconciliationAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "checked_at",
        "team",
        "hold",
        "status",
        "resolution",
        "ledger_captured_cents",
        "expected_cents",
        "upstream_credits_charged",
        "difference_cents",
    ]
    list_filter = ["status", "resolution", "upstream_test_mode"]
    list_select_related = ["team", "hold"]


@admin.register(Budget)
class BudgetAdmin(ReadOnlyAdmin):
    list_display = [
        "team",
        "monthly_limit_cents",
        "approval_above_cents",
        "alert_percents",
        "updated_by",
        "updated_at",
    ]
    list_select_related = ["team"]
    search_fields = ["team__slug"]


@admin.register(MemberLimit)
class MemberLimitAdmin(ReadOnlyAdmin):
    list_display = ["team", "user", "monthly_limit_cents", "updated_by", "updated_at"]
    list_select_related = ["team", "user"]
    search_fields = ["team__slug", "user__username"]


@admin.register(MonthUsage)
class MonthUsageAdmin(ReadOnlyAdmin):
    list_display = ["team", "user", "month", "used_cents"]
    list_filter = ["month"]
    list_select_related = ["team", "user"]
    search_fields = ["team__slug", "user__username"]


@admin.register(ReconcileCursor)
class ReconcileCursorAdmin(ReadOnlyAdmin):
    list_display = ["name", "last_hold_id", "updated_at"]
