"""The schedules endpoints (the contract's "Schedules"): fields, roles, isolation between
teams, validation in the error envelope, and the occurrences' history."""

import pytest
from django.test import override_settings

from portal.teams.models import Role
from runs.models import Run
from schedules import services
from schedules.models import Schedule
from tests.api_world import error_of
from tests.factories import MembershipFactory, UserFactory
from tests.schedules.conftest import utc

pytestmark = pytest.mark.django_db

LIST_URL = "/api/v1/teams/research/schedules/"
BODY = {
    "name": "Weekday leads",
    "cron": "0 9 * * 1-5",
    "timezone": "Europe/Berlin",
    "catch_up": "once",
    "run": {"machine_id": "vm-linux-1", "task": "Export the new leads", "max_steps": 10},
}


def create(client, body=None):
    response = client.post(LIST_URL, body or BODY, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_a_member_creates_a_schedule_and_sees_the_next_five_times_in_its_zone(world, bob):
    schedule = create(bob)

    assert set(schedule) == {
        "id", "name", "cron", "timezone", "enabled", "catch_up", "run", "next_occurrences",
        "created_by",
    }  # fmt: skip
    assert (schedule["cron"], schedule["timezone"], schedule["enabled"]) == (
        "0 9 * * 1-5",
        "Europe/Berlin",
        True,
    )
    assert schedule["catch_up"] == "once" and schedule["created_by"] == world.member.username
    assert schedule["run"] == {
        "machine_id": "vm-linux-1",
        "task": "Export the new leads",
        "cua_version": "v5",
        "max_steps": 10,
        "deadline_seconds": None,
        "on_awaiting_human": "pause",
    }
    assert len(schedule["next_occurrences"]) == 5
    assert all("T09:00:00+0" in t for t in schedule["next_occurrences"])  # Berlin local time


def test_defaults_are_utc_enabled_and_skip(bob):
    body = {k: v for k, v in BODY.items() if k not in ("timezone", "catch_up")}
    schedule = create(bob, body)
    assert (schedule["timezone"], schedule["enabled"], schedule["catch_up"]) == (
        "UTC",
        True,
        "skip",
    )


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"cron": "0 9 31 2 *"}, "cron", "day-of-month"),
        ({"cron": "0 9 * *"}, "cron", "five fields"),
        ({"cron": 9}, "cron", "Give a string"),
        ({"timezone": "Europe/Atlantis"}, "timezone", "Unknown time zone"),
        ({"catch_up": "all"}, "catch_up", "not a valid choice"),
        ({"enabled": "yes"}, "enabled", "JSON boolean"),
        ({"every": "day"}, "every", "Unknown field"),
        ({"run": {**BODY["run"], "max_steps": "10"}}, "run.max_steps", "whole number"),
        ({"run": {**BODY["run"], "priority": 1}}, "run.priority", "Unknown field"),
        ({"run": {"task": "no machine"}}, "run.machine_id", "required"),
        ({"name": "  "}, "name", "blank"),
    ],
)
def test_invalid_schedules_are_400_naming_the_field(bob, change, field, words):
    error = error_of(bob.post(LIST_URL, {**BODY, **change}, format="json"), 400)
    assert error["code"] == "VALIDATION_ERROR"
    assert field in error["fields"], error
    assert words in " ".join(error["fields"][field])
    assert not Schedule.objects.exists()


@override_settings(SCHEDULES_MAX_RUN_COST_CENTS=1000)
def test_a_run_above_the_cap_is_refused_with_its_cost(bob):
    body = {**BODY, "run": {**BODY["run"], "max_steps": 300}}
    error = error_of(bob.post(LIST_URL, body, format="json"), 400)
    assert "could cost up to $15.00" in error["fields"]["run.max_steps"][0]


def test_viewers_read_but_do_not_create(world, bob, api_client_for):
    create(bob)
    viewer = api_client_for(world.viewer)

    assert len(viewer.get(LIST_URL).json()["results"]) == 1
    error = error_of(viewer.post(LIST_URL, BODY, format="json"), 403)
    assert error["code"] == "PERMISSION_DENIED" and "member role" in error["message"]


def test_another_teams_schedule_is_404_everywhere(world, bob, api_client_for):
    schedule = create(bob)
    outsider = api_client_for(world.outsider)
    url = f"/api/v1/schedules/{schedule['id']}/"

    for response in (
        outsider.get(url),
        outsider.patch(url, {"enabled": False}, format="json"),
        outsider.delete(url),
        outsider.get(url + "launches/"),
        outsider.get(LIST_URL),
        outsider.post(LIST_URL, BODY, format="json"),
    ):
        assert error_of(response, 404)["code"] == "NOT_FOUND"
    assert Schedule.objects.get().enabled


def test_members_change_their_own_schedules_and_managers_any(world, bob, api_client_for):
    schedule = create(bob)
    url = f"/api/v1/schedules/{schedule['id']}/"
    carol = UserFactory(username="carol")
    MembershipFactory(team=world.team, user=carol, role=Role.MEMBER)

    error = error_of(api_client_for(carol).patch(url, {"name": "mine"}, format="json"), 403)
    assert "only their own schedules" in error["message"]

    manager = api_client_for(world.manager)
    response = manager.patch(url, {"run": {"max_steps": 5}, "enabled": False}, format="json")
    assert response.status_code == 200, response.content
    changed = response.json()
    assert changed["run"]["max_steps"] == 5 and changed["run"]["task"] == "Export the new leads"
    # paused: the five times it would fire once resumed, as the contract has it
    assert changed["enabled"] is False and len(changed["next_occurrences"]) == 5
    assert changed["created_by"] == world.member.username  # still launches as its owner

    resumed = bob.patch(url, {"enabled": True}, format="json").json()
    assert len(resumed["next_occurrences"]) == 5

    assert bob.delete(url).status_code == 204
    assert error_of(bob.get(url), 404)["code"] == "NOT_FOUND"


def test_launches_list_each_occurrence_and_the_run_shows_its_schedule(world, bob):
    schedule = create(bob, {**BODY, "cron": "0 * * * *", "timezone": "UTC"})
    Schedule.objects.filter(pk=schedule["id"]).update(next_occurrence_at=utc(2026, 5, 4, 8))
    for hour in (8, 9, 10):
        services.schedules_tick(now=utc(2026, 5, 4, hour, 0, 30))

    page = bob.get(f"/api/v1/schedules/{schedule['id']}/launches/?limit=2").json()
    assert [r["occurrence"] for r in page["results"]] == [
        "2026-05-04T10:00:00Z",
        "2026-05-04T09:00:00Z",
    ]
    first = page["results"][0]
    assert first["outcome"] == "launched" and first["reason"] == ""
    assert page["next"] is not None
    rest = bob.get(page["next"]).json()
    assert [r["occurrence"] for r in rest["results"]] == ["2026-05-04T08:00:00Z"]
    assert rest["next"] is None

    run = bob.get(f"/api/v1/runs/{first['run']}/").json()
    assert run["schedule"] == schedule["id"]
    assert bob.get(f"/api/v1/runs/{world.run.pk}/").json()["schedule"] is None
    assert Run.objects.filter(schedule_id=schedule["id"]).count() == 3


def test_the_schedule_endpoints_are_in_the_openapi_description(bob):
    schema = bob.get("/api/schema/?format=json").json()
    assert {
        "/api/v1/teams/{slug}/schedules/",
        "/api/v1/schedules/{schedule_id}/",
        "/api/v1/schedules/{schedule_id}/launches/",
    } <= set(schema["paths"])
    assert "schedule" in schema["components"]["schemas"]["Run"]["properties"]
