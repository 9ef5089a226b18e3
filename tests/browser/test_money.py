"""Money in a real browser: a launch the wallet cannot cover, a billing admin's top-up as the
team sees it, and the ledger's CSV download."""

import csv
import io

from playwright.sync_api import expect

from billing.models import Hold
from billing.selectors import wallet_summary
from runs.models import Run
from tests.browser.pages import launch_run, money, stat


def test_a_launch_the_wallet_cannot_cover_is_refused_on_the_form(stack, demo, open_page):
    # given bob on the launch form of research, whose wallet holds $50.00
    page = open_page("bob")
    page.goto("/teams/research/runs/new/")

    # when he asks for 700 steps of the v1 engine ($0.08 a step: $56.00 at most)
    page.get_by_role("radio", name="v1 — legacy engine, slower and priced higher per step").check()
    page.get_by_label("Maximum steps").fill("700")

    # then the cost box warns before he submits...
    expect(page.locator("#cost-max")).to_have_text("$56.00 (700 × $0.08)")
    expect(page.get_by_text("That is more than the wallet has available.")).to_be_visible()

    # ...and the server refuses it with the form's error, keeping what he typed
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        launch_run(page, task="Reconcile every invoice of the year", max_steps=700)
    assert answer.value.status == 400
    alert = page.get_by_role("alert")
    expect(alert).to_have_text(
        "The team's wallet cannot cover this run: it can cost up to $56.00, and $50.00 is "
        "available. Lower the maximum steps, or ask a billing admin to top up the wallet."
    )
    expect(page.get_by_label("Task", exact=True)).to_have_value(
        "Reconcile every invoice of the year"
    )
    expect(page.get_by_role("button", name="Launch run")).not_to_have_attribute(
        "aria-disabled", "true"
    )

    # and nothing was created: no run, no hold, nothing sent to Coasty, the wallet untouched
    assert Run.objects.count() == 0 and Hold.objects.count() == 0
    assert stack.sim.state()["runs_total"] == 0
    assert wallet_summary(demo.team("research")).available_cents == 5000


def test_a_billing_admin_tops_up_a_team_and_its_member_sees_it(stack, demo, open_page):
    # given the billing admin on the billing overview
    admin = open_page("admin")
    admin.goto("/billing/")
    expect(admin.get_by_role("heading", level=1)).to_have_text("Billing")
    wallets = admin.get_by_role("region", name="Wallets")
    ops_row = wallets.get_by_role("row").filter(has_text="Ops")
    expect(ops_row).to_contain_text("$50.00")

    # when they top up ops by $25.00: form, review, confirm
    ops_row.get_by_role("link", name="Top up Ops").click()
    expect(admin.get_by_role("heading", level=1)).to_have_text("Ops's wallet")
    admin.get_by_label("Amount (US$)").fill("25.00")
    admin.get_by_label("Reference").fill("PO-2026-0142")
    admin.get_by_role("button", name="Review top-up").click()
    expect(admin.get_by_role("heading", level=1)).to_have_text("Confirm the top-up")
    expect(admin.get_by_text("$50.00 → $75.00")).to_be_visible()
    admin.get_by_role("button", name="Top up $25.00").click()

    # then the admin is told, and carol, a member of ops, sees the new balance
    expect(admin.get_by_role("status").first).to_have_text(
        "Added $25.00 to Ops's wallet (PO-2026-0142)."
    )
    carol = open_page("carol")
    carol.get_by_role("navigation", name="Team").get_by_role("link", name="Wallet").click()
    expect(carol.get_by_role("heading", level=1)).to_have_text("Wallet")
    expect(stat(carol, "Available")).to_have_text(money(7500))
    ledger = carol.get_by_role("table", name="Ledger of Ops")
    expect(ledger.get_by_role("row").filter(has_text="PO-2026-0142")).to_contain_text("$25.00")
    assert wallet_summary(demo.team("ops")).available_cents == 7500

    # and the ledger downloads as CSV with both top-ups in it
    with carol.expect_download() as download:
        carol.get_by_role("link", name="Download CSV").click()
    assert download.value.suggested_filename.startswith("ops-ledger-")
    with open(download.value.path(), newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(io.StringIO(handle.read())))
    assert [(r["kind"], r["amount_cents"], r["reference"]) for r in rows] == [
        ("top_up", "2500", "PO-2026-0142"),
        ("top_up", "5000", "Demo credit"),
    ]
    assert sum(int(r["available_change_cents"]) for r in rows) == 7500
    assert rows[0]["idempotency_key"].startswith("topup:")
