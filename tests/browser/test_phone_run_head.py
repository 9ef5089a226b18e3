"""On a 390 px phone, a run with a long task keeps its title full width: the page's buttons
("Run again", "Schedule this") wrap under it instead of squeezing it to a word a line, which
pushed a paused run's resume box off the first screen."""

from playwright.sync_api import expect

from runs import services
from runs.models import Run, RunStatus
from runs.services import LaunchRequest

PHONE = {"width": 390, "height": 844}
LONG_TASK = "Book the large meeting room for the quarterly review and send the invitations"


def test_a_long_titled_paused_runs_resume_box_is_on_the_first_screen(demo, open_page):
    # given a paused run with a long task, on bob's phone
    run, _ = services.run_launch(
        team=demo.team("research"),
        user=demo.user("bob"),
        request=LaunchRequest(machine_id="vm-linux-1", task=LONG_TASK, max_steps=4),
    )
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.AWAITING_HUMAN, upstream_id="up-phone", awaiting_human_reason="captcha"
    )
    page = open_page("bob", viewport=PHONE)

    # when he opens it
    page.goto(f"/runs/{run.pk}/")

    # then the title is not squeezed beside the buttons, and Resume is on the first screen
    title = page.get_by_role("heading", level=1).bounding_box()
    assert title["width"] > 300
    expect(page.get_by_role("button", name="Resume")).to_be_in_viewport()
