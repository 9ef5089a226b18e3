"""What a new user's walk through the portal asked for, in a real browser: a long run's first
events, billing admins who follow money into teams, names on what people did, money that reads
at a glance, and the smaller refusals that explain themselves."""

import re

import pytest
from django.core.cache import cache
from playwright.sync_api import expect

from portal.teams.models import Membership
from runs import services
from runs.models import Run, RunStatus
from runs.selectors import MACHINES_CACHE_KEY
from runs.services import IncomingEvent, LaunchRequest

PHONE = {"width": 390, "height": 844}


def _launch(demo, task, *, user="bob", max_steps=20):
    request = LaunchRequest(machine_id="vm-linux-1", task=task, max_steps=max_steps)
    run, _ = services.run_launch(team=demo.team("research"), user=demo.user(user), request=request)
    return run


@pytest.fixture
def long_run(demo):
    """A running run whose stream has told 300 things, the first of them "event 1"."""
    run = _launch(demo, "Read every ticket of the year")
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, upstream_id="up-long")
    services.events_ingest(
        run_id=run.pk,
        events=[IncomingEvent(seq, "text", {"text": f"event {seq}"}) for seq in range(1, 301)],
    )
    return run


def test_a_long_runs_first_event_is_reached_from_its_page(long_run, open_page):
    # given bob on the page of a run with 300 events (the page shows the latest 200)
    page = open_page("bob")
    page.goto(f"/runs/{long_run.pk}/")
    timeline = page.get_by_role("region", name="Live progress")
    expect(timeline).to_contain_text("event 300")
    expect(timeline.get_by_text("event 1", exact=True)).to_have_count(0)

    # when he asks for what came before
    page.get_by_role("link", name="Show earlier events").click()

    # then the run's first event is there, and nothing earlier is offered
    expect(page.get_by_text("event 1", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Show earlier events")).to_have_count(0)
    expect(page.get_by_role("link", name="Latest events")).to_be_visible()


def test_a_billing_admin_reads_a_teams_runs_and_starts_on_billing(demo, open_page):
    run = _launch(demo, "Export the quarter's invoices")
    page = open_page("admin")

    # their first page is the billing overview, not "you are not in a team yet"
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Billing")
    expect(page.get_by_role("main")).not_to_contain_text("not in a team")

    # the team's dashboard, runs and the run page open for reading...
    for path, heading in (
        ("/teams/research/", "Research"),
        ("/teams/research/runs/", "Runs"),
        (f"/runs/{run.pk}/", run.task),
    ):
        assert page.goto(path).status == 200, path
        expect(page.get_by_role("heading", level=1)).to_contain_text(heading)

    # ...with no way to launch, cancel or rerun: they are not a member
    main = page.get_by_role("main")
    expect(main.get_by_role("button", name="Cancel run")).to_have_count(0)
    expect(main.get_by_role("link", name="Run again")).to_have_count(0)
    page.goto("/teams/research/runs/")
    expect(page.get_by_role("link", name="Launch a run")).to_have_count(0)
    assert page.goto("/teams/research/runs/new/").status == 403


def test_who_cancelled_a_run_is_named_to_everyone_who_reads_it(demo, open_page):
    run = _launch(demo, "Clean up the shared drive")

    # when bob cancels his run (and confirms)
    bob = open_page("bob")
    bob.goto(f"/runs/{run.pk}/")
    bob.once("dialog", lambda dialog: dialog.accept())
    bob.get_by_role("button", name="Cancel run").click()
    expect(bob.get_by_role("status").first).to_contain_text("Cancel")

    # then victor, who reads the team's runs, sees who did it on the timeline
    victor = open_page("victor")
    victor.goto(f"/runs/{run.pk}/")
    timeline = victor.get_by_role("region", name="Live progress")
    expect(timeline).to_contain_text(re.compile(r"Cancel\w*.*\bbob\b", re.S))


def test_who_resumed_a_paused_run_is_named_with_the_note(demo, open_page):
    run = _launch(demo, "Log in to the supplier portal")
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.AWAITING_HUMAN, upstream_id="up-resume", awaiting_human_reason="2FA code"
    )

    # when alice (a manager) resumes bob's paused run with a note
    alice = open_page("alice")
    alice.goto(f"/runs/{run.pk}/")
    alice.get_by_label(re.compile("note", re.I)).first.fill("Code was 481516")
    alice.get_by_role("button", name=re.compile("^Resume")).first.click()
    expect(alice.get_by_role("region", name="Live progress")).to_contain_text("Resume requested")
    # and Coasty reports the run resumed (with the note it was sent)
    from runs.services import IncomingEvent

    services.events_ingest(
        run_id=run.pk, events=[IncomingEvent(1, "resumed", {"note": "Code was 481516"})]
    )

    # then bob, reading his run, sees who resumed it and what they wrote
    bob = open_page("bob")
    bob.goto(f"/runs/{run.pk}/")
    timeline = bob.get_by_role("region", name="Live progress")
    expect(timeline).to_contain_text(re.compile(r"Resum\w*.*481516", re.S))
    expect(timeline).to_contain_text(re.compile(r"Resum\w*.*\balice\b", re.S))


def test_credits_and_debits_read_signed_and_coloured(demo, open_page):
    from billing.services import wallet_adjust

    team = demo.team("research")
    wallet_adjust(
        team=team,
        amount_cents=25,
        direction="debit",
        reason="Take back a double credit",
        actor=demo.user("admin"),
        idempotency_key="browser-debit",
    )
    page = open_page("alice")
    page.goto("/teams/research/wallet/")

    debit = page.locator(".amount.debit").first
    credit = page.locator(".amount.credit").first
    expect(debit).to_contain_text("−$0.25")
    expect(credit).to_contain_text("+$50.00")
    red, green = (el.evaluate("e => getComputedStyle(e).color") for el in (debit, credit))
    assert red != green


def test_a_top_up_takes_dollars_as_people_write_them_and_warns_of_a_reused_invoice(demo, open_page):
    from billing.services import wallet_top_up

    wallet_top_up(
        team=demo.team("research"),
        amount_cents=1000,
        reference="INV-77",
        actor=demo.user("admin"),
        idempotency_key="browser-inv-77",
    )
    page = open_page("admin")
    page.goto("/billing/")
    page.get_by_role("link", name="Top up Research").click()

    # "$1,000" is a thousand dollars, not "Enter a number."
    page.get_by_label("Amount (US$)").fill("$1,000")
    page.get_by_label(re.compile("Invoice|Reference")).fill("INV-77")
    page.get_by_role("button", name=re.compile("Review")).click()

    main = page.get_by_role("main")
    expect(main).to_contain_text("$1,000.00")
    expect(main).to_contain_text("This reference was used before.")
    expect(main).not_to_contain_text("Enter a number")


def test_an_unknown_machine_is_refused_on_the_form_with_the_list(demo, open_page):
    cache.set(
        MACHINES_CACHE_KEY,
        [
            {"id": "vm-linux-1", "name": "Linux desktop", "status": "ready"},
            {"id": "vm-win-2", "name": "Windows desktop", "status": "ready"},
        ],
        300,
    )
    page = open_page("bob")
    page.goto("/teams/research/runs/new/")
    page.get_by_label("Machine", exact=True).fill("vm-typo")
    page.get_by_label("Task", exact=True).fill("Export the leads")
    page.get_by_role("button", name="Launch run").click()

    expect(page.get_by_role("main")).to_contain_text("Coasty has no machine “vm-typo”")
    expect(page.get_by_role("main")).to_contain_text("vm-linux-1, vm-win-2")
    assert Run.objects.count() == 0


def test_the_last_manager_cannot_be_removed_and_the_page_says_why(demo, open_page):
    assert Membership.objects.filter(team=demo.team("research"), role="manager").count() == 1
    page = open_page("alice")
    page.goto("/teams/research/members/")

    row = page.get_by_role("row").filter(has_text="alice")
    remove = row.get_by_role("button", name=re.compile("^Remove"))
    expect(remove).to_be_disabled()
    expect(row).to_contain_text(re.compile("only manager", re.I))


def test_a_refusal_outside_a_team_names_what_is_missing(demo, open_page):
    # carol is in ops, not research: the refusal must not speak of "your role in this team"
    page = open_page("carol")
    page.goto("/billing/")
    main = page.get_by_role("main")
    expect(main).not_to_contain_text("your role in this team")
    expect(main).to_contain_text(re.compile("billing admin", re.I))


@pytest.mark.parametrize("viewport", [None, PHONE], ids=["desktop", "phone"])
def test_the_dashboard_says_the_window_of_each_figure_and_draws_icons(demo, open_page, viewport):
    options = {"viewport": viewport} if viewport else {}
    cancelled = _launch(demo, "A run cancelled before it began")
    Run.objects.filter(pk=cancelled.pk).update(status=RunStatus.CANCELLED)
    page = open_page("bob", **options)
    page.goto("/teams/research/")

    # each figure says its window, and a cancelled run is counted among the runs
    main = page.get_by_role("main")
    expect(main).to_contain_text(re.compile(r"this month|last 30 days|last 7 days", re.I))
    expect(main).to_contain_text(re.compile(r"1 cancelled", re.I))

    # an empty state's icon is drawn (inline SVG), never an emoji that shows as an empty box
    # where no emoji font is installed
    page.goto("/teams/research/runs/?status=failed")
    expect(page.locator("main .empty-icon svg").first).to_be_visible()
    emoji = page.evaluate(
        r"""() => /[\u{1F300}-\u{1FAFF}\u{2600}-\u{27BF}]/u.test(document.body.innerText)"""
    )
    assert not emoji
