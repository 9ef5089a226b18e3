"""Runs pages: roles on every view, the launch form's validation, run again, filters and pages."""

import uuid

import pytest
from django.urls import reverse

from runs import services
from runs.models import PendingAction, Run, RunStatus
from runs.services import LaunchRequest
from tests.factories import top_up

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(team, other_team, make_member):
    top_up(team, 5000)
    bob = make_member(team, "member", username="bob")
    run, _ = services.run_launch(
        team=team,
        user=bob,
        request=LaunchRequest(machine_id="vm-linux-1", task="[pause] Log in", max_steps=10),
    )
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.AWAITING_HUMAN, upstream_id="up-1", awaiting_human_reason="captcha"
    )
    run.refresh_from_db()
    return {
        "run": run,
        "viewer": make_member(team, "viewer", username="victor"),
        "member": bob,
        "manager": make_member(team, "manager", username="alice"),
        "outsider": make_member(other_team, "manager", username="carol"),
    }


LAUNCH_FORM = {
    "machine_id": "vm-linux-1",
    "task": "Export the leads",
    "cua_version": "v5",
    "max_steps": "10",
    "deadline_minutes": "",
    "on_awaiting_human": "pause",
    "instructions": "",
    "system_prompt": "",
}

# (name, method, needs member role, url kind)
VIEWS = [
    ("run_list", "get", False, "team"),
    ("run_launch", "get", True, "team"),
    ("run_launch", "post", True, "team"),
    ("run_detail", "get", False, "run"),
    ("run_live", "get", False, "run"),
    ("run_cancel", "post", True, "run"),
    ("run_resume", "post", True, "run"),
]


@pytest.mark.parametrize(("name", "method", "needs_member", "kind"), VIEWS)
@pytest.mark.parametrize("who", ["outsider", "viewer", "member", "manager"])
def test_roles_on_every_runs_view(setup, client_for, name, method, needs_member, kind, who):
    run = setup["run"]
    url = reverse(name, args=[run.team.slug] if kind == "team" else [run.pk])
    payload = (
        {**LAUNCH_FORM, "launch_token": str(uuid.uuid4())}
        if name == "run_launch"
        else {"note": "ok"}
    )
    before = (Run.objects.count(), Run.objects.get(pk=run.pk).pending_action)

    response = getattr(client_for(setup[who]), method)(url, payload if method == "post" else None)

    if who == "outsider":
        assert response.status_code == 404
    elif who == "viewer" and needs_member:
        assert response.status_code == 403
        assert "member role" in response.content.decode()
    else:
        # an allowed role: a page, or the action done and a redirect to the run
        assert response.status_code == (302 if method == "post" else 200)
        count, pending = before
        assert (Run.objects.count(), Run.objects.get(pk=run.pk).pending_action) == {
            "run_launch": (count + 1, pending),
            "run_cancel": (count, PendingAction.CANCEL),
            "run_resume": (count, PendingAction.RESUME),
        }.get(name if method == "post" else "", before)
        if name in ("run_list", "run_detail"):
            assert "[pause] Log in" in response.content.decode()
    if who in ("outsider", "viewer") and method == "post":
        assert (Run.objects.count(), Run.objects.get(pk=run.pk).pending_action) == before


def test_viewer_sees_runs_without_launch_or_action_buttons(setup, client_for):
    run = setup["run"]
    listing = (
        client_for(setup["viewer"]).get(reverse("run_list", args=[run.team.slug])).content.decode()
    )
    page = client_for(setup["viewer"]).get(reverse("run_detail", args=[run.pk])).content.decode()

    assert "[pause] Log in" in listing
    assert "Launch a run" not in listing
    assert "Cancel run" not in page and ">Resume<" not in page
    assert "A member of the team can resume or cancel it." in page


def test_member_sees_resume_and_cancel_on_a_paused_run(setup, client_for):
    page = (
        client_for(setup["member"])
        .get(reverse("run_detail", args=[setup["run"].pk]))
        .content.decode()
    )
    assert "captcha" in page and ">Resume<" in page and "Cancel run" in page


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_steps", "0", "greater than or equal to 1"),
        ("max_steps", "1001", "less than or equal to 1000"),
        ("max_steps", "ten", "Enter a whole number"),
        ("deadline_minutes", "1441", "at most 1,440 minutes (a day)"),
        ("deadline_minutes", "0", "at least 1 minute"),
        ("deadline_minutes", "-5", "at least 1 minute"),
        ("deadline_minutes", "1.5", "a whole number of minutes"),
        ("deadline_minutes", "ten", "a whole number of minutes"),
        ("task", "   ", "Describe the task for the agent."),
        ("task", "x" * 16001, "at most 16000 characters"),
        ("machine_id", "m" * 129, "at most 128 characters"),
        ("cua_version", "v2", "Select a valid choice"),
        ("on_awaiting_human", "ignore", "Select a valid choice"),
        ("system_prompt", "s" * 32001, "at most 32000 characters"),
    ],
)
def test_launch_form_errors_are_inline_and_create_nothing(setup, client_for, field, value, message):
    response = client_for(setup["member"]).post(
        reverse("run_launch", args=["research"]),
        {**LAUNCH_FORM, field: value, "launch_token": str(uuid.uuid4())},
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Run.objects.count() == 1


def test_launch_the_wallet_cannot_cover_is_a_form_error(setup, client_for):
    response = client_for(setup["member"]).post(
        reverse("run_launch", args=["research"]),
        {**LAUNCH_FORM, "max_steps": "1000", "launch_token": str(uuid.uuid4())},
    )
    body = response.content.decode()
    assert response.status_code == 400
    assert "cannot cover this run" in body and "$50.00" in body and "$49.50" in body
    assert Run.objects.count() == 1


def test_a_resent_launch_form_creates_one_run(setup, client_for):
    client = client_for(setup["member"])
    form = {**LAUNCH_FORM, "launch_token": str(uuid.uuid4())}

    first = client.post(reverse("run_launch", args=["research"]), form)
    second = client.post(reverse("run_launch", args=["research"]), form)

    assert first.status_code == second.status_code == 302
    assert first.url == second.url
    assert Run.objects.count() == 2  # the fixture's run and this one


def test_run_again_prefills_the_form(setup, client_for):
    run = setup["run"]
    page = client_for(setup["member"]).get(
        reverse("run_launch", args=["research"]) + f"?from={run.pk}"
    )
    body = page.content.decode()
    assert "[pause] Log in" in body and 'value="10"' in body


@pytest.mark.parametrize(
    ("minutes", "seconds"), [("30", 1800), ("1", 60), ("1440", 86400), ("", None)]
)
def test_the_launch_form_takes_the_deadline_in_minutes_and_stores_seconds(
    setup, client_for, minutes, seconds
):
    # when a member launches with a deadline in minutes
    response = client_for(setup["member"]).post(
        reverse("run_launch", args=["research"]),
        {**LAUNCH_FORM, "deadline_minutes": minutes, "launch_token": str(uuid.uuid4())},
    )

    # then the run keeps (and will send Coasty) the seconds
    assert response.status_code == 302, response.content
    run = Run.objects.exclude(pk=setup["run"].pk).get()
    assert run.deadline_seconds == seconds
    assert run.submit_body.get("deadline_seconds") == seconds


def test_the_run_page_says_the_deadline_in_minutes(setup, client_for):
    run = setup["run"]
    Run.objects.filter(pk=run.pk).update(deadline_seconds=1800)
    page = client_for(setup["member"]).get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "<dt>Deadline</dt><dd>30 min</dd>" in page


def test_the_launch_form_ignores_a_posted_deadline_in_seconds(setup, client_for):
    # the old field name is no way around the minutes (nor their bounds)
    client_for(setup["member"]).post(
        reverse("run_launch", args=["research"]),
        {**LAUNCH_FORM, "deadline_seconds": "999999", "launch_token": str(uuid.uuid4())},
    )
    assert Run.objects.exclude(pk=setup["run"].pk).get().deadline_seconds is None


def test_run_again_shows_the_deadline_in_minutes_rounded_up(setup, client_for):
    run = setup["run"]
    Run.objects.filter(pk=run.pk).update(deadline_seconds=90)  # launched through the API
    page = client_for(setup["member"]).get(
        reverse("run_launch", args=["research"]) + f"?from={run.pk}"
    )
    body = page.content.decode()
    assert "Deadline (minutes)" in body
    assert 'name="deadline_minutes" value="2"' in body


def test_run_again_from_another_teams_run_prefills_nothing(
    setup, client_for, other_team, make_member
):
    top_up(other_team, 500)
    ops_run, _ = services.run_launch(
        team=other_team,
        user=setup["outsider"],
        request=LaunchRequest(machine_id="vm-ops", task="secret ops task", max_steps=2),
    )
    page = client_for(setup["member"]).get(
        reverse("run_launch", args=["research"]) + f"?from={ops_run.pk}"
    )
    assert "secret ops task" not in page.content.decode()


def test_runs_list_filters_and_pages(team, make_member, client_for):
    top_up(team, 100_000)
    bob = make_member(team, "member", username="bob")
    for n in range(30):
        services.run_launch(
            team=team,
            user=bob,
            request=LaunchRequest(machine_id="vm", task=f"task number {n}", max_steps=1),
        )
    client = client_for(bob)
    url = reverse("run_list", args=["research"])

    first = client.get(url)
    assert first.status_code == 200
    page1 = first.context["page"]
    assert len(page1.items) == 25 and page1.older and not page1.newer
    second = client.get(url, {"before": page1.older}).context["page"]
    assert len(second.items) == 5 and second.newer and not second.older
    assert {r.pk for r in page1.items}.isdisjoint({r.pk for r in second.items})
    back = client.get(url, {"after": second.newer}).context["page"]
    assert [r.pk for r in back.items] == [r.pk for r in page1.items]

    searched = client.get(url, {"q": "number 7"}).context["page"]
    assert [r.task for r in searched.items] == ["task number 7"]
    assert client.get(url, {"status": "succeeded"}).context["page"].items == []
    assert client.get(url, {"before": "garbage!"}).status_code == 200
    bad_dates = client.get(url, {"since": "2026-12-01", "until": "2026-11-01"})
    assert bad_dates.status_code == 400 and "before the start date" in bad_dates.content.decode()


def test_launch_form_offers_coasty_machines(setup, client_for, settings):
    from runs.simulator.testing import run_simulator

    with run_simulator(speed=50) as sim:
        settings.COASTY_BASE_URL = sim.base_url
        page = client_for(setup["member"]).get(reverse("run_launch", args=["research"]))
    body = page.content.decode()
    assert '<option value="vm-linux-1">' in body
    assert "unavailable" not in body


def test_launch_form_falls_back_to_typing_when_coasty_is_down(setup, client_for):
    page = client_for(setup["member"]).get(reverse("run_launch", args=["research"]))
    assert page.status_code == 200
    assert "machine list is unavailable right now; type the machine id" in page.content.decode()


def test_run_again_with_a_malformed_id_is_an_empty_form(setup, client_for):
    page = client_for(setup["member"]).get(
        reverse("run_launch", args=["research"]) + "?from=not-a-uuid"
    )
    assert page.status_code == 200


def test_runs_list_refuses_dates_and_cursors_at_the_edge_of_the_calendar(
    team, make_member, client_for
):
    import base64

    top_up(team, 1_000)
    bob = make_member(team, "member", username="bob")
    services.run_launch(
        team=team, user=bob, request=LaunchRequest(machine_id="vm", task="kept", max_steps=1)
    )
    client = client_for(bob)
    client.cookies["tz"] = "Asia/Tokyo"
    url = reverse("run_list", args=["research"])

    # a far date is a form error, not an overflow
    for dates in ({"until": "9999-12-31"}, {"since": "0001-01-01"}):
        page = client.get(url, dates)
        assert page.status_code == 400, dates
        assert "Pick a date" in page.content.decode()

    # a made-up cursor at year 1, or without a zone, falls back to the newest runs
    run_id = uuid.uuid4()
    for stamp in ("0001-01-01T00:00:00+05:00", "2026-11-28T10:00:00"):
        cursor = base64.urlsafe_b64encode(f"{stamp}|{run_id}".encode()).decode()
        for key in ("before", "after"):
            page = client.get(url, {key: cursor})
            assert page.status_code == 200, (stamp, key)
            assert [r.task for r in page.context["page"].items] == ["kept"]
            assert "page link was malformed" in page.content.decode()
