"""The wallet's ledger in a real browser, on a desktop and a 390 px phone: a run is one row
named by its task, opening it shows its hold, step charges and release, and no raw "run:" id
shows anywhere."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.pages import accessibility_problems
from tests.browser.test_phone_and_live_lists import PHONE, _sideways
from tests.factories import ledger_run

DESKTOP = {"width": 1280, "height": 860}
TASK = "Export every invoice of March to the finance share and flag the unpaid ones"
RAW_ID = re.compile(r"run:|\b[0-9a-f]{8}…")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_run_reads_as_its_task_and_opens_to_its_steps(demo, open_page, viewport):
    # given a run of bob's in research that charged three steps of its $1.00 hold
    run_id = ledger_run(demo.team("research"), demo.user("bob"), TASK, steps=3)
    page = open_page("victor", viewport=viewport)

    # when victor (a viewer of research) opens the wallet
    page.goto("/teams/research/wallet/")

    # then the run is one row, named by its task, with who launched it, its status and money
    ledger = page.get_by_role("table", name="Ledger of Research")
    row = ledger.locator("tr.ledger-run")
    expect(row).to_have_count(1)
    link = row.get_by_role("link", name=TASK)
    expect(link).to_be_visible()
    expect(link).to_have_attribute("title", TASK)
    expect(row).to_contain_text("bob")
    expect(row).to_contain_text("Succeeded")
    expect(row.locator('[data-label="Steps"]')).to_have_text("3")
    expect(row.locator('[data-label="Held"]')).to_have_text("$1.00")
    expect(row.locator('[data-label="Charged"]')).to_contain_text("$0.15")
    # and the demo's top-up is in words
    expect(ledger.get_by_role("row").filter(has_text="Demo credit")).to_contain_text(
        "seed_demo command"
    )
    assert not RAW_ID.search(page.locator("main").inner_text())

    # when he opens the run's row, from the keyboard
    summary = row.locator("summary")
    expect(summary).to_contain_text("5 entries")
    summary.focus()
    page.keyboard.press("Enter")

    # then its entries load: the hold, each step's charge, the release
    entries = row.get_by_role("table", name=re.compile("Entries of the run"))
    expect(entries.locator("tbody tr")).to_have_count(5)
    expect(entries).to_contain_text("Step 1 charged")
    expect(entries).to_contain_text("Step 3 charged")
    expect(entries).to_contain_text("Rest released")
    assert not RAW_ID.search(page.locator("main").inner_text())
    assert _sideways(page) <= 1
    assert accessibility_problems(page) == []

    # and the task leads to the run's page
    link.click()
    expect(page).to_have_url(re.compile(f"/runs/{run_id}/$"))
