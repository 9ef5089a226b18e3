"""The launch form in a browser: one launch per click however it is clicked, and a form the
browser brings back (Back button) is ready to use again."""

import re

from playwright.sync_api import expect

from runs.models import Run


def test_a_double_click_sends_one_request_and_launches_one_run(demo, open_page):
    # given bob on the launch form, counting what it sends
    page = open_page("bob")
    page.goto("/teams/research/runs/new/")
    posts = []
    page.on("request", lambda r: r.method == "POST" and posts.append(r.url))
    page.get_by_label("Machine", exact=True).fill("vm-linux-1")
    page.get_by_label("Task", exact=True).fill("Export last week's new leads as CSV")

    # when he double-clicks Launch
    page.get_by_role("button", name="Launch run").dblclick()

    # then one request went, one run exists, and he is on its page
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}/$"))
    assert len(posts) == 1, posts
    assert Run.objects.count() == 1


def test_a_form_the_browser_brings_back_can_be_sent_again(demo, open_page):
    # given the launch form, sent (the request held back here, as if the page had moved on)
    page = open_page("bob")
    page.goto("/teams/research/runs/new/")
    page.evaluate(
        "document.getElementById('launch-form').addEventListener('submit', e => e.preventDefault())"
    )
    page.get_by_label("Machine", exact=True).fill("vm-linux-1")
    page.get_by_label("Task", exact=True).fill("Export last week's new leads as CSV")
    button = page.locator("#launch-form button[type=submit]")
    button.click()
    expect(button).to_have_text("Launching…")
    expect(button).to_have_attribute("aria-disabled", "true")

    # when the browser shows the page again from its back/forward cache
    page.evaluate("window.dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}))")

    # then the button is itself again
    expect(button).to_have_text("Launch run")
    expect(button).not_to_have_attribute("aria-disabled", "true")


def test_the_deadline_is_asked_in_minutes_and_kept_in_seconds(demo, open_page):
    # given bob on the launch form
    page = open_page("bob")
    page.goto("/teams/research/runs/new/")

    # when he gives a 30-minute deadline (the field says minutes) and launches
    page.get_by_label("Machine", exact=True).fill("vm-linux-1")
    page.get_by_label("Task", exact=True).fill("Export last week's new leads as CSV")
    page.get_by_label("Deadline (minutes)").fill("30")
    page.get_by_role("button", name="Launch run").click()

    # then the run has 1,800 seconds
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}/$"))
    assert Run.objects.get().deadline_seconds == 1800


def test_a_deadline_over_a_day_is_refused_in_minutes(demo, open_page):
    page = open_page("bob")
    page.goto("/teams/research/runs/new/")
    page.get_by_label("Machine", exact=True).fill("vm-linux-1")
    page.get_by_label("Task", exact=True).fill("Export last week's new leads as CSV")
    deadline = page.get_by_label("Deadline (minutes)")
    deadline.fill("2000")
    # the browser's own check says the limit too; the server's message is the one tested
    deadline.evaluate("el => el.removeAttribute('max')")
    page.get_by_role("button", name="Launch run").click()
    expect(page.get_by_text("at most 1,440 minutes (a day)")).to_be_visible()
    assert not Run.objects.exists()
