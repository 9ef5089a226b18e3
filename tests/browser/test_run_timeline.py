"""The run page's timeline per agent step, in a real browser on a desktop and on a 390 px
phone: each step under its heading with its cost on the right, and "Hide billing rows" taking
the money rows away (the costs stay), also from what the live refresh brings."""

import pytest
from playwright.sync_api import expect

from runs import services
from runs.models import Run, RunStatus
from runs.services import IncomingEvent, LaunchRequest

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}


def _step_events(first_seq, step):
    return [
        IncomingEvent(first_seq, "reasoning", {"step": step, "text": f"Looking at page {step}"}),
        IncomingEvent(first_seq + 1, "tool_call", {"step": step, "tool": "click", "input": {}}),
        IncomingEvent(
            first_seq + 2, "tool_result", {"step": step, "tool": "click", "ok": True, "output": ""}
        ),
        IncomingEvent(first_seq + 3, "step", {"step": step, "steps_completed": step}),
        IncomingEvent(
            first_seq + 4,
            "billing",
            {"step": step, "credits_charged": 5, "total_credits_charged": 5 * step},
        ),
    ]


@pytest.fixture
def running_run(demo):
    """Bob's running run with three steps done (each charged $0.05 by the ledger)."""
    run, _ = services.run_launch(
        team=demo.team("research"),
        user=demo.user("bob"),
        request=LaunchRequest(machine_id="vm-linux-1", task="Export the leads", max_steps=10),
    )
    Run.objects.filter(pk=run.pk).update(upstream_id="up-timeline", status=RunStatus.RUNNING)
    services.events_ingest(
        run_id=run.pk,
        events=[
            IncomingEvent(1, "status", {"status": "running"}),
            *_step_events(2, 1),
            *_step_events(7, 2),
            *_step_events(12, 3),
        ],
    )
    return run


def _sideways(page):
    return page.evaluate(
        "() => Math.max(document.documentElement.scrollWidth - document.documentElement.clientWidth,"
        " ...[...document.querySelectorAll('.card')].map(el => el.scrollWidth - el.clientWidth))"
    )


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_steps_show_their_cost_and_billing_rows_can_be_hidden(running_run, open_page, viewport):
    # given bob on his running run's page
    page = open_page("bob", viewport=viewport)
    page.goto(f"/runs/{running_run.pk}/")
    timeline = page.get_by_role("region", name="Timeline")

    # then step 2 is one group: its heading, its cost on the right, its events and charge
    step = timeline.locator("li.step-group").filter(
        has=page.get_by_role("heading", name="Step 2", exact=True)
    )
    heading = step.get_by_role("heading", name="Step 2", exact=True)
    cost = step.locator(".step-cost")
    expect(heading).to_be_visible()
    expect(cost).to_have_text("Cost: $0.05")
    expect(step.get_by_text("Looking at page 2")).to_be_visible()
    expect(step.get_by_text("$0.05 charged for step 2")).to_be_visible()
    expect(step.get_by_text("Coasty billed $0.05 for the step")).to_be_visible()
    head_box, cost_box, group_box = (
        heading.bounding_box(),
        cost.bounding_box(),
        step.bounding_box(),
    )
    assert cost_box["x"] > head_box["x"] + head_box["width"]  # beside the heading, to its right
    assert abs(cost_box["y"] - head_box["y"]) < head_box["height"]  # on the heading's line
    assert group_box["x"] + group_box["width"] - (cost_box["x"] + cost_box["width"]) < 4
    assert _sideways(page) <= 1
    expect(timeline.get_by_text("held from the team's wallet")).to_be_visible()
    assert timeline.locator("li.billing-row").count() == 1 + 3 * 2  # the hold; bill and charge

    # when he hides the billing rows
    timeline.get_by_role("link", name="Hide billing rows").click()

    # then the money rows are gone, every step keeps its cost, and the control turns back
    expect(timeline.get_by_role("link", name="Show billing rows")).to_be_visible()
    expect(timeline.locator("li.billing-row")).to_have_count(0)
    expect(timeline.get_by_text("Coasty billed")).to_have_count(0)
    expect(timeline.locator(".step-cost")).to_have_text(["Cost: $0.05"] * 3)
    expect(step.get_by_text("Looking at page 2")).to_be_visible()
    assert _sideways(page) <= 1

    # and a step that arrives while he looks comes grouped, its cost shown, its bill hidden
    page.evaluate("window.__sameDocument = true")
    services.events_ingest(run_id=running_run.pk, events=_step_events(17, 4))
    step4 = timeline.locator("li.step-group").filter(
        has=page.get_by_role("heading", name="Step 4", exact=True)
    )
    expect(step4.locator(".step-cost")).to_have_text("Cost: $0.05", timeout=20_000)
    expect(step4.get_by_text("Looking at page 4")).to_be_visible()
    expect(timeline.locator("li.billing-row")).to_have_count(0)
    assert page.evaluate("window.__sameDocument === true")  # refreshed in place

    # and showing them again brings them back
    timeline.get_by_role("link", name="Show billing rows").click()
    expect(timeline.locator("li.billing-row")).to_have_count(1 + 4 * 2)
