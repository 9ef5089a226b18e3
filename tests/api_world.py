"""A small organisation for the API tests: two funded teams, a person of each role, a billing
admin, and a run waiting for a human with a few stored events."""

from dataclasses import dataclass

from portal.teams.models import Role
from runs import services as run_services
from runs.models import Run, RunEvent, RunStatus
from tests.factories import BillingAdminFactory, MembershipFactory, TeamFactory, UserFactory
from tests.factories import top_up as fund

LAUNCH_BODY = {"machine_id": "vm-linux-1", "task": "Export last week's leads", "max_steps": 10}
RUNS_URL = "/api/v1/teams/research/runs/"


@dataclass
class World:
    team: object
    other_team: object
    member: object
    viewer: object
    manager: object
    outsider: object
    billing_admin: object
    run: Run


def make_world() -> World:
    team = TeamFactory(slug="research", name="Research")
    other_team = TeamFactory(slug="ops", name="Ops")
    fund(team, 5000)
    fund(other_team, 1000)
    people = {}
    for role in (Role.MEMBER, Role.VIEWER, Role.MANAGER):
        people[role] = UserFactory(username=f"research-{role}")
        MembershipFactory(team=team, user=people[role], role=role)
    outsider = UserFactory(username="ops-member")
    MembershipFactory(team=other_team, user=outsider, role=Role.MANAGER)
    run = launch(team, people[Role.MEMBER])
    run = awaiting_human(run)
    for seq, kind in enumerate(["status", "reasoning", "awaiting_human"], start=1):
        RunEvent.objects.create(run=run, seq=seq, type=kind, data={"n": seq})
    return World(
        team=team,
        other_team=other_team,
        member=people[Role.MEMBER],
        viewer=people[Role.VIEWER],
        manager=people[Role.MANAGER],
        outsider=outsider,
        billing_admin=BillingAdminFactory(username="treasurer"),
        run=run,
    )


def launch(team, user, **overrides) -> Run:
    request = run_services.LaunchRequest(**{**LAUNCH_BODY, **overrides})
    run, _ = run_services.run_launch(team=team, user=user, request=request)
    return run


def awaiting_human(run: Run) -> Run:
    """As if Coasty had accepted the run and it now waits for a person."""
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.AWAITING_HUMAN, upstream_id=f"run_{run.pk.hex[:12]}", last_seq=3
    )
    run.refresh_from_db()
    return run


def error_of(response, status):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    return body["error"]


def schedule_and_endpoint(team, *, owner, manager):
    """A daily schedule of `team` owned by `owner`, and a webhook endpoint made by `manager`."""
    from portal.notifications.services import endpoint_create
    from schedules.services import schedule_create

    run = {"machine_id": "vm-linux-1", "task": "t", "cua_version": "v5", "max_steps": 2}
    schedule = schedule_create(
        team=team,
        user=owner,
        values={"name": "Daily", "cron": "0 9 * * *", "timezone": "UTC", **run},
    )
    endpoint, _secret = endpoint_create(
        team=team, user=manager, url="https://hooks.example.com/in", events=["run.failed"]
    )
    return schedule, endpoint
