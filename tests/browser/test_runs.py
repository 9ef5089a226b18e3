"""A member launches, watches, resumes and cancels runs in a real browser, against the live
portal, a real django-q2 worker and the Coasty simulator."""

import re

from playwright.sync_api import expect

from billing.selectors import wallet_summary
from runs.models import Run, RunStatus
from tests.browser.pages import (
    LIVE_TIMEOUT_MS,
    SameDocument,
    launch_run,
    money,
    stat,
    status_badge,
    wait_for_steps,
)

START = 5000  # seed_demo's top-up of each team, in cents
STEP = 5  # cents per completed step on v5


def test_a_member_launches_a_run_and_watches_it_succeed_live(stack, demo, open_page):
    # given bob on his team's runs page
    page = open_page("bob")
    page.get_by_role("navigation", name="Team").get_by_role("link", name="Runs").click()
    page.get_by_role("link", name="Launch a run").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Launch a run")

    # when he launches a six-step run from the form
    page.get_by_label("Maximum steps").fill("10")
    expect(page.locator("#cost-max")).to_have_text("$0.50 (10 × $0.05)")
    launch_run(page, task="[steps=6] [slow] Export last week's new leads as CSV", max_steps=10)

    # then the run page opens and updates itself, without a reload, until the run succeeds
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}/$"))
    expect(page.get_by_role("status").first).to_contain_text("Run launched")
    watch = SameDocument(page)
    first_status = status_badge(page).inner_text()
    assert first_status != "Succeeded"
    expect(status_badge(page)).to_have_text("Succeeded", timeout=LIVE_TIMEOUT_MS)
    expect(stat(page, "Steps")).to_contain_text("6 of 10")
    expect(
        page.get_by_text(f"Settled: {money(50 - 6 * STEP)} returned to the wallet.")
    ).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(stat(page, "Cost")).to_contain_text(f"{money(6 * STEP)} of {money(50)} held")
    expect(page.locator("#live-announcer")).to_have_text("Run succeeded: 6 steps, $0.30 charged.")
    expect(page.locator("#live-announcer")).to_have_attribute("role", "status")
    statuses = watch.statuses_seen()
    assert statuses and statuses[-1] == "Succeeded", statuses
    assert len(set([first_status, *statuses])) > 1, "the status never changed on the page"
    progress = page.get_by_role("progressbar", name="Steps completed")
    expect(progress).to_have_attribute("aria-valuenow", "6")
    expect(progress).to_have_attribute("aria-valuemax", "10")

    # and the wallet dropped by exactly steps × price
    run = Run.objects.get()
    assert (run.status, run.steps_completed, run.charged_cents) == (RunStatus.SUCCEEDED, 6, 30)
    page.get_by_role("navigation", name="Team").get_by_role("link", name="Wallet").click()
    expect(stat(page, "Available")).to_have_text(money(START - 6 * STEP))
    expect(stat(page, "Held")).to_have_text(money(0))
    wallet = wallet_summary(demo.team("research"))
    assert wallet.available_cents == START - 6 * STEP and wallet.held_cents == 0


def test_a_paused_run_is_resumed_with_a_note_from_the_run_page(stack, demo, open_page):
    # given a run that stops for a human after its first step
    page = open_page("bob")
    page.goto("/teams/research/runs/new/")
    launch_run(
        page, task="[pause] [steps=3] Log in to the CRM and download the invoices", max_steps=10
    )

    # when it waits for a human, bob writes a note and resumes it from the run page
    human = page.get_by_role("region", name="The agent needs a human")
    expect(human).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(status_badge(page)).to_have_text("Awaiting human")
    expect(page.locator("#live-announcer")).to_contain_text("The agent needs a human")
    human.get_by_label("Note for the agent").fill("Solved the captcha; carry on.")
    human.get_by_role("button", name="Resume").click()

    # then the request is acknowledged, the run finishes, and the note is on the timeline
    expect(page.get_by_role("status").first).to_contain_text("Resume requested")
    expect(status_badge(page)).to_have_text("Succeeded", timeout=LIVE_TIMEOUT_MS)
    timeline = page.get_by_role("region", name="Timeline")
    expect(timeline.get_by_role("listitem").filter(has_text="Resumed")).to_contain_text(
        "“Solved the captcha; carry on.”"
    )
    expect(human).to_have_count(0)
    run = Run.objects.get()
    assert run.status == RunStatus.SUCCEEDED
    assert run.events.get(type="resumed").data["note"] == "Solved the captcha; carry on."


def test_cancelling_a_running_run_gives_the_unused_hold_back(stack, demo, open_page):
    # given a run that would go on for 200 steps (a $10.00 hold)
    page = open_page("bob")
    page.goto("/teams/research/runs/new/")
    launch_run(page, task="[forever] [slow] Watch the support inbox", max_steps=200)
    expect(stat(page, "Cost")).to_contain_text(f"of {money(200 * STEP)} held")

    # when it has done a couple of steps and bob cancels it (and confirms)
    wait_for_steps(page, 2)
    expect(status_badge(page)).to_have_text("Running")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel run").click()

    # then it ends cancelled and the unused part of the hold comes back
    expect(page.get_by_role("status").first).to_contain_text("Cancel requested")
    expect(status_badge(page)).to_have_text("Cancelled", timeout=LIVE_TIMEOUT_MS)
    expect(
        page.get_by_text(re.compile(r"Settled: \$[\d.]+ returned to the wallet\."))
    ).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    run = Run.objects.get()
    assert run.status == RunStatus.CANCELLED and run.settled_at
    assert run.steps_completed >= 2 and run.charged_cents == run.steps_completed * STEP
    expect(stat(page, "Cost")).to_contain_text(f"{money(run.charged_cents)} of {money(1000)} held")
    page.get_by_role("navigation", name="Team").get_by_role("link", name="Wallet").click()
    expect(stat(page, "Held")).to_have_text(money(0))
    expect(stat(page, "Available")).to_have_text(money(START - run.charged_cents))
    wallet = wallet_summary(demo.team("research"))
    assert (wallet.held_cents, wallet.available_cents) == (0, START - run.charged_cents)
