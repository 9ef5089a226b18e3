"""Reads about wallets and the ledger that the pages and the REST API share.

Every function here costs a fixed, small number of queries however long the ledger grows: the
ledger is paged by keyset on the transfer id (never OFFSET, never COUNT(*)), and sums run over
the (team, kind, created_at) index.
"""

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db.models import (
    Count,
    F,
    JSONField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.utils import timezone

from billing.models import (
    TEAM_ACCOUNT_KINDS,
    Account,
    AccountKind,
    Budget,
    Hold,
    MemberLimit,
    MonthUsage,
    Reconciliation,
    Transfer,
    TransferKind,
)
from billing.months import days_in, month_label, month_of
from billing.spend import DaySpend, day_start, spend_per_day
from portal.core.query import bounded_int
from portal.teams.models import Team

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


def wallet_summary(team: Team, *, month_cents: int | None = None) -> WalletSummary:
    """The team's balances, in one query (scalar subqueries on the team row).

    `month_cents`, when the caller already summed this month's captures (the wallet page does,
    from the same scan as its chart), is used instead of summing them again.
    """

    def account(kind: str, column: str = "balance_cents") -> Subquery:
        return Subquery(Account.objects.filter(team=OuterRef("pk"), kind=kind).values(column)[:1])

    def shards(kind: str) -> Subquery:
        """The sum over the team's shards of a sharded kind (held, spend)."""
        total = (
            Account.objects.filter(team=OuterRef("pk"), kind=kind)
            .order_by()
            .values("team")
            .annotate(s=Sum("balance_cents"))
            .values("s")
        )
        return Subquery(total[:1])

    figures = {
        "available": account(AccountKind.AVAILABLE),
        "threshold": account(AccountKind.AVAILABLE, "low_balance_threshold_cents"),
        "held": shards(AccountKind.HELD),
        "spent": shards(AccountKind.SPEND),
    }
    if month_cents is None:
        month = (
            Transfer.objects.filter(
                team=OuterRef("pk"), kind=TransferKind.CAPTURE, created_at__gte=_month_start()
            )
            .order_by()
            .values("team")
            .annotate(s=Sum("amount_cents"))
            .values("s")
        )
        figures["month"] = Subquery(month[:1])
    row = Team.objects.filter(pk=team.pk).annotate(**figures).values(*figures).get()
    return _summary(
        team.pk,
        available=row["available"],
        threshold=row["threshold"],
        held=row["held"],
        spent=row["spent"],
        month=row["month"] if month_cents is None else month_cents,
    )


def wallet_with_spend(team: Team, days: int = 30) -> tuple[WalletSummary, list[DaySpend]]:
    """The wallet page's figures: the summary and the last `days` days of spend, in two queries.

    This month's spend is the sum of its days, taken from the same per-day scan as the chart
    (widened to the first of the month when that is further back), instead of a second scan of
    the same captures.
    """
    today = timezone.localdate()
    month_start = today.replace(day=1)
    window = max(days, (today - month_start).days + 1)
    spend = spend_per_day(team, days=window)
    month = sum(day.cents for day in spend if day.day >= month_start)
    return wallet_summary(team, month_cents=month), spend[-days:]


def _summary(team_id, *, available, threshold, held, spent, month) -> WalletSummary:
    """A summary from raw figures; None means the team has no accounts yet (an empty wallet)."""
    available = available or 0
    if threshold is None:
        threshold = settings.BILLING_LOW_BALANCE_THRESHOLD_CENTS
    return WalletSummary(
        team_id=team_id,
        available_cents=available,
        held_cents=held or 0,
        spent_cents=spent or 0,
        spent_this_month_cents=month or 0,
        low_balance_threshold_cents=threshold,
        low_balance=available < threshold,
    )


@dataclass(frozen=True)
class WalletRow:
    team: Team
    summary: WalletSummary
    budget: "BudgetStatus | None" = None


@dataclass(frozen=True)
class Overview:
    wallets: list[WalletRow]
    paid_in_cents: int  # everything topped up (minus the funding account)
    available_cents: int
    held_cents: int
    spent_cents: int  # the organisation's spend: the roll-up of every team's spend account
    spent_this_month_cents: int
    adjusted_cents: int  # what corrections gave teams (positive) or took back, net
    low_balance_count: int


def wallet_summaries(teams: list[Team]) -> dict[int, WalletSummary]:
    """Summaries of many teams' wallets in two queries (for lists, e.g. the API's team list)."""
    return _summaries([team.pk for team in teams])[0]


def billing_overview() -> Overview:
    """Every team's wallet and the organisation's totals (three queries, any number of teams)."""
    teams = list(Team.objects.order_by("name"))
    summaries, org = _summaries(None)
    budgets = budget_statuses([team.pk for team in teams])
    wallets = [
        WalletRow(
            team=team,
            summary=summaries.get(team.pk) or _summary(team.pk, **EMPTY),
            budget=budgets[team.pk],
        )
        for team in teams
    ]
    return Overview(
        wallets=wallets,
        paid_in_cents=-org.get(AccountKind.FUNDING, 0),
        available_cents=sum(w.summary.available_cents for w in wallets),
        held_cents=sum(w.summary.held_cents for w in wallets),
        spent_cents=sum(w.summary.spent_cents for w in wallets),
        spent_this_month_cents=sum(w.summary.spent_this_month_cents for w in wallets),
        adjusted_cents=-org.get(AccountKind.ADJUSTMENTS, 0),
        low_balance_count=sum(1 for w in wallets if w.summary.low_balance),
    )


EMPTY = {"available": None, "threshold": None, "held": 0, "spent": 0, "month": 0}


def _summaries(team_ids: list[int] | None) -> tuple[dict[int, WalletSummary], dict[str, int]]:
    """Summaries for `team_ids` (None: every team, plus the organisation's balances by kind)."""
    accounts = (
        Account.objects.all() if team_ids is None else Account.objects.filter(team_id__in=team_ids)
    )
    captures = Transfer.objects.filter(kind=TransferKind.CAPTURE, created_at__gte=_month_start())
    if team_ids is not None:
        captures = captures.filter(team_id__in=team_ids)
    month = dict(captures.values_list("team").annotate(s=Sum("amount_cents")).order_by())
    figures: dict[int, dict] = {}
    org: dict[str, int] = {}
    for team_id, kind, balance, level in accounts.values_list(
        "team_id", "kind", "balance_cents", "low_balance_threshold_cents"
    ):
        if team_id is None:
            org[kind] = balance
            continue
        team = figures.setdefault(team_id, dict(EMPTY, month=month.get(team_id, 0)))
        if kind == AccountKind.AVAILABLE:
            team["available"], team["threshold"] = balance, level
        elif kind == AccountKind.HELD:
            team["held"] += balance  # summed over the team's shards
        elif kind == AccountKind.SPEND:
            team["spent"] += balance
    ids = team_ids if team_ids is not None else list(figures)
    return {team_id: _summary(team_id, **figures.get(team_id, EMPTY)) for team_id in ids}, org


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

    @property
    def active(self) -> bool:
        return bool(self.kind or self.date_from or self.date_to or self.run_id)


def ledger_for_team(team: Team, filters: LedgerFilters | None = None) -> QuerySet[Transfer]:
    """The team's transfers, newest first, with what a row needs to render (no N+1)."""
    filters = filters or LedgerFilters()
    transfers = Transfer.objects.filter(team=team)
    if filters.kind:
        transfers = transfers.filter(kind=filters.kind)
    if filters.date_from:
        transfers = transfers.filter(created_at__gte=day_start(filters.date_from))
    if filters.date_to:
        transfers = transfers.filter(created_at__lt=day_start(filters.date_to + timedelta(days=1)))
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
    """One page of a newest-first ledger, by keyset on id: one query at any depth, no COUNT.

    A cursor in the request means the reader came from the neighbouring page, which is still
    there (the ledger is append-only), so that direction needs no query of its own.
    """
    if after is not None:
        rows = list(transfers.filter(id__gt=after).order_by("id")[: size + 1])
        if not rows:
            return ledger_page(transfers, size=size)  # nothing newer: show the newest page
        has_newer, has_older = len(rows) > size, True
        rows = rows[:size][::-1]
    else:
        page = transfers.filter(id__lt=before) if before is not None else transfers
        rows = list(page[: size + 1])
        has_newer, has_older = before is not None, len(rows) > size
        rows = rows[:size]
    if not rows:
        return LedgerPage(rows=[], newer_cursor=None, older_cursor=None)
    return LedgerPage(
        rows=rows,
        newer_cursor=rows[0].pk if has_newer else None,
        older_cursor=rows[-1].pk if has_older else None,
    )


def ledger_cursor(value: str) -> int | None:
    """The transfer id a page link carries (?before=, ?after=, the API's cursor), or None when
    the text is not one: ASCII digits within a bigint, which is what an id is (and never a
    5,000-digit number handed to int())."""
    return bounded_int(value, lo=1)


def team_deltas(transfer: Transfer) -> dict[str, int]:
    """What a transfer did to each of its team's accounts: {"available": -500, "held": 500}.

    Needs the transfer's accounts loaded (ledger_for_team selects them).
    """
    deltas: dict[str, int] = {str(kind): 0 for kind in TEAM_ACCOUNT_KINDS}
    if transfer.debit_account.team_id is not None:
        deltas[transfer.debit_account.kind] -= transfer.amount_cents
    if transfer.credit_account.team_id is not None:
        deltas[transfer.credit_account.kind] += transfer.amount_cents
    return deltas


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
    return day_start(timezone.localdate().replace(day=1))


def hold_captured_cents(reference: str) -> int:
    """What the ledger has captured from the hold `reference` (0 when there is no such hold):
    the truth a run's charged_cents mirrors."""
    captured = (
        Hold.objects.filter(reference=reference).values_list("captured_cents", flat=True).first()
    )
    return int(captured or 0)


@dataclass(frozen=True)
class BudgetStatus:
    """A team's spend controls and its month so far (held plus spent against the budget)."""

    team_id: int
    month: date
    monthly_limit_cents: int | None
    approval_above_cents: int | None
    alert_percents: list[int]
    month_spent_cents: int  # captured from the holds placed this month
    month_held_cents: int  # what those holds still hold
    projected_cents: int  # month-end held plus spent, at this month's pace

    @property
    def month_label(self) -> str:
        return month_label(self.month)

    @property
    def month_used_cents(self) -> int:
        return self.month_spent_cents + self.month_held_cents

    @property
    def month_remaining_cents(self) -> int | None:
        if self.monthly_limit_cents is None:
            return None
        return max(0, self.monthly_limit_cents - self.month_used_cents)

    @property
    def used_percent(self) -> int | None:
        if not self.monthly_limit_cents:
            return None if self.monthly_limit_cents is None else 100
        return min(100, round(100 * self.month_used_cents / self.monthly_limit_cents))

    @property
    def level(self) -> str:
        """For the bar's colour: ok, warn (80 % or more), over (all used)."""
        percent = self.used_percent or 0
        return "over" if percent >= 100 else "warn" if percent >= 80 else "ok"


def budget_statuses(team_ids: list[int], month: date | None = None) -> dict[int, BudgetStatus]:
    """Budget status of each team in `team_ids` for `month` (default: this one), one query."""
    month = month or month_of()
    budget = Budget.objects.filter(team=OuterRef("pk"))
    holds = (
        Hold.objects.filter(team=OuterRef("pk"), team_usage__month=month).order_by().values("team")
    )
    rows = (
        Team.objects.filter(pk__in=team_ids)
        .annotate(
            b_limit=Subquery(budget.values("monthly_limit_cents")[:1]),
            b_approval=Subquery(budget.values("approval_above_cents")[:1]),
            b_alerts=Subquery(budget.values("alert_percents")[:1], output_field=JSONField()),
            m_spent=Subquery(holds.annotate(s=Sum("captured_cents")).values("s")[:1]),
            m_held=Subquery(
                holds.annotate(
                    s=Sum(F("amount_cents") - F("captured_cents") - F("released_cents"))
                ).values("s")[:1]
            ),
        )
        .values_list("pk", "b_limit", "b_approval", "b_alerts", "m_spent", "m_held")
    )
    today = timezone.localdate(timezone=timezone.get_default_timezone())
    elapsed_days = today.day if month_of() == month else days_in(month)
    statuses = {}
    for team_id, limit, approval, alerts, spent, held in rows:
        spent, held = spent or 0, held or 0
        if isinstance(alerts, str):  # a JSON subquery comes back as text on some backends
            alerts = json.loads(alerts)
        statuses[team_id] = BudgetStatus(
            team_id=team_id,
            month=month,
            monthly_limit_cents=limit,
            approval_above_cents=approval,
            alert_percents=list(alerts or []),
            month_spent_cents=spent,
            month_held_cents=held,
            # What is held now, plus what was spent at the month's pace so far, for every day.
            projected_cents=held + round(spent * days_in(month) / max(1, elapsed_days)),
        )
    return statuses


def budget_status(team: Team, month: date | None = None) -> BudgetStatus:
    return budget_statuses([team.pk], month)[team.pk]


@dataclass(frozen=True)
class MemberMonth:
    """One member's monthly limit in a team (None: no limit) and their month so far."""

    limit_cents: int | None
    used_cents: int

    @property
    def remaining_cents(self) -> int | None:
        return None if self.limit_cents is None else max(0, self.limit_cents - self.used_cents)


def member_month(team: Team, user) -> MemberMonth:
    limit = (
        MemberLimit.objects.filter(team=team, user=user)
        .values_list("monthly_limit_cents", flat=True)
        .first()
    )
    used = (
        MonthUsage.objects.filter(team=team, user=user, month=month_of())
        .values_list("used_cents", flat=True)
        .first()
    )
    return MemberMonth(limit_cents=limit, used_cents=used or 0)


def member_limits(team: Team) -> dict[int, MemberMonth]:
    """Every member's limit and month in the team, by user id (two queries)."""
    limits = dict(
        MemberLimit.objects.filter(team=team).values_list("user_id", "monthly_limit_cents")
    )
    used = dict(
        MonthUsage.objects.filter(team=team, user__isnull=False, month=month_of()).values_list(
            "user_id", "used_cents"
        )
    )
    return {
        user_id: MemberMonth(limit_cents=limits.get(user_id), used_cents=used.get(user_id, 0))
        for user_id in set(limits) | set(used)
    }


def approval_threshold_cents(team: Team) -> int | None:
    """Launches that can cost more than this wait for a manager's approval (None: never)."""
    return Budget.objects.filter(team=team).values_list("approval_above_cents", flat=True).first()


def top_ups_with_reference(reference: str, *, limit: int = 5) -> list[Transfer]:
    """Earlier top-ups (of any team) recorded under this reference, newest first: the review
    step warns that an invoice may be about to be paid in twice."""
    return list(
        Transfer.objects.filter(kind=TransferKind.TOP_UP, reference=reference.strip())
        .select_related("credit_account__team")
        .order_by("-created_at", "-id")[:limit]
    )


STEP_MAX = 2**31 - 1  # Transfer.step is a 32-bit column; a larger step number has no capture


def run_money_rows(run_id: UUID, *, steps: set[int]) -> list[Transfer]:
    """A run's hold and release, and the captures of the step numbers in `steps`, oldest
    first: what the run page's timeline shows of the ledger (each step's cost in its heading).

    One query over the run's transfers (indexed on run_id), whatever the number of steps."""
    wanted = sorted(step for step in steps if 1 <= step <= STEP_MAX)
    kinds = Q(kind__in=[TransferKind.HOLD, TransferKind.RELEASE])
    if wanted:
        kinds |= Q(kind=TransferKind.CAPTURE, step__in=wanted)
    return list(
        Transfer.objects.filter(kinds, run_id=run_id)
        .only("kind", "step", "amount_cents", "created_at", "memo")
        .order_by("id")
    )
