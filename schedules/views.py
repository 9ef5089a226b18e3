"""The schedule pages under /teams/<slug>/schedules/: list, one schedule, create, edit, pause."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing.selectors import wallet_summary
from portal.teams.access import TeamRequest, team_view
from portal.teams.models import Role
from runs import selectors as run_selectors
from runs.models import Run
from schedules import cron, selectors, services
from schedules.forms import ScheduleForm
from schedules.models import Schedule

COMMON_ZONES = [
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Paris",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Asia/Singapore",
    "Australia/Sydney",
]


@team_view()
@require_GET
def schedule_list(request: TeamRequest, slug: str) -> HttpResponse:
    schedules = list(selectors.schedules_for_team(request.team))
    for schedule in schedules:
        schedule.when = cron.describe(schedule.cron)  # type: ignore[attr-defined]
        schedule.editable = services.may_edit(request.membership, schedule)  # type: ignore[attr-defined]
    return render(
        request,
        "schedules/schedule_list.html",
        {"team": request.team, "membership": request.membership, "schedules": schedules},
    )


def _schedule_of_team(request: TeamRequest, schedule_id: uuid.UUID) -> Schedule:
    try:
        return Schedule.objects.select_related("team", "created_by").get(
            pk=schedule_id, team=request.team
        )
    except Schedule.DoesNotExist:
        raise Http404("No such schedule.") from None


@team_view()
@require_GET
def schedule_detail(request: TeamRequest, slug: str, schedule_id: uuid.UUID) -> HttpResponse:
    schedule = _schedule_of_team(request, schedule_id)
    launches = list(selectors.launches_of(schedule)[:50])
    return render(
        request,
        "schedules/schedule_detail.html",
        {
            "team": request.team,
            "membership": request.membership,
            "schedule": schedule,
            "when": cron.describe(schedule.cron),
            "upcoming": selectors.upcoming(schedule),
            "launches": launches,
            "spend": selectors.spend_per_month(schedule),
            "editable": services.may_edit(request.membership, schedule),
            "max_cost_cents": services.run_max_cost_cents(
                cua_version=schedule.cua_version, max_steps=schedule.max_steps
            ),
        },
    )


@team_view(Role.MEMBER, action="create schedules")
@require_http_methods(["GET", "POST"])
def schedule_create(request: TeamRequest, slug: str) -> HttpResponse:
    if request.method == "POST":
        form = ScheduleForm(request.POST)
        return _save_or_preview(request, form, schedule=None)
    form = ScheduleForm(initial=_initial_from_run(request))
    return _render_form(request, form, schedule=None)


@team_view(Role.MEMBER, action="edit schedules")
@require_http_methods(["GET", "POST"])
def schedule_edit(request: TeamRequest, slug: str, schedule_id: uuid.UUID) -> HttpResponse:
    schedule = _schedule_of_team(request, schedule_id)
    _require_editable(request, schedule)
    if request.method == "POST":
        form = ScheduleForm(request.POST)
        return _save_or_preview(request, form, schedule=schedule)
    form = ScheduleForm(initial=ScheduleForm.initial_for(schedule))
    return _render_form(request, form, schedule=schedule)


@team_view(Role.MEMBER, action="pause or resume schedules")
@require_POST
def schedule_toggle(request: TeamRequest, slug: str, schedule_id: uuid.UUID) -> HttpResponse:
    schedule = _schedule_of_team(request, schedule_id)
    _require_editable(request, schedule)
    enable = request.POST.get("enabled") == "on"
    services.schedule_set_enabled(schedule=schedule, enabled=enable)
    messages.success(
        request,
        f"“{schedule.name}” resumed: it runs next at its next scheduled time."
        if enable
        else f"“{schedule.name}” paused: nothing launches until it is resumed.",
    )
    if request.POST.get("next") == "list":
        return redirect("schedule_list", slug)
    return redirect("schedule_detail", slug, schedule.pk)


@team_view(Role.MEMBER, action="delete schedules")
@require_POST
def schedule_delete(request: TeamRequest, slug: str, schedule_id: uuid.UUID) -> HttpResponse:
    schedule = _schedule_of_team(request, schedule_id)
    _require_editable(request, schedule)
    services.schedule_delete(schedule=schedule)
    messages.success(request, f"“{schedule.name}” deleted. The runs it launched stay.")
    return redirect("schedule_list", slug)


def _require_editable(request: TeamRequest, schedule: Schedule) -> None:
    if not services.may_edit(request.membership, schedule):
        raise PermissionDenied(
            "Members change their own schedules; this one is "
            f"{schedule.created_by.get_username() if schedule.created_by else 'no one'}'s. "
            "Ask one of the team's managers."
        )


def _save_or_preview(request: TeamRequest, form: ScheduleForm, *, schedule: Schedule | None):
    if not form.is_valid():
        return _render_form(request, form, schedule=schedule)
    if "preview" in request.POST:
        return _render_form(request, form, schedule=schedule)
    values = form.schedule_values()
    try:
        if schedule is None:
            schedule = services.schedule_create(team=request.team, user=request.user, values=values)
            messages.success(request, f"“{schedule.name}” created.")
        else:
            schedule = services.schedule_update(schedule=schedule, values=values)
            messages.success(request, f"“{schedule.name}” saved.")
    except services.ScheduleInvalid as exc:
        for field, message in exc.fields.items():
            form.add_error(field if field in form.fields else None, message)
        return _render_form(request, form, schedule=schedule)
    warning = services.cost_warning(
        team=request.team, cua_version=schedule.cua_version, max_steps=schedule.max_steps
    )
    if warning:
        messages.warning(request, warning)
    return redirect("schedule_detail", request.team.slug, schedule.pk)


def _render_form(request: TeamRequest, form: ScheduleForm, *, schedule: Schedule | None):
    preview: list = []
    preview_error = ""
    warning = ""
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        try:
            preview = selectors.preview(data["cron"], data["timezone"])
        except cron.InvalidSchedule as exc:
            preview_error = str(exc)
        warning = services.cost_warning(
            team=request.team, cua_version=data["cua_version"], max_steps=data["max_steps"]
        )
    elif schedule is not None:
        preview = selectors.preview(schedule.cron, schedule.timezone)
    machines, machines_note = run_selectors.machines_for_launch()
    return render(
        request,
        "schedules/schedule_form.html",
        {
            "team": request.team,
            "membership": request.membership,
            "form": form,
            "schedule": schedule,
            "preview": preview,
            "preview_error": preview_error,
            "cost_warning": warning,
            "wallet": wallet_summary(request.team),
            "machines": machines,
            "machines_note": machines_note,
            "zones": COMMON_ZONES,
        },
        status=400 if form.errors else 200,
    )


def _initial_from_run(request: TeamRequest) -> dict:
    """ "Schedule this" on a run page: the run's launch fields, every day at 09:00 to start."""
    initial: dict = {"preset": cron.Preset.DAILY}
    source_id = request.GET.get("from")
    if not source_id:
        return initial
    try:
        run = Run.objects.get(pk=source_id, team=request.team)
    except (Run.DoesNotExist, ValueError, ValidationError):
        return initial
    initial.update({name: getattr(run, name) for name in services.TEMPLATE_FIELDS})
    initial["name"] = run.task[:60]
    return initial
