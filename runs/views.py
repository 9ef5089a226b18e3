import dataclasses
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing.errors import InsufficientFunds, MonthlyCapExceeded
from billing.prices import step_price_cents
from billing.selectors import budget_status, member_month, run_money_rows, wallet_summary
from portal.core.csv_export import csv_lines, spreadsheet_safe
from portal.core.http import AuthenticatedRequest
from portal.core.money import format_cents
from portal.teams.access import TeamReadRequest, TeamRequest, require_membership, team_view
from portal.teams.models import Role
from runs import selectors, services
from runs.forms import LaunchForm, ResumeForm, RunFilterForm
from runs.models import CuaVersion, Run, RunEvent, RunStatus
from runs.presenters import present_event, present_events, present_timeline
from runs.services.approval import approval_expiry
from runs.upstream import webhooks_disabled_reason

logger = logging.getLogger(__name__)


def _filters(form: RunFilterForm) -> selectors.RunFilters:
    """The list's filters from its form; none when the form is unbound or not valid."""
    if not form.is_valid():
        return selectors.RunFilters()
    data = form.cleaned_data
    return selectors.RunFilters(
        status=data["status"] or "",
        creator_id=int(data["creator"]) if data["creator"] else None,
        since=data["since"],
        until=data["until"],
        search=data["q"].strip(),
    )


@team_view(billing_admins_read=True)
@require_GET
def run_list(request: TeamReadRequest, slug: str) -> HttpResponse:
    return _run_list(request, template="runs/run_list.html")


@team_view(billing_admins_read=True)
@require_GET
def run_list_live(request: TeamReadRequest, slug: str) -> HttpResponse:
    """The runs list's results, fetched every few seconds while the list is open (htmx)."""
    return _run_list(request, template="runs/_run_list_live.html", fragment=True)


def _run_list(request: TeamReadRequest, *, template: str, fragment: bool = False) -> HttpResponse:
    team = request.team
    form = RunFilterForm(request.GET or None, creators=selectors.team_creators(team))
    filters = _filters(form)
    runs = selectors.runs_for_team(team, filters)
    try:
        page = selectors.keyset_page(
            runs, before=request.GET.get("before", ""), after=request.GET.get("after", "")
        )
    except selectors.InvalidCursor:
        if not fragment:
            messages.warning(request, "That page link was malformed; showing the newest runs.")
        page = selectors.keyset_page(runs)
    filtered = any(request.GET.get(k) for k in ("status", "creator", "since", "until", "q"))
    return render(
        request,
        template,
        {
            "team": team,
            "membership": request.membership,
            "form": form,
            "page": page,
            "filtered": filtered,
            "fragment": fragment,
            "waiting_count": selectors.runs_waiting_for(request.user),
            "waiting_here": [run for run in page.items if run.status == RunStatus.AWAITING_HUMAN],
        },
        status=200 if not form.errors else 400,
    )


EXPORT_COLUMNS = [
    "id",
    "task",
    "status",
    "launched_by",
    "created_at",
    "ended_at",
    "duration_seconds",
    "steps_completed",
    "max_steps",
    "charged_cents",
    "held_cents",
    "machine_id",
    "cua_version",
    "failure_reason",
]


@team_view(billing_admins_read=True)
@require_GET
def run_export(request: TeamReadRequest, slug: str) -> HttpResponse | StreamingHttpResponse:
    """The runs list, with its filters, as CSV streamed a row at a time (the ledger's way).

    Filters that are not valid are refused (400, plain text) rather than left out: a download
    that quietly held every run would pass for the filtered list.
    """
    team = request.team
    form = RunFilterForm(request.GET or None, creators=selectors.team_creators(team))
    if form.is_bound and not form.is_valid():
        lines = [
            f"{form[name].label if name in form.fields else 'Filters'}: {message}"
            for name, messages_ in form.errors.items()
            for message in messages_
        ]
        return HttpResponse(
            "The runs were not exported: correct these filters and try again.\n"
            + "\n".join(lines)
            + "\n",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    runs = selectors.runs_for_team(team, _filters(form))
    filename = f"{team.slug}-runs-{timezone.localdate().isoformat()}.csv"
    response = StreamingHttpResponse(
        csv_lines(EXPORT_COLUMNS, _export_rows(runs)), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _export_rows(runs) -> Iterator[list]:
    for run in runs.iterator(chunk_size=1000):
        yield [
            run.pk,
            spreadsheet_safe(run.task),
            run.status,
            spreadsheet_safe(run.created_by.get_username() if run.created_by else ""),
            run.created_at.isoformat(),
            run.finished_at.isoformat() if run.finished_at else "",
            "" if run.duration_seconds is None else run.duration_seconds,
            run.steps_completed,
            run.max_steps,
            run.charged_cents,
            run.held_cents,
            spreadsheet_safe(run.machine_id),
            run.cua_version,
            spreadsheet_safe(run.failure_reason),
        ]


@team_view(Role.MEMBER, action="launch runs", billing_admins_read=True)
@require_http_methods(["GET", "POST"])
def run_launch(request: TeamRequest, slug: str) -> HttpResponse:
    team = request.team
    machines, machines_note = selectors.machines_for_launch()
    if request.method == "POST":
        form = LaunchForm(request.POST, machines=machines)
        if form.is_valid():
            try:
                run, created = services.run_launch(
                    team=team,
                    user=request.user,
                    request=services.LaunchRequest.from_fields(form.cleaned_data),
                    launch_token=form.cleaned_data["launch_token"],
                )
            except InsufficientFunds as exc:
                form.add_error(None, _insufficient_funds_message(exc))
            except MonthlyCapExceeded as exc:
                form.add_error(None, str(exc))  # says how much is left this month
            else:
                if created and run.awaits_approval:
                    messages.info(
                        request,
                        "Run created. Its maximum cost is above the team's approval threshold, "
                        "so it holds its money and starts once another manager approves it.",
                    )
                elif created:
                    messages.success(
                        request, "Run launched. It starts as soon as Coasty accepts it."
                    )
                else:
                    messages.info(
                        request, "That form was already submitted; here is the run it launched."
                    )
                return redirect("run_detail", run_id=run.pk)
    else:
        form = LaunchForm(initial={"launch_token": uuid.uuid4(), **_initial_from(request)})
    prices = {version.value: step_price_cents(version.value) for version in CuaVersion}
    return render(
        request,
        "runs/run_launch.html",
        {
            "team": team,
            "form": form,
            "machines": machines,
            "machines_note": machines_note,
            "wallet": wallet_summary(team),
            "budget": budget_status(team),
            "my_month": member_month(team, request.user),
            "prices": prices,
            "webhooks_note": webhooks_disabled_reason(),
        },
        status=400 if form.errors else 200,
    )


def _initial_from(request: TeamRequest) -> dict:
    """ "Run again": the launch fields of an earlier run of this team."""
    source_id = request.GET.get("from")
    if not source_id:
        return {}
    try:
        source = Run.objects.get(pk=source_id, team=request.team)
    except (Run.DoesNotExist, ValueError, ValidationError):  # unknown, or not a run id at all
        return {}
    return dataclasses.asdict(services.LaunchRequest.from_run(source))


def _insufficient_funds_message(exc: InsufficientFunds) -> str:
    return (
        f"The team's wallet cannot cover this run: it can cost up to "
        f"{format_cents(exc.needed_cents)}, and {format_cents(exc.available_cents)} is "
        "available. Lower the maximum steps, or ask a billing admin to top up the wallet."
    )


@login_required
@require_GET
def run_detail(request: TeamReadRequest, run_id) -> HttpResponse:
    run, membership = selectors.run_for_reader(request.user, run_id)
    # The team navigation and the wallet banner follow request.team, as on the team's pages.
    request.team, request.membership = run.team, membership
    before = selectors.timeline_before(request.GET.get("before"))
    hide_billing = _billing_hidden(request)
    context = _detail_context(run, membership, before, hide_billing=hide_billing)
    return render(request, "runs/run_detail.html", context)


@login_required
@require_GET
def run_live(request: AuthenticatedRequest, run_id) -> HttpResponse:
    """The live part of the run page, fetched every couple of seconds while the run is live."""
    run, membership = selectors.run_for_reader(request.user, run_id)
    before = selectors.timeline_before(request.GET.get("before"))
    hide_billing = _billing_hidden(request)
    context = {
        **_detail_context(run, membership, before, hide_billing=hide_billing),
        "fragment": True,
    }
    return render(request, "runs/_run_live.html", context)


def _billing_hidden(request: HttpRequest) -> bool:
    """`?billing=hide`: the timeline leaves out its rows about money (any other value shows
    them). A link, so the choice works without JavaScript and pages and refreshes keep it."""
    return request.GET.get("billing") == "hide"


def _timeline_query(*, before: int | None, hide_billing: bool) -> str:
    """The query string of a timeline page ("" for the latest page with billing rows)."""
    params: dict[str, str | int] = {}
    if before is not None:
        params["before"] = before
    if hide_billing:
        params["billing"] = "hide"
    return f"?{urlencode(params)}" if params else ""


def _detail_context(
    run: Run, membership, before: int | None = None, *, hide_billing: bool = False
) -> dict:
    timeline = selectors.run_timeline(run, before=before)
    events = present_events(timeline.events)
    # One query for the page's money: the captures of its steps (their costs), hold, release.
    money = run_money_rows(run.pk, steps={row.step for row in events if row.step is not None})
    entries = present_timeline(
        events,
        money,
        first_page=timeline.earlier is None,
        latest_page=before is None,
        hide_billing=hide_billing,
        step_before=present_event(timeline.preceding).step if timeline.preceding else None,
    )
    return {
        "run": run,
        "team": run.team,
        "membership": membership,
        "events": events,
        "entries": entries,
        "hide_billing": hide_billing,
        "timeline": timeline,
        "timeline_urls": {
            "here": _timeline_query(before=before, hide_billing=hide_billing),
            "toggle": _timeline_query(before=before, hide_billing=not hide_billing),
            "latest": _timeline_query(before=None, hide_billing=hide_billing),
            "earlier": _timeline_query(before=timeline.earlier, hide_billing=hide_billing),
        },
        "live_final": _live_final(run, timeline.last_upstream),
        "resume_form": ResumeForm(),
        # A manager of the team other than the launcher (runs.services.approval decides again).
        "can_decide": run.awaits_approval
        and membership is not None
        and membership.role == Role.MANAGER
        and membership.user_id != run.created_by_id,
        "approval_expires_at": run.created_at + approval_expiry() if run.awaits_approval else None,
        "webhooks_note": "" if run.webhook_url else webhooks_disabled_reason(),
    }


# How long after settling the run page keeps asking for events that have not arrived.
LIVE_EVENTS_GRACE = timedelta(seconds=60)


def _live_final(run: Run, last_event: RunEvent | None) -> bool:
    """Whether the run page can stop polling: nothing it shows will change any more.

    Settling reads Coasty's figures and does not wait for the event stream, so a run can be
    settled (its money final) while the follower is still storing its last events. The page
    keeps polling until the stream's `done` is stored, or for a minute after settling when it
    never comes (a stream that was lost; the timeline then shows what did arrive).
    """
    if run.status in (RunStatus.SUBMIT_FAILED, RunStatus.REJECTED):
        return True
    if run.status == RunStatus.CANCELLED and run.settled_at and not run.upstream_id:
        return True  # ended before Coasty had it (withdrawn while awaiting approval)
    if not (run.is_terminal and run.settled_at):
        return False
    stream_ended = last_event is not None and last_event.type == "done"
    return stream_ended or timezone.now() - run.settled_at > LIVE_EVENTS_GRACE


@login_required
@require_POST
def run_cancel(request: AuthenticatedRequest, run_id) -> HttpResponse:
    run, reader = selectors.run_for_reader(request.user, run_id)
    require_membership(reader, Role.MEMBER, action="cancel runs")
    try:
        services.run_request_cancel(run=run, user=request.user)
    except services.RunActionRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            "Cancel requested. The unused part of the hold returns to the wallet when the run ends.",
        )
    return _back_to(request, run)


@login_required
@require_POST
def run_resume(request: AuthenticatedRequest, run_id) -> HttpResponse:
    run, reader = selectors.run_for_reader(request.user, run_id)
    require_membership(reader, Role.MEMBER, action="resume runs")
    form = ResumeForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The note is too long: keep it under 2,000 characters.")
        return _back_to(request, run)
    try:
        services.run_request_resume(run=run, user=request.user, note=form.cleaned_data["note"])
    except services.RunActionRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Resume requested. The agent carries on in a moment.")
    return _back_to(request, run)


def _back_to(request: AuthenticatedRequest, run: Run) -> HttpResponse:
    """After an action: the page it was taken from (the inbox acts inline), else the run."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect("run_detail", run_id=run.pk)


@login_required
@require_POST
def run_approve(request: AuthenticatedRequest, run_id) -> HttpResponse:
    run, reader = selectors.run_for_reader(request.user, run_id)
    require_membership(reader, Role.MANAGER, action="approve runs")
    try:
        services.run_approve(run=run, user=request.user)
    except (services.NotAnApprover, services.RunActionRefused) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Approved. The run starts as soon as Coasty accepts it.")
    return redirect("run_detail", run_id=run.pk)


@login_required
@require_POST
def run_reject(request: AuthenticatedRequest, run_id) -> HttpResponse:
    run, reader = selectors.run_for_reader(request.user, run_id)
    require_membership(reader, Role.MANAGER, action="reject runs")
    try:
        services.run_reject(run=run, user=request.user, reason=request.POST.get("reason", ""))
    except (services.NotAnApprover, services.RunActionRefused) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Rejected. Its hold went back to the wallet.")
    return redirect("run_detail", run_id=run.pk)


# --- Webhooks ---------------------------------------------------------------------------------


@csrf_exempt
@require_POST
def coasty_webhook(request: HttpRequest, run_id) -> JsonResponse:
    """Coasty's signed delivery for one run: verified before anything is stored, applied once,
    answered fast. See services.webhook_receive for the order of things.

    The body is read only when the service asks for it: a rate-limited sender's or an oversized
    body never is.
    """
    try:
        size = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        size = 0
    answer = services.webhook_receive(
        run_id=run_id,
        body=lambda: request.body,
        size=size,
        headers=dict(request.headers),
        client_address=_client_address(request),
    )
    response = JsonResponse(
        {"ok": 200 <= answer.status < 300, "message": answer.message}, status=answer.status
    )
    if answer.retry_after:
        response["Retry-After"] = str(answer.retry_after)
    if answer.status < 500:
        # Refusals are counted and sampled by the service; Django's own WARNING line per 4xx
        # ("Not Found: ...") would let a flood of forgeries write the log instead.
        response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def _client_address(request: HttpRequest) -> str:
    """Who sent the request, for the webhook's per-address limit. Behind the TLS proxy
    (BEHIND_TLS_PROXY) REMOTE_ADDR is the proxy itself, so the address the proxy appended to
    X-Forwarded-For is used: the right-most one, the only one a client cannot forge."""
    if settings.BEHIND_TLS_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
        if forwarded:
            return forwarded
    return request.META.get("REMOTE_ADDR", "")
