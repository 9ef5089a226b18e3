"""The money pages: a team's wallet (members of any role), and the billing admin's pages.

Each view parses input, calls one service or a few selectors, and renders. Queries per page are
bounded whatever the size of the ledger (keyset pages, one-query summaries).
"""

from collections.abc import Iterator
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing import ledger_groups, selectors, services
from billing.charts import spend_chart
from billing.errors import BillingError, DiscrepancyNotOpen, InsufficientFunds
from billing.forms import (
    AdjustmentForm,
    BudgetForm,
    ExplainForm,
    LedgerFilterForm,
    MemberLimitForm,
    ThresholdForm,
    TopUpForm,
    fresh_key,
)
from billing.models import Reconciliation
from portal.core.csv_export import csv_lines, spreadsheet_safe
from portal.core.http import AuthenticatedRequest
from portal.core.money import format_cents
from portal.teams.access import (
    TeamReadRequest,
    billing_admin_required,
    is_billing_admin,
    team_view,
)
from portal.teams.models import Membership, Role, Team

# A team's wallet is for its members (any role) and for billing admins; others get 404.
wallet_access = team_view(billing_admins_read=True)


# --- A team's wallet ------------------------------------------------------------------------------


@wallet_access
@require_GET
def wallet(request: TeamReadRequest, slug: str) -> HttpResponse:
    team = request.team
    filter_form = LedgerFilterForm(request.GET or None)
    # One row per run (expanded to its steps on demand) and one per other entry.
    page = ledger_groups.ledger_groups_page(
        selectors.ledger_for_team(team, filter_form.filters()),
        before=_cursor(request, "before"),
        after=_cursor(request, "after"),
    )
    summary, spend = selectors.wallet_with_spend(team, days=30)
    return render(
        request,
        "billing/wallet.html",
        {
            "team": team,
            "membership": request.membership,
            "summary": summary,
            "chart": spend_chart(spend),
            "filter_form": filter_form,
            "filter_query": filter_form.query_string(),
            "filtered": filter_form.filters().active,
            "page": page,
            "groups": page.groups,
            "can_top_up": is_billing_admin(request.user),
            "budget": selectors.budget_status(team),
            "budget_url": reverse("budget", args=[team.slug]),
        },
    )


@wallet_access
@require_GET
def wallet_run_entries(request: TeamReadRequest, slug: str, run_id: UUID) -> HttpResponse:
    """One run's entries in the team's ledger (its hold, each step charge, its release), a page
    at a time, with the ledger's filters: the fragment a run's row loads when expanded (htmx),
    or a page of its own without JavaScript. Another team's run, or a run with no entries in
    this wallet, is a 404."""
    team = request.team
    filter_form = LedgerFilterForm(request.GET or None)
    transfers = selectors.ledger_for_team(team, filter_form.filters())
    entries = ledger_groups.run_entries(transfers, run_id, after=_cursor(request, "after"))
    if not entries.rows and _cursor(request, "after") is None:
        raise Http404("This run has no entries in this wallet.")
    run = ledger_groups.describe_runs([run_id]).get(run_id)
    context = {
        "team": team,
        "membership": request.membership,
        "run_id": run_id,
        "run": run,
        "entries": entries,
        "filter_query": filter_form.query_string(),
    }
    fragment = request.headers.get("HX-Request") == "true"
    response = render(
        request,
        "billing/includes/run_entries.html" if fragment else "billing/wallet_run.html",
        context,
    )
    patch_vary_headers(response, ["HX-Request"])  # one URL, two answers: never cache one as both
    return response


def _may_set_budget(request: TeamReadRequest) -> bool:
    membership = request.membership
    return is_billing_admin(request.user) or (
        membership is not None and membership.role == Role.MANAGER
    )


@wallet_access
@require_http_methods(["GET", "POST"])
def budget(request: TeamReadRequest, slug: str) -> HttpResponse:
    """A team's spend controls: the monthly budget, approval threshold and alerts (managers and
    billing admins set them), and members' monthly limits (managers set them). Everyone who may
    read the wallet sees them."""
    team = request.team
    can_set = _may_set_budget(request)
    can_set_limits = request.membership is not None and request.membership.role == Role.MANAGER
    status = selectors.budget_status(team)
    form = BudgetForm(
        initial={
            "monthly_limit": _dollars(status.monthly_limit_cents),
            "approval_above": _dollars(status.approval_above_cents),
            "alert_percents": ", ".join(str(p) for p in status.alert_percents),
        }
    )
    code = 200
    if request.method == "POST":
        if request.POST.get("form") == "limit":
            if not can_set_limits:
                raise PermissionDenied("Only the team's managers set members' limits.")
            limit_form = MemberLimitForm(request.POST)
            member = (
                Membership.objects.select_related("user")
                .filter(team=team, user__username=request.POST.get("username", ""))
                .first()
            )
            if limit_form.is_valid() and member is not None:
                services.member_limit_set(
                    team=team,
                    user=member.user,
                    monthly_limit_cents=limit_form.cleaned_data["monthly_limit"],
                    caused_by=request.user,
                )
                messages.success(request, f"{member.user.get_username()}'s limit is saved.")
                return redirect("budget", slug=team.slug)
            messages.error(
                request, "That limit was not saved: give an amount in dollars, or leave it empty."
            )
            code = 400
        else:
            if not can_set:
                raise PermissionDenied("Only the team's managers and billing admins set budgets.")
            form = BudgetForm(request.POST)
            if form.is_valid():
                try:
                    services.budget_set(
                        team=team,
                        monthly_limit_cents=form.cleaned_data["monthly_limit"],
                        approval_above_cents=form.cleaned_data["approval_above"],
                        alert_percents=form.cleaned_data["alert_percents"],
                        caused_by=request.user,
                    )
                except BillingError as exc:
                    form.add_error(None, str(exc))
                else:
                    messages.success(request, "Spend controls saved.")
                    return redirect("budget", slug=team.slug)
            code = 400
    limits = selectors.member_limits(team)
    members = [
        (m, month, _dollars(month.limit_cents if month else None))
        for m in Membership.objects.filter(team=team).select_related("user")
        for month in [limits.get(m.user_id)]
    ]
    return render(
        request,
        "billing/budget.html",
        {
            "team": team,
            "membership": request.membership,
            "budget": status,
            "form": form,
            "can_set": can_set,
            "can_set_limits": can_set_limits,
            "members": members,
            "time_zone": settings.TIME_ZONE,
        },
        status=code,
    )


def _dollars(cents: int | None) -> str:
    return "" if cents is None else f"{cents / 100:.2f}"


@wallet_access
@require_GET
def ledger_csv(request: TeamReadRequest, slug: str) -> HttpResponse | StreamingHttpResponse:
    """The team's ledger (with the page's filters) as CSV, streamed row by row.

    A filter that is not valid is refused (400, in plain text): unlike the page, which shows
    the error beside the ledger, a download that left the filter out would look like the
    filtered ledger and hold every transfer.
    """
    team = request.team
    filter_form = LedgerFilterForm(request.GET or None)
    if filter_form.is_bound and not filter_form.is_valid():
        lines = [
            f"{filter_form[name].label if name in filter_form.fields else 'Filters'}: {message}"
            for name, messages_ in filter_form.errors.items()
            for message in messages_
        ]
        return HttpResponse(
            "The ledger was not exported: correct these filters and try again.\n"
            + "\n".join(lines)
            + "\n",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    transfers = selectors.ledger_for_team(team, filter_form.filters())
    filename = f"{team.slug}-ledger-{timezone.localdate().isoformat()}.csv"
    response = StreamingHttpResponse(_csv_lines(transfers), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


CSV_COLUMNS = [
    "id",
    "created_at",
    "kind",
    "amount_cents",
    "available_change_cents",
    "held_change_cents",
    "spent_change_cents",
    "run_id",
    "step",
    "reference",
    "memo",
    "caused_by",
    "idempotency_key",
]


def _csv_lines(transfers) -> Iterator[str]:
    return csv_lines(CSV_COLUMNS, _csv_rows(transfers))


def _csv_rows(transfers) -> Iterator[list]:
    for transfer in transfers.iterator(chunk_size=2000):
        deltas = selectors.team_deltas(transfer)
        yield [
            transfer.pk,
            transfer.created_at.isoformat(),
            transfer.kind,
            transfer.amount_cents,
            deltas["available"],
            deltas["held"],
            deltas["spend"],
            transfer.run_id or "",
            transfer.step or "",
            spreadsheet_safe(transfer.reference),
            spreadsheet_safe(transfer.memo),
            spreadsheet_safe(transfer.caused_by),
            transfer.idempotency_key,
        ]


# --- Billing admin --------------------------------------------------------------------------------


@login_required
@billing_admin_required
@require_GET
def overview(request: AuthenticatedRequest) -> HttpResponse:
    return render(
        request,
        "billing/overview.html",
        {
            "overview": selectors.billing_overview(),
            "reconciliation": selectors.reconciliation_counts(),
        },
    )


@login_required
@billing_admin_required
@require_http_methods(["GET", "POST"])
def top_up(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    """Top up a team: form, then a review page, then confirm. The form's key makes a double
    submit of the confirmation land once."""
    team = get_object_or_404(Team, slug=slug)
    if request.method == "GET":
        return _render_team_admin(
            request, team, TopUpForm(initial={"idempotency_key": fresh_key()})
        )
    form = TopUpForm(request.POST)
    if not form.is_valid():
        return _render_team_admin(request, team, form, status=400)
    amount, reference, key = (
        form.cleaned_data["amount"],
        form.cleaned_data["reference"],
        form.cleaned_data["idempotency_key"],
    )
    if "edit" in request.POST:
        return _render_team_admin(request, team, form)
    if "confirm" not in request.POST:
        return render(
            request,
            "billing/top_up_review.html",
            {
                "team": team,
                "form": form,
                "summary": selectors.wallet_summary(team),
                "reference_used": selectors.top_ups_with_reference(reference),
            },
        )
    try:
        _transfer, created = services.wallet_top_up(
            team=team,
            amount_cents=amount,
            reference=reference,
            actor=request.user,
            idempotency_key=key,
        )
    except BillingError as exc:
        form.add_error(None, str(exc))
        return _render_team_admin(request, team, form, status=400)
    if not created:
        messages.info(request, "This top-up was already recorded; nothing was added twice.")
    else:
        messages.success(
            request, f"Added {format_cents(amount)} to {team.name}'s wallet ({reference})."
        )
    return redirect("billing_team", slug=team.slug)


@login_required
@billing_admin_required
@require_http_methods(["GET", "POST"])
def adjust(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    """Correct a team's available balance, with a reason: form, then a review page, then
    confirm, like a top-up. The form's key makes a double submit of the confirmation land once;
    a debit can take at most what the team has available."""
    team = get_object_or_404(Team, slug=slug)
    if request.method == "GET":
        return _render_adjust(
            request, team, AdjustmentForm(initial={"idempotency_key": fresh_key()})
        )
    form = AdjustmentForm(request.POST)
    if not form.is_valid():
        return _render_adjust(request, team, form, status=400)
    amount, direction, reason, key = (
        form.cleaned_data["amount"],
        form.cleaned_data["direction"],
        form.cleaned_data["reason"],
        form.cleaned_data["idempotency_key"],
    )
    if "edit" in request.POST:
        return _render_adjust(request, team, form)
    if "confirm" not in request.POST:
        summary = selectors.wallet_summary(team)
        if direction == "debit" and amount > summary.available_cents:
            # Said now rather than after the confirmation (the service checks again then).
            form.add_error("amount", _debit_too_large(team, summary.available_cents))
            return _render_adjust(request, team, form, status=400)
        change = amount if direction == "credit" else -amount
        return render(
            request,
            "billing/adjust_review.html",
            {
                "team": team,
                "form": form,
                "summary": summary,
                "available_after": summary.available_cents + change,
            },
        )
    try:
        _transfer, created = services.wallet_adjust(
            team=team,
            amount_cents=amount,
            direction=direction,
            reason=reason,
            actor=request.user,
            idempotency_key=key,
        )
    except InsufficientFunds as exc:
        form.add_error("amount", _debit_too_large(team, exc.available_cents))
        return _render_adjust(request, team, form, status=400)
    except BillingError as exc:
        form.add_error(None, str(exc))
        return _render_adjust(request, team, form, status=400)
    if not created:
        messages.info(request, "This adjustment was already recorded; nothing was moved twice.")
    elif direction == "credit":
        messages.success(
            request, f"Credited {format_cents(amount)} to {team.name}'s wallet ({reason})."
        )
    else:
        messages.success(
            request, f"Debited {format_cents(amount)} from {team.name}'s wallet ({reason})."
        )
    return redirect("billing_team", slug=team.slug)


def _debit_too_large(team: Team, available_cents: int) -> str:
    return (
        f"A debit can take at most {format_cents(available_cents)}, what {team.name} has "
        "available: a wallet never goes below zero."
    )


def _render_adjust(request, team, form, *, status=200):
    return render(
        request,
        "billing/adjust.html",
        {
            "team": team,
            "form": form,
            "summary": selectors.wallet_summary(team),
            "max_adjustment": settings.BILLING_TOP_UP_MAX_CENTS,
        },
        status=status,
    )


@login_required
@billing_admin_required
@require_GET
def team_admin(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    team = get_object_or_404(Team, slug=slug)
    return _render_team_admin(request, team, TopUpForm(initial={"idempotency_key": fresh_key()}))


@login_required
@billing_admin_required
@require_POST
def threshold(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    team = get_object_or_404(Team, slug=slug)
    form = ThresholdForm(request.POST)
    if not form.is_valid():
        return _render_team_admin(
            request,
            team,
            TopUpForm(initial={"idempotency_key": fresh_key()}),
            threshold_form=form,
            status=400,
        )
    services.wallet_set_low_balance_threshold(
        team=team, threshold_cents=form.cleaned_data["threshold"], actor=request.user
    )
    messages.success(
        request,
        f"{team.name}'s low-balance alert level is now {format_cents(form.cleaned_data['threshold'])}.",
    )
    return redirect("billing_team", slug=team.slug)


def _render_team_admin(request, team, top_up_form, *, threshold_form=None, status=200):
    summary = selectors.wallet_summary(team)
    recent = [
        (transfer, selectors.team_deltas(transfer))
        for transfer in selectors.ledger_for_team(team).filter(kind__in=["top_up", "adjustment"])[
            :10
        ]
    ]
    return render(
        request,
        "billing/team_admin.html",
        {
            "team": team,
            "summary": summary,
            "form": top_up_form,
            "threshold_form": threshold_form
            or ThresholdForm(
                initial={"threshold": f"{summary.low_balance_threshold_cents / 100:.2f}"}
            ),
            "recent": recent,
            "max_top_up": settings.BILLING_TOP_UP_MAX_CENTS,
        },
        status=status,
    )


@login_required
@billing_admin_required
@require_GET
def discrepancies(request: AuthenticatedRequest) -> HttpResponse:
    return render(
        request,
        "billing/discrepancies.html",
        {
            "open": selectors.open_discrepancies()[:200],
            "resolved": selectors.recently_resolved(),
            "counts": selectors.reconciliation_counts(),
        },
    )


@login_required
@billing_admin_required
@require_http_methods(["GET", "POST"])
def discrepancy(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    reconciliation = get_object_or_404(
        Reconciliation.objects.select_related("team", "hold", "resolved_by", "adjustment"), pk=pk
    )
    adjust_form = AdjustmentForm(
        initial={
            "idempotency_key": fresh_key(),
            "direction": "credit" if reconciliation.difference_cents > 0 else "debit",
            "amount": f"{abs(reconciliation.difference_cents) / 100:.2f}",
            "reason": f"Reconciliation of {reconciliation.hold.reference}",
        }
    )
    explain_form = ExplainForm()
    status = 200
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "adjust":
            adjust_form = AdjustmentForm(request.POST)
            if adjust_form.is_valid():
                try:
                    _resolved, created = services.reconciliation_resolve_with_adjustment(
                        reconciliation=reconciliation,
                        amount_cents=adjust_form.cleaned_data["amount"],
                        direction=adjust_form.cleaned_data["direction"],
                        reason=adjust_form.cleaned_data["reason"],
                        actor=request.user,
                        idempotency_key=adjust_form.cleaned_data["idempotency_key"],
                    )
                except DiscrepancyNotOpen as exc:
                    messages.warning(request, str(exc))
                    return redirect("billing_discrepancy", pk=reconciliation.pk)
                except BillingError as exc:
                    adjust_form.add_error(None, str(exc))
                else:
                    if not created:
                        messages.info(
                            request,
                            "This adjustment was already recorded; nothing was moved twice.",
                        )
                    else:
                        messages.success(
                            request, "Resolved with an adjustment on the team's ledger."
                        )
                    return redirect("billing_discrepancies")
        elif action == "explain":
            explain_form = ExplainForm(request.POST)
            if explain_form.is_valid():
                try:
                    services.reconciliation_mark_explained(
                        reconciliation=reconciliation,
                        note=explain_form.cleaned_data["note"],
                        actor=request.user,
                    )
                except DiscrepancyNotOpen as exc:
                    messages.warning(request, str(exc))
                    return redirect("billing_discrepancy", pk=reconciliation.pk)
                messages.success(request, "Marked as explained; no money moved.")
                return redirect("billing_discrepancies")
        status = 400
    return render(
        request,
        "billing/discrepancy.html",
        {
            "r": reconciliation,
            "adjust_form": adjust_form,
            "explain_form": explain_form,
            "wallet_url": reverse("wallet", args=[reconciliation.team.slug]),
        },
        status=status,
    )


def _cursor(request: HttpRequest, name: str) -> int | None:
    return selectors.ledger_cursor(request.GET.get(name, ""))
