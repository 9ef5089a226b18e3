"""On a 390 px phone the lists are stacked cards with nothing scrolling sideways, the launch
form's cost comes before its button, and a paused run's resume box comes first; on any screen
the runs list shows a run launched elsewhere without a reload."""

import re

import pytest
from playwright.sync_api import expect

from billing.services import hold_release
from runs import services
from runs.models import Run, RunStatus
from runs.services import LaunchRequest

PHONE = {"width": 390, "height": 844}


def _launch(team, user, task, max_steps=4):
    run, _ = services.run_launch(
        team=team,
        user=user,
        request=LaunchRequest(machine_id="vm-linux-1", task=task, max_steps=max_steps),
    )
    return run


def _sideways(page):
    """How far the page, or any box in it, scrolls sideways (0: nothing does)."""
    return page.evaluate(
        """() => {
             const root = document.documentElement;
             let worst = root.scrollWidth - root.clientWidth;
             for (const el of document.querySelectorAll('.table-wrap, .card, main')) {
               worst = Math.max(worst, el.scrollWidth - el.clientWidth);
             }
             return worst;
           }"""
    )


@pytest.mark.parametrize(
    "path",
    ["/teams/research/", "/teams/research/runs/", "/teams/research/wallet/"],
)
def test_list_pages_on_a_phone_are_cards_with_nothing_scrolling_sideways(demo, open_page, path):
    bob = demo.user("bob")
    for n in range(3):
        run = _launch(
            demo.team("research"),
            bob,
            f"Slow export of every lead in the CRM, number {n}, with a very long task name",
        )
        Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    page = open_page("bob", viewport=PHONE)

    page.goto(path)

    assert _sideways(page) <= 1
    row = page.locator("table.data tbody tr").first
    # a card, not a table row
    assert row.evaluate("r => getComputedStyle(r).display") in ("block", "grid")
    # the task reads in full width, not squeezed to "Sl…"
    task = page.locator(
        'table.data tbody tr td[data-label="Task"], table.data tbody tr td.fill'
    ).first
    assert task.bounding_box()["width"] > 250


def test_the_launch_forms_cost_comes_before_its_button_on_a_phone(demo, open_page):
    page = open_page("bob", viewport=PHONE)
    page.goto("/teams/research/runs/new/")

    cost = page.locator("#cost-box").bounding_box()
    button = page.get_by_role("button", name="Launch run").bounding_box()

    assert cost["y"] + cost["height"] <= button["y"]
    assert _sideways(page) <= 1


def test_a_paused_runs_resume_box_comes_first_on_a_phone(demo, open_page):
    run = _launch(demo.team("research"), demo.user("bob"), "Log in to the CRM")
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.AWAITING_HUMAN, upstream_id="up-phone", awaiting_human_reason="captcha"
    )
    page = open_page("bob", viewport=PHONE)
    page.goto(f"/runs/{run.pk}/")

    resume = page.get_by_role("button", name="Resume").bounding_box()
    status = page.locator(".stat").first.bounding_box()

    assert resume["y"] < status["y"]
    assert resume["y"] < 844  # on the first screen, not ~970 px down


def test_the_runs_list_shows_a_run_launched_elsewhere_without_a_reload(demo, open_page):
    page = open_page("bob")
    page.goto("/teams/research/runs/")
    page.evaluate("window.__sameDocument = true")

    # when someone launches a run and it pauses, while bob looks at the list
    run = _launch(demo.team("research"), demo.user("alice"), "Fresh run from another tab")
    Run.objects.filter(pk=run.pk).update(status=RunStatus.AWAITING_HUMAN)

    # then it appears, standing out, and the tab title counts it, in the same document
    row = page.locator("tr.attention", has_text="Fresh run from another tab")
    expect(row).to_be_visible(timeout=20_000)
    expect(page).to_have_title(re.compile(r"^\(1\) Runs"), timeout=20_000)
    assert page.evaluate("window.__sameDocument === true")


def test_the_dashboard_shows_a_pause_and_an_end_without_a_reload(demo, open_page):
    # given bob on his team's dashboard, with a run of his under way
    run = _launch(demo.team("research"), demo.user("bob"), "Dashboard watched run")
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, upstream_id="up-dash")
    page = open_page("bob")
    page.goto("/teams/research/")
    page.evaluate("window.__sameDocument = true")
    expect(page.get_by_text("Dashboard watched run")).to_be_visible()

    # when it pauses for a person: it stands out and the tab title counts it
    Run.objects.filter(pk=run.pk).update(status=RunStatus.AWAITING_HUMAN)
    row = page.locator("tr.attention", has_text="Dashboard watched run")
    expect(row).to_be_visible(timeout=20_000)
    expect(page).to_have_title(re.compile(r"^\(1\) "), timeout=20_000)

    # and when it ends, the row says so, all in the same document
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    expect(page.locator("tr.attention", has_text="Dashboard watched run")).to_have_count(
        0, timeout=20_000
    )
    expect(page.locator("tr", has_text="Dashboard watched run")).to_contain_text(
        re.compile("succeeded", re.I), timeout=20_000
    )
    assert page.evaluate("window.__sameDocument === true")


def test_a_run_that_ends_while_its_page_is_open_completes_the_page(demo, open_page):
    # given bob launched a run from the form and watches its page ("Run launched" showing)
    page = open_page("bob")
    page.goto("/teams/research/runs/new/")
    page.get_by_label("Machine", exact=True).fill("vm-linux-1")
    page.get_by_label("Task", exact=True).fill("Export the new leads")
    page.get_by_role("button", name="Launch run").click()
    expect(page.locator("#messages")).to_contain_text("Run launched")
    page.evaluate("window.__sameDocument = true")
    run = Run.objects.get()

    # when it ends and is settled meanwhile
    from django.utils import timezone

    from runs.models import RunEvent

    now = timezone.now()
    RunEvent.objects.create(run=run, seq=1, type="done", data={"status": "succeeded"})
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.SUCCEEDED, finished_at=now, settled_at=now, last_seq=1
    )
    # a settled run's hold is closed (check_ledger holds runs to it)
    hold_release(reference=run.hold_reference, caused_by="test")

    # then, without a reload, the details say when it ended and how long it took, and the
    # launch message is gone
    times = page.locator("#run-times")
    expect(times).to_contain_text("Ended", timeout=20_000)
    expect(page.locator("#run-duration")).not_to_contain_text("so far")
    expect(page.locator("#messages")).to_have_count(0)
    assert page.evaluate("window.__sameDocument === true")


@pytest.mark.parametrize(
    ("who", "path"),
    [
        ("admin", "/billing/"),  # the billing admin's first page: labelled in the markup
        ("alice", "/teams/research/members/"),  # labelled from the column headers by app.js
    ],
)
def test_other_tables_on_a_phone_label_each_figure(demo, open_page, who, path):
    page = open_page(who, viewport=PHONE)

    page.goto(path)

    assert _sideways(page) <= 1
    cells = page.locator("table.data tbody tr td")
    labels = cells.evaluate_all(
        "tds => tds.filter(td => !td.querySelector('button, .btn'))"
        ".map(td => [td.getAttribute('data-label'), td.textContent.trim()])"
    )
    # every cell that shows a figure or a word says what it is (the action buttons need none)
    unlabelled = [text for label, text in labels if not label and text]
    assert labels and unlabelled == [], unlabelled
