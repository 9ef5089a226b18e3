"""A paused run waits in the inbox, and is resumed from there, in a real browser against the
live portal, a real django-q2 worker and the simulator; the team's demo endpoint and the bell
hear about the pause on the way."""

import time

from playwright.sync_api import expect

from portal.notifications.models import Notification, WebhookDelivery
from runs.models import Run, RunStatus
from tests.browser.pages import LIVE_TIMEOUT_MS, launch_run


def wait_until(condition, timeout=LIVE_TIMEOUT_MS / 1000):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_a_paused_run_is_resumed_from_the_inbox(stack, demo, open_page):
    # given a run of bob's that stops for a human
    page = open_page("bob")
    page.goto("/teams/research/runs/new/")
    launch_run(page, task="[pause] [steps=3] Log in to the supplier portal", max_steps=10)
    assert wait_until(lambda: Run.objects.filter(status=RunStatus.AWAITING_HUMAN).exists())
    # and the worker has told bob (the bell) and the team's endpoint (a signed delivery)
    assert wait_until(lambda: Notification.objects.filter(user__username="bob").exists())
    assert wait_until(
        lambda: WebhookDelivery.objects.filter(
            event_type="run.awaiting_human", status="delivered"
        ).exists()
    )

    # when bob opens his inbox from the header
    page.goto("/teams/research/")
    expect(page.get_by_role("link", name="Notifications: 1 unread")).to_be_visible()
    page.get_by_role("link", name="Inbox", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Inbox")
    entry = page.locator("[data-inbox-entry=awaiting_human]")
    expect(entry).to_have_count(1)
    expect(entry).to_contain_text("Log in to the supplier portal")
    expect(entry).to_contain_text("waiting")
    # and resumes it there with a note
    entry.get_by_label("Note for the agent").fill("Code entered; carry on.")
    entry.get_by_role("button", name="Resume").click()

    # then he is back on the inbox, the resume is acknowledged, and the run finishes
    expect(page).to_have_url(f"{page.url.split('/inbox/')[0]}/inbox/")
    expect(page.get_by_role("status").first).to_contain_text("Resume requested")
    assert wait_until(lambda: Run.objects.get().status == RunStatus.SUCCEEDED)
    run = Run.objects.get()
    assert run.events.get(type="resumed").data["note"] == "Code entered; carry on."
    page.reload()
    expect(page.locator("[data-inbox-entry]")).to_have_count(0)
