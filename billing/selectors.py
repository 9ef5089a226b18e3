"""Reads about wallets and the ledger that the pages and the REST API share.

Every function here costs a fixed, small number of queries however long the ledger grows: the
ledger is paged by keyset on the transfer id (never OFFSET, never COUNT(*)), and sums run over
the (team, kind, created_at) index.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from uuid import UUID

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing.models import (
    TEAM_ACCOUNT_KINDS,
    Account,
    AccountKind,
    Reconciliation,
    Transfer,
    TransferKind,
)
from portal.models import Team

LEDGER_PAGE_SIZE = 50


@dataclass(frozen=True)
class WalletSummary:
    team_id: int
    available_cents: int
    held_cents: int
    spent_cents: int  # everything ever captured
    spent_this_month_cents: int  # captured since the first of this month (the viewer's zone)
    low_balance_threshold_cents: int
    low_balance: bool


def wallet_summary(team: Team) -> WalletSummary:
    """The team's balances (two queries)."""
    accounts = {
        kind: (balance, threshold)
        for kind, balance, threshold in Account.objects.filter(team=team).values_list(
            "kind", "balance_cents", "low_balance_threshold_cents"
        )
    }
    available, threshold = accounts.get(
        AccountKind.AVAILABLE, (0, settings.BILLING_LOW_BALANCE_THRESHOLD_CENTS)
    )
    month = (
        Transfer.objects.filter(
            team=team, kind=TransferKind.CAPTURE, created_at__gte=_month_start()
        ).aggregate(s=Sum("amount_cents"))["s"]
        or 0
    )
    return WalletSummary(
        team_id=team.pk,
        available_cents=available,
        held_cents=accounts.get(AccountKind.HELD, (0, 0))[0],
        spent_cents=accounts.get(AccountKind.SPEND, (0, 0))[0],
        spent_this_month_cents=month,
        low_balance_threshold_cents=threshold,
        low_balance=available < threshold,
    )


@dataclass(frozen=True)
class WalletRow:
    team: Team
    summary: WalletSummary


def wallets_overview() -> list[WalletRow]:
    """Every team's wallet, for billing admins (three queries, whatever the number of teams)."""
    teams = list(Team.objects.order_by("name"))
    balances: dict[int, dict[str, tuple[int, int]]] = {}
    for team_id, kind, balance, threshold in Account.objects.filter(
        kind__in=TEAM_ACCOUNT_KINDS
    ).values_list("team_id", "kind", "balance_cents", "low_balance_threshold_cents"):
        balances.setdefault(team_id, {})[kind] = (balance, threshold)
    month = dict(
        Transfer.objects.filter(kind=TransferKind.CAPTURE, created_at__gte=_month_start())
        .values_list("team")
        .annotate(s=Sum("amount_cents"))
        .order_by()
    )
    rows = []
    for team in teams:
        accounts = balances.get(team.pk, {})
        available, threshold = accounts.get(
            AccountKind.AVAILABLE, (0, settings.BILLING_LOW_BALANCE_THRESHOLD_CENTS)
        )
        summary = WalletSummary(
            team_id=team.pk,
            available_cents=available,
            held_cents=accounts.get(AccountKind.HELD, (0, 0))[0],
            spent_cents=accounts.get(AccountKind.SPEND, (0, 0))[0],
            spent_this_month_cents=month.get(team.pk, 0),
            low_balance_threshold_cents=threshold,
            low_balance=available < threshold,
        )
        rows.append(WalletRow(team=team, summary=summary))
    return rows


def organisation_totals() -> dict[str, int]:
    """Roll-up of the organisation: paid in (minus funding), team spend, adjustments."""
    by_kind = dict(Account.objects.values_list("kind").annotate(s=Sum("balance_cents")).order_by())
    return {
        "paid_in_cents": -by_kind.get(AccountKind.FUNDING, 0),
        "available_cents": by_kind.get(AccountKind.AVAILABLE, 0),
        "held_cents": by_kind.get(AccountKind.HELD, 0),
        "spent_cents": by_kind.get(AccountKind.SPEND, 0),
        # What corrections gave teams (positive) or took back (negative), net.
        "adjusted_cents": -by_kind.get(AccountKind.ADJUSTMENTS, 0),
    }


@dataclass(frozen=True)
class LowBalanceBanner:
    team: Team
    available_cents: int
    threshold_cents: int


def low_balance_banner(team: Team) -> LowBalanceBanner | None:
    """The banner to show, or None (one query)."""
    row = (
        Account.objects.filter(team=team, kind=AccountKind.AVAILABLE)
        .values_list("balance_cents", "low_balance_threshold_cents")
        .first()
    )
    available, threshold = row or (0, settings.BILLING_LOW_BALANCE_THRESHOLD_CENTS)
    if available < threshold:
        return LowBalanceBanner(team=team, available_cents=available, threshold_cents=threshold)
    return None


# --- The ledger -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerFilters:
    kind: str = ""
    date_from: date | None = None  # inclusive, in the viewer's zone
    date_to: date | None = None  # inclusive
    run_id: UUID | None = None


def ledger_for_team(team: Team, filters: LedgerFilters | None = None) -> QuerySet[Transfer]:
    """The team's transfers, newest first, with what a row needs to render (no N+1)."""
    filters = filters or LedgerFilters()
    transfers = Transfer.objects.filter(team=team)
    if filters.kind:
        transfers = transfers.filter(kind=filters.kind)
    if filters.date_from:
        transfers = transfers.filter(created_at__gte=_day_start(filters.date_from))
    if filters.date_to:
        transfers = transfers.filter(created_at__lt=_day_start(filters.date_to + timedelta(days=1)))
    if filters.run_id:
        transfers = transfers.filter(run_id=filters.run_id)
    return transfers.select_related("debit_account", "credit_account").order_by("-id")


@dataclass(frozen=True)
class LedgerPage:
    rows: list[Transfer]
    newer_cursor: int | None  # pass as ?after= to see newer rows
    older_cursor: int | None  # pass as ?before= to see older rows


def ledger_page(
    transfers: QuerySet[Transfer],
    *,
    before: int | None = None,
    after: int | None = None,
    size: int = LEDGER_PAGE_SIZE,
) -> LedgerPage:
    """One page of a newest-first ledger by keyset on id: two queries at most, at any depth."""
    if after is not None:
        rows = list(transfers.filter(id__gt=after).order_by("id")[: size + 1])
        has_newer = len(rows) > size
        rows = rows[:size][::-1]
        has_older = bool(rows) or transfers.filter(id__lte=after).exists()
    else:
        page = transfers.filter(id__lt=before) if before is not None else transfers
        rows = list(page[: size + 1])
        has_older = len(rows) > size
        rows = rows[:size]
        has_newer = before is not None and transfers.filter(id__gte=before).exists()
    if not rows:
        return LedgerPage(rows=[], newer_cursor=None, older_cursor=None)
    return LedgerPage(
        rows=rows,
        newer_cursor=rows[0].pk if has_newer else None,
        older_cursor=rows[-1].pk if has_older else None,
    )


def team_deltas(transfer: Transfer) -> dict[str, int]:
    """What a transfer did to each of its team's accounts: {"available": -500, "held": 500}.

    Needs the transfer's accounts loaded (ledger_for_team selects them).
    """
    deltas = {kind: 0 for kind in TEAM_ACCOUNT_KINDS}
    if transfer.debit_account.team_id is not None:
        deltas[transfer.debit_account.kind] -= transfer.amount_cents
    if transfer.credit_account.team_id is not None:
        deltas[transfer.credit_account.kind] += transfer.amount_cents
    return deltas


@dataclass(frozen=True)
class DaySpend:
    day: date
    cents: int


def spend_per_day(team: Team, days: int = 30) -> list[DaySpend]:
    """Captured cents per day for the last `days` days (today included), zero-filled (one query)."""
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    sums = dict(
        Transfer.objects.filter(
            team=team, kind=TransferKind.CAPTURE, created_at__gte=_day_start(first)
        )
        .annotate(day=TruncDate("created_at"))
        .values_list("day")
        .annotate(s=Sum("amount_cents"))
        .order_by()
    )
    return [
        DaySpend(day=day, cents=sums.get(day, 0))
        for day in (first + timedelta(days=n) for n in range(days))
    ]


# --- Reconciliation -------------------------------------------------------------------------------


def open_discrepancies() -> QuerySet[Reconciliation]:
    return (
        Reconciliation.objects.filter(
            status=Reconciliation.Status.DISCREPANCY, resolution=Reconciliation.Resolution.NONE
        )
        .select_related("team", "hold")
        .order_by("-id")
    )


def recently_resolved(limit: int = 20) -> QuerySet[Reconciliation]:
    return (
        Reconciliation.objects.filter(status=Reconciliation.Status.DISCREPANCY)
        .exclude(resolution=Reconciliation.Resolution.NONE)
        .select_related("team", "hold", "resolved_by", "adjustment")
        .order_by("-resolved_at")[:limit]
    )


def reconciliation_counts() -> dict[str, int]:
    return Reconciliation.objects.aggregate(
        matched=Count("pk", filter=Q(status=Reconciliation.Status.MATCHED)),
        open=Count(
            "pk",
            filter=Q(
                status=Reconciliation.Status.DISCREPANCY,
                resolution=Reconciliation.Resolution.NONE,
            ),
        ),
    )


def _month_start() -> datetime:
    return _day_start(timezone.localdate().replace(day=1))


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_current_timezone())
