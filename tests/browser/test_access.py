"""Who sees what, in a real browser: another team's run is not found; a viewer watches but
cannot launch."""

import pytest
from playwright.sync_api import expect

from portal.teams.models import Membership
from portal.teams.services import membership_remove
from runs import services
from runs.services import LaunchRequest
from tests.browser.pages import SameDocument, status_badge


@pytest.fixture
def bobs_run(demo):
    """A run bob launched in research (no worker here: it stays pending, which is enough)."""
    request = LaunchRequest(
        machine_id="vm-linux-1", task="Export last week's new leads as CSV", max_steps=20
    )
    run, _ = services.run_launch(team=demo.team("research"), user=demo.user("bob"), request=request)
    return run


def test_a_member_of_another_team_cannot_open_the_run(demo, bobs_run, open_page):
    # given carol, a member of ops only
    page = open_page("carol")

    # when she opens bob's run, its live fragment, or research's pages
    answers = {
        path: page.goto(path).status
        for path in (
            f"/runs/{bobs_run.pk}/live/",
            "/teams/research/runs/",
            f"/runs/{bobs_run.pk}/",
        )
    }

    # then each is not found, and the page does not tell her the run exists
    assert answers == dict.fromkeys(answers, 404), answers
    expect(page.get_by_role("heading", level=1)).to_have_text("Nothing here")
    expect(page.get_by_role("main")).not_to_contain_text(bobs_run.task)


def test_a_viewer_watches_runs_but_cannot_launch_them(demo, bobs_run, open_page):
    # given victor, a viewer of research
    page = open_page("victor")

    # when he looks at the team's runs and at bob's run
    page.get_by_role("navigation", name="Team").get_by_role("link", name="Runs").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Runs")
    page.get_by_role("link", name=bobs_run.task).click()

    # then he sees the run, with no way to launch, cancel or rerun
    expect(page.get_by_role("heading", level=1)).to_have_text(bobs_run.task)
    main = page.get_by_role("main")
    for name in ("Launch a run", "Run again"):
        expect(main.get_by_role("link", name=name)).to_have_count(0)
    expect(main.get_by_role("button", name="Cancel run")).to_have_count(0)
    page.go_back()
    expect(page.get_by_role("link", name="Launch a run")).to_have_count(0)

    # and the launch form itself, asked for directly, is refused with the reason
    response = page.goto("/teams/research/runs/new/")
    assert response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("You can't do that here")
    expect(page.get_by_role("main")).to_contain_text(
        "You are a viewer in Research; to launch runs you need the member role. "
        "Ask one of the team's managers."
    )


def test_a_run_page_whose_session_ends_says_so_instead_of_going_blank(demo, bobs_run, open_page):
    # given bob watching his run live
    page = open_page("bob")
    page.goto(f"/runs/{bobs_run.pk}/")
    watch = SameDocument(page)
    region = page.get_by_role("region", name="Live progress")
    expect(status_badge(page)).to_have_text("Pending")

    # when his session ends elsewhere (logged out in another tab, or expired)
    page.context.clear_cookies()

    # then the next update, redirected to the login page, does not replace the run with it:
    # the run stays on screen and the page says it no longer updates, and why
    logged_out = (
        "You have been logged out, so this page no longer updates. Reload it to log in again."
    )
    expect(region.locator(".live-note")).to_have_text(logged_out)
    expect(page.locator("#live-announcer")).to_have_text(logged_out)
    expect(status_badge(page)).to_have_text("Pending")
    expect(page.get_by_role("heading", level=1)).to_have_text(bobs_run.task)
    watch.statuses_seen()


def test_a_run_page_whose_run_is_no_longer_the_viewers_says_so(demo, bobs_run, open_page):
    # given bob watching his run live
    page = open_page("bob")
    page.goto(f"/runs/{bobs_run.pk}/")
    watch = SameDocument(page)
    region = page.get_by_role("region", name="Live progress")
    expect(status_badge(page)).to_have_text("Pending")

    # when alice, research's manager, removes him from the team
    research, bob = demo.team("research"), demo.user("bob")
    membership_remove(
        membership=Membership.objects.get(team=research, user=bob), actor=demo.user("alice")
    )

    # then the next update is not found: the run stays on screen and the page says why it stops
    gone = "This page no longer updates: what it shows is no longer available to you."
    expect(region.locator(".live-note")).to_have_text(gone)
    expect(page.locator("#live-announcer")).to_have_text(gone)
    expect(status_badge(page)).to_have_text("Pending")
    watch.statuses_seen()
