"""Fixtures of the schedules tests: a funded team, a member who owns schedules, and a way
to make a schedule whose clock starts at a given instant."""

import datetime as dt

import pytest

from schedules import cron
from schedules.models import Schedule
from tests.factories import top_up

TEMPLATE = {
    "machine_id": "vm-linux-1",
    "task": "Export the new leads",
    "cua_version": "v5",
    "max_steps": 10,  # 50¢ held per run
    "deadline_seconds": None,
    "on_awaiting_human": "pause",
}


def utc(*args):
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.fixture
def funded(team):
    top_up(team, 5000)
    return team


@pytest.fixture
def owner(funded, make_member):
    return make_member(funded, "member", username="bob")


@pytest.fixture
def make_schedule(funded, owner):
    """make_schedule(cron, zone, start=<instant the clock starts>, **fields) -> Schedule."""

    def make(expression="0 * * * *", zone="UTC", *, start, team=None, user=None, **fields):
        schedule = Schedule.objects.create(
            team=team or funded,
            created_by=user or owner,
            name=fields.pop("name", "Leads export"),
            cron=expression,
            timezone=zone,
            enabled_at=start,
            next_occurrence_at=cron.next_occurrence(expression, zone, after=start),
            **{**TEMPLATE, **fields},
        )
        return schedule

    return make
