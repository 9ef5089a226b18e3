"""Keyboard, screen-reader and time-zone basics on every main page, checked in a real browser.

audit.js checks each page as rendered (labels, names, landmarks, one h1, heading order, ARIA
references, progress bars, AA contrast), and that it reflows at 320 px without sideways scrolling; the keyboard test tabs through pages and asks each
stop to be on screen with a visible focus ring.
"""

import datetime as dt
import zoneinfo

import pytest
from playwright.sync_api import expect

from portal.notifications.models import WebhookEndpoint
from runs import services
from runs.models import Run, RunStatus
from runs.services import LaunchRequest
from tests.browser.pages import (
    LIVE_TIMEOUT_MS,
    accessibility_problems,
    focus_stops,
    status_badge,
)
from tests.live import wait_until

PHONE = {"width": 320, "height": 640}
DESKTOP = {"width": 1280, "height": 860}


def launch(demo, task, max_steps=10):
    request = LaunchRequest(machine_id="vm-linux-1", task=task, max_steps=max_steps)
    run, _ = services.run_launch(team=demo.team("research"), user=demo.user("bob"), request=request)
    return run


def reach(run, status):
    def there():
        run.refresh_from_db()
        return run.status == status and (run.settled_at or status == RunStatus.AWAITING_HUMAN)

    wait_until(there, timeout=45, what=f"run to be {status} (it is {run.status})")
    return run


@pytest.fixture
def runs_in_every_state(stack, demo):
    """Research with a finished run and one waiting for a human; ops with none."""
    done = launch(demo, "[steps=4] Export last week's new leads as CSV")
    paused = launch(demo, "[pause] Log in to the CRM and download the invoices")
    return reach(done, RunStatus.SUCCEEDED), reach(paused, RunStatus.AWAITING_HUMAN)


def test_every_main_page_passes_the_accessibility_audit(runs_in_every_state, open_page):
    done, paused = runs_in_every_state
    pages = {
        None: ["/accounts/login/"],
        "bob": [
            "/teams/",
            "/teams/research/",
            "/teams/research/runs/",
            "/teams/research/runs/?status=cancelled",  # the filtered empty state
            "/teams/research/runs/?since=2026-13-01",  # a filter error
            "/teams/research/runs/new/",
            f"/runs/{done.pk}/",
            f"/runs/{paused.pk}/",
            "/teams/research/wallet/",
            "/teams/research/members/",
            "/teams/nowhere/",  # 404
            "/inbox/",
            "/notifications/",
            "/account/",
        ],
        "alice": [
            "/teams/research/endpoints/",
            f"/teams/research/endpoints/{WebhookEndpoint.objects.get().pk}/",  # seed_demo's
            "/inbox/",
        ],
        "carol": ["/teams/ops/runs/", "/teams/ops/wallet/?kind=capture", "/inbox/"],  # empty states
        "victor": ["/teams/research/runs/new/"],  # 403
        "admin": [
            "/billing/",
            "/billing/teams/ops/",
            "/billing/discrepancies/",
            "/teams/ops/wallet/",
        ],
    }
    problems = {}
    for user, paths in pages.items():
        page = open_page(user)
        for path in paths:
            page.goto(path)
            found = accessibility_problems(page)
            # Reflow (WCAG 1.4.10): at 320 px nothing but a wide table's own box scrolls sideways.
            page.set_viewport_size(PHONE)
            width = page.evaluate("document.scrollingElement.scrollWidth")
            if width > PHONE["width"]:
                found.append(f"the page scrolls sideways at 320 px ({width} px wide)")
            page.set_viewport_size(DESKTOP)
            problems[f"{user or 'anonymous'} {path}"] = found
        if user == "bob":
            # the launch form after a refused submit: errors tied to their fields
            page.goto("/teams/research/runs/new/")
            page.get_by_label("Machine", exact=True).fill("vm-linux-1")
            page.get_by_label("Task", exact=True).fill("   ")  # passes the browser's check only
            page.get_by_role("button", name="Launch run").click()
            expect(page.get_by_role("alert")).to_be_visible()
            problems["bob launch form with errors"] = accessibility_problems(page)
            task = page.get_by_label("Task", exact=True)
            expect(task).to_have_attribute("aria-invalid", "true")
            described = task.get_attribute("aria-describedby").split()
            assert "id_task_error" in described
            expect(page.locator("#id_task_error")).to_have_text("Describe the task for the agent.")

    assert {where: found for where, found in problems.items() if found} == {}


def test_the_keyboard_reaches_everything_with_a_visible_focus(runs_in_every_state, open_page):
    done, paused = runs_in_every_state
    page = open_page("bob")
    for path in (
        "/teams/research/runs/new/",
        f"/runs/{done.pk}/",
        f"/runs/{paused.pk}/",
        "/teams/research/wallet/",
    ):
        page.goto(path)
        stops = focus_stops(page)

        # the first stop is the skip link, shown on screen, and it leads to the main content
        assert stops and stops[0]["what"] == "<a> Skip to content", stops[:1]
        hidden = [s["what"] for s in stops if not (s["outline"] and s["onScreen"])]
        assert hidden == [], f"{path}: focus not visible on {hidden}"
        faint = [(s["what"], s["ringContrast"]) for s in stops if s["ringContrast"] < 3]
        assert faint == [], f"{path}: focus ring below 3:1 contrast on {faint}"
        page.evaluate("() => document.activeElement.blur()")
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"

    # and a keyboard user can resume the paused run without the mouse
    page.goto(f"/runs/{paused.pk}/")
    page.get_by_label("Note for the agent").focus()
    page.keyboard.type("Done by keyboard")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").first).to_contain_text("Resume requested")
    expect(status_badge(page)).to_have_text("Succeeded", timeout=LIVE_TIMEOUT_MS)


@pytest.mark.parametrize("zone", ["Asia/Kathmandu", "America/Los_Angeles"])
def test_times_show_in_the_browsers_time_zone(demo, open_page, zone):
    # given a run launched a moment ago
    run = launch(demo, "Export last week's new leads as CSV")

    # when bob, whose browser is in another zone, looks at it
    page = open_page("bob", timezone_id=zone)
    page.goto(f"/runs/{run.pk}/")

    # then the page's times are in his zone, and it says which zone that is
    local = run.created_at.astimezone(zoneinfo.ZoneInfo(zone))
    details = page.get_by_role("region", name="Details")
    expect(details).to_contain_text(f"Launched{local:%-d %b %Y, %H:%M:%S} by bob")
    # (Chromium may report a zone by an older alias, Asia/Katmandu; the portal knows those too)
    reported = {c["name"]: c["value"] for c in page.context.cookies()}["tz"]
    assert zoneinfo.ZoneInfo(reported).utcoffset(local) == local.utcoffset()
    expect(page.get_by_role("contentinfo")).to_contain_text(f"times in {local.tzname()}")
    page.goto("/teams/research/runs/")
    expect(page.get_by_role("cell", name=f"{local:%-d %b, %H:%M}")).to_be_visible()
    assert local.utcoffset() != dt.timedelta(0)
    assert Run.objects.count() == 1


def test_the_audit_catches_what_it_looks_for(browser):
    # given a page that breaks each rule once
    page = browser.new_page()
    page.set_content(
        """<html><body><header></header><main>
             <h1>One</h1><h1>Two</h1><h4>Deep</h4>
             <input name="nameless"><img src="data:,"><a href="/x"></a>
             <p style="color:#aaa;background:#fff">pale</p>
             <div role="progressbar" aria-label="p" aria-valuemin="0" aria-valuemax="5"></div>
             <span id="twice"></span><span id="twice"></span>
             <div aria-describedby="ghost">x</div>
           </main></body></html>"""
    )

    # when it is audited
    problems = "\n".join(accessibility_problems(page))
    page.close()

    # then every broken rule is reported
    for rule in (
        "html has no lang",
        "exactly one h1 per page",
        "heading level skipped",
        "a contentinfo (<footer>)",
        'form control without a label: <input> "nameless"',
        "img without alt",
        "link or button without a name",
        'text contrast below AA: <p> "pale" (2.32:1, needs 4.5:1)',
        "progressbar values missing or out of range",
        "duplicate id",
        "aria-describedby points at a missing id",
    ):
        assert rule in problems, f"{rule!r} not reported in:\n{problems}"
