"""The schedule pages: the list with next run, last outcome and pause switch; a schedule's
history and spend; the form with presets, preview and clear errors; "Schedule this"."""

import pytest

from portal.teams.models import Role
from runs.models import Run
from schedules import services
from schedules.models import Schedule
from tests.api_world import launch
from tests.factories import place_hold
from tests.schedules.conftest import utc

pytestmark = pytest.mark.django_db

FORM = {
    "name": "Weekday leads",
    "preset": "weekdays",
    "at": "09:30",
    "weekday": "1",
    "day_of_month": "1",
    "cron": "",
    "timezone": "America/New_York",
    "catch_up": "skip",
    "enabled": "on",
    "machine_id": "vm-linux-1",
    "task": "Export the new leads",
    "cua_version": "v5",
    "max_steps": "10",
    "deadline_minutes": "",
    "on_awaiting_human": "pause",
}


@pytest.fixture
def bob(owner, client_for):
    return client_for(owner)


def test_a_member_creates_a_schedule_from_a_preset(bob, owner):
    response = bob.post("/teams/research/schedules/new/", FORM)

    schedule = Schedule.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/teams/research/schedules/{schedule.pk}/"
    assert (schedule.cron, schedule.timezone, schedule.created_by) == (
        "30 9 * * 1-5",
        "America/New_York",
        owner,
    )
    page = bob.get(response["Location"]).content.decode()
    # the next runs are shown in the schedule's own zone, not the viewer's
    assert "weekdays at 09:30" in page and "09:30 E" in page


def test_preview_shows_the_next_five_times_without_saving(bob):
    response = bob.post("/teams/research/schedules/new/", {**FORM, "preview": "1"})

    assert response.status_code == 200
    assert len(response.context["preview"]) == 5
    assert all(t.hour == 9 and t.minute == 30 for t in response.context["preview"])
    assert not Schedule.objects.exists()


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"preset": "custom", "cron": "0 9 30 2 *"}, "cron", "day-of-month"),
        ({"preset": "custom", "cron": ""}, "cron", "Give a cron expression"),
        ({"timezone": "Europe/Atlantis"}, "timezone", "Unknown time zone"),
        ({"at": ""}, "at", "Give the time of day"),
        ({"task": "  "}, "task", "Describe the task"),
        ({"deadline_minutes": "1441"}, "deadline_minutes", "at most 1,440 minutes"),
        ({"deadline_minutes": "0"}, "deadline_minutes", "at least 1 minute"),
        ({"deadline_minutes": "2.5"}, "deadline_minutes", "whole number of minutes"),
    ],
)
def test_a_schedule_that_cannot_work_is_a_form_error(bob, change, field, words):
    response = bob.post("/teams/research/schedules/new/", {**FORM, **change})

    assert response.status_code == 400
    assert words in " ".join(response.context["form"].errors[field])
    assert not Schedule.objects.exists()


def test_the_schedule_form_takes_the_deadline_in_minutes_and_stores_seconds(bob):
    response = bob.post("/teams/research/schedules/new/", {**FORM, "deadline_minutes": "45"})

    assert response.status_code == 302
    assert Schedule.objects.get().deadline_seconds == 2700


def test_editing_a_schedule_shows_its_deadline_in_minutes(bob, make_schedule):
    schedule = make_schedule(start=utc(2026, 5, 4, 7, 30), deadline_seconds=600)

    page = bob.get(f"/teams/research/schedules/{schedule.pk}/edit/").content.decode()

    assert "Deadline (minutes)" in page
    assert 'name="deadline_minutes" value="10"' in page


def test_a_run_the_wallet_cannot_cover_now_is_saved_with_a_warning(bob, funded):
    place_hold(funded, 4000)  # $10 left; each run can cost $15
    response = bob.post("/teams/research/schedules/new/", {**FORM, "max_steps": "300"}, follow=True)
    assert Schedule.objects.exists()
    assert "runs are skipped until it is topped up" in response.content.decode()


def test_the_list_shows_next_run_last_outcome_and_a_pause_switch(bob, make_schedule):
    schedule = make_schedule("0 * * * *", start=utc(2026, 5, 4, 7, 30))
    services.schedules_tick(now=utc(2026, 5, 4, 8, 0, 30))

    page = bob.get("/teams/research/schedules/").content.decode()
    assert "Leads export" in page and "every hour at :00" in page
    assert "launched" in page and "Pause Leads export" in page

    response = bob.post(
        f"/teams/research/schedules/{schedule.pk}/pause/", {"enabled": "off", "next": "list"}
    )
    assert response.status_code == 302 and response["Location"] == "/teams/research/schedules/"
    schedule.refresh_from_db()
    assert not schedule.enabled and schedule.next_occurrence_at is None


def test_the_schedule_page_shows_history_spend_and_why_it_paused_itself(bob, make_schedule):
    schedule = make_schedule("0 * * * *", start=utc(2026, 5, 4, 7, 30))
    services.schedules_tick(now=utc(2026, 5, 4, 8, 0, 30))
    Run.objects.filter(schedule_id=schedule.pk).update(charged_cents=35)
    Schedule.objects.filter(pk=schedule.pk).update(
        enabled=False, paused_reason="Paused itself after 3 occurrences in a row were skipped."
    )

    response = bob.get(f"/teams/research/schedules/{schedule.pk}/")
    page = response.content.decode()
    assert "Paused itself after 3 occurrences" in page
    assert "4 May 2026, 08:00" in page and "launched" in page
    [month] = response.context["spend"]
    assert (month.runs, month.charged_cents) == (1, 35)


def test_viewers_read_but_do_not_create_or_pause(funded, make_member, client_for, make_schedule):
    schedule = make_schedule("0 * * * *", start=utc(2026, 5, 4, 7, 30))
    viewer = client_for(make_member(funded, Role.VIEWER))

    assert viewer.get("/teams/research/schedules/").status_code == 200
    assert viewer.get(f"/teams/research/schedules/{schedule.pk}/").status_code == 200
    assert viewer.get("/teams/research/schedules/new/").status_code == 403
    assert (
        viewer.post(
            f"/teams/research/schedules/{schedule.pk}/pause/", {"enabled": "off"}
        ).status_code
        == 403
    )
    schedule.refresh_from_db()
    assert schedule.enabled


def test_a_member_may_not_edit_anothers_schedule_but_a_manager_may(
    funded, make_member, client_for, make_schedule
):
    schedule = make_schedule("0 * * * *", start=utc(2026, 5, 4, 7, 30))
    carol = client_for(make_member(funded, Role.MEMBER))
    alice = client_for(make_member(funded, Role.MANAGER))

    assert carol.get(f"/teams/research/schedules/{schedule.pk}/edit/").status_code == 403
    assert alice.get(f"/teams/research/schedules/{schedule.pk}/edit/").status_code == 200
    response = alice.post(f"/teams/research/schedules/{schedule.pk}/delete/")
    assert response.status_code == 302 and not Schedule.objects.exists()


def test_another_teams_schedule_is_404(other_team, make_member, client_for, make_schedule):
    schedule = make_schedule("0 * * * *", start=utc(2026, 5, 4, 7, 30))
    outsider = client_for(make_member(other_team, Role.MANAGER))

    assert outsider.get(f"/teams/research/schedules/{schedule.pk}/").status_code == 404
    assert outsider.get(f"/teams/ops/schedules/{schedule.pk}/").status_code == 404
    assert outsider.post(f"/teams/ops/schedules/{schedule.pk}/delete/").status_code == 404
    assert Schedule.objects.exists()


def test_schedule_this_on_a_run_page_prefills_the_form(bob, owner, funded):
    run = launch(funded, owner, task="Reconcile the invoices", max_steps=12, cua_version="v4")

    page = bob.get(f"/runs/{run.pk}/").content.decode()
    assert f"/teams/research/schedules/new/?from={run.pk}" in page

    form = bob.get(f"/teams/research/schedules/new/?from={run.pk}").context["form"]
    assert form.initial["task"] == "Reconcile the invoices"
    assert (form.initial["max_steps"], form.initial["cua_version"]) == (12, "v4")


def test_the_pages_cost_a_fixed_number_of_queries(
    bob, make_schedule, django_assert_max_num_queries
):
    # given twenty schedules with a few occurrences each
    schedules = [
        make_schedule("0 * * * *", start=utc(2026, 5, 4, 7, 30), name=f"export {n}")
        for n in range(20)
    ]
    for hour in (8, 9, 10):
        services.schedules_tick(now=utc(2026, 5, 4, hour, 0, 30))

    # then the list and a schedule's page stay within the pages' budget of ten queries
    with django_assert_max_num_queries(10):
        assert bob.get("/teams/research/schedules/").status_code == 200
    with django_assert_max_num_queries(10):
        assert bob.get(f"/teams/research/schedules/{schedules[0].pk}/").status_code == 200
