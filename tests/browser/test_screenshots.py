"""Screenshots of the main pages, with two weeks of realistic use behind them.

Always written to test-artifacts/screenshots/ (git-ignored), so every run of the suite renders the
pages full of data and checks they show it. With SCREENSHOTS=1 (`make screenshots`) they are
written to docs/screenshots/ instead, where the README shows them.

The history is made by the real product: runs launched through the services, run by the worker
against the simulator, charged and settled on the ledger. Two things are staged for the picture,
and only here: each finished run (with its events and ledger rows) is moved back to a day of the
last two weeks, so the spend chart and the ledger look like a team's fortnight; and the
simulator's script markers ("[steps=6]") are taken out of the stored task once Coasty has the
run, since real tasks have none.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import models
from django.db.models import F
from django.utils import timezone
from playwright.sync_api import expect

from billing.models import Hold, MonthUsage, Reconciliation, Transfer
from billing.months import month_of
from billing.services import wallet_top_up
from runs import services
from runs.models import Run, RunEvent, RunStatus, WebhookDelivery
from runs.services import LaunchRequest
from tests.browser.pages import wait_for_steps
from tests.live import wait_until

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "screenshots"
ARTIFACTS = REPO / "test-artifacts" / "screenshots"
ZONE = zoneinfo.ZoneInfo("Europe/London")
WINDOW = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
MARKERS = re.compile(r"\s*\[[^\]]*\]\s*")


@dataclass(frozen=True)
class Past:
    """One thing that happened `days` ago at hh:mm, London time."""

    days: int
    at: str
    team: str
    who: str
    task: str  # with the simulator's markers
    max_steps: int = 30
    note: str = ""  # resume a [pause] run with this note
    cancel_after: int = 0  # cancel a [forever] run after this many steps
    top_up_cents: int = 0  # not a run: a billing admin's top-up


HISTORY = [
    Past(
        13, "09:12", "research", "bob", "[steps=6] Export last week's new leads from the CRM as CSV"
    ),
    Past(
        12,
        "10:40",
        "research",
        "alice",
        "[steps=14] Reconcile the March supplier invoices against purchase orders",
    ),
    Past(
        12,
        "15:05",
        "ops",
        "carol",
        "[steps=5] Rotate the staging database credentials and update the vault",
    ),
    Past(
        11,
        "11:30",
        "research",
        "bob",
        "[fail=3] Update the pricing page screenshots in the docs site",
    ),
    Past(10, "09:00", "research", "admin", "Purchase order PO-2026-0142", top_up_cents=20_000),
    Past(
        9,
        "14:20",
        "research",
        "alice",
        "[steps=9] Download the Q1 bank statements and file them in the finance drive",
    ),
    Past(
        8,
        "16:45",
        "research",
        "bob",
        "[steps=11] Run the staging checkout with the test card and report any errors",
    ),
    Past(
        7,
        "10:10",
        "ops",
        "carol",
        "[steps=12] Check every status page we depend on and log the incidents of the week",
    ),
    Past(6, "09:35", "research", "alice", "[steps=18] Merge duplicate contacts in the CRM"),
    Past(
        5,
        "13:50",
        "research",
        "bob",
        "[steps=7] Collect the uptime figures for the monthly ops report",
    ),
    Past(
        3,
        "11:15",
        "research",
        "bob",
        "[forever] [slow] Archive closed support tickets older than 90 days",
        max_steps=400,
        cancel_after=9,
    ),
    Past(
        2,
        "15:30",
        "research",
        "alice",
        "[steps=16] Fill in the vendor security questionnaire from our policy documents",
    ),
    Past(
        1,
        "08:55",
        "research",
        "bob",
        "[pause] [steps=5] Download this month's payslips from the payroll portal",
        note="Approved the sign-in on my phone; carry on.",
    ),
    Past(1, "17:20", "ops", "carol", "[steps=4] Renew the TLS certificate of the status page"),
    Past(
        0,
        "09:05",
        "research",
        "bob",
        "[steps=8] Compare our plan prices with the three main competitors",
    ),
]


def launch(demo, team, who, task, max_steps):
    request = LaunchRequest(machine_id="vm-linux-1", task=task, max_steps=max_steps)
    run, _ = services.run_launch(team=demo.team(team), user=demo.user(who), request=request)
    return run


def until(run, predicate, what):
    def check():
        run.refresh_from_db()
        return predicate(run)

    wait_until(check, timeout=60, what=f"{what} ({run.task[:40]}: {run.status})")
    return run


def without_markers(run):
    """Once Coasty has the run (its body is never sent again), show the task as a person wrote it."""
    until(run, lambda r: r.upstream_id, "Coasty to accept the run")
    Run.objects.filter(pk=run.pk).update(task=MARKERS.sub(" ", run.task).strip())


def shift(queryset, delta):
    """Move every date-time column of these rows by delta."""
    names = [
        f.name for f in queryset.model._meta.concrete_fields if isinstance(f, models.DateTimeField)
    ]
    queryset.update(**{name: F(name) + delta for name in names})


def backdate_run(run, when):
    run.refresh_from_db()
    delta = when - run.created_at
    shift(Run.objects.filter(pk=run.pk), delta)
    for model in (RunEvent, WebhookDelivery):
        shift(model.objects.filter(run=run), delta)
    for model in (Transfer, Hold, Reconciliation):
        shift(model.objects.filter(run_id=run.pk), delta)
    # The simulator finishes in about a second; a real agent takes ~20 s a step. The picture
    # shows the durations people see (staged, like the dates).
    if run.finished_at:
        ended = F("created_at") + dt.timedelta(seconds=20 * max(run.steps_completed, 1))
        Run.objects.filter(pk=run.pk).update(finished_at=ended, settled_at=ended)
    recount_months(run)


def recount_months(run):
    """A hold moved into another month counts there: what it still takes moves with it from
    its month rows to that month's (the budget's rule, which check_ledger verifies)."""
    for hold in Hold.objects.filter(run_id=run.pk).select_related("team_usage", "member_usage"):
        month = month_of(hold.created_at)
        taken = hold.amount_cents - hold.released_cents
        for field in ("team_usage", "member_usage"):
            usage = getattr(hold, field)
            if usage is None or usage.month == month:
                continue
            MonthUsage.objects.filter(pk=usage.pk).update(used_cents=F("used_cents") - taken)
            moved, _ = MonthUsage.objects.get_or_create(
                team_id=usage.team_id, user_id=usage.user_id, month=month
            )
            MonthUsage.objects.filter(pk=moved.pk).update(used_cents=F("used_cents") + taken)
            setattr(hold, field, moved)
        hold.save(update_fields=["team_usage", "member_usage"])


def moment(days, at):
    hour, minute = map(int, at.split(":"))
    day = timezone.localdate(timezone=ZONE) - dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=ZONE)


def make_history(demo, sim):
    """A fortnight of runs and a top-up, one after another so the ledger's order is the clock's."""
    sim.configure(speed=100)
    for past in HISTORY:
        when = moment(past.days, past.at)
        if past.top_up_cents:
            key = f"screenshots:{uuid.uuid4()}"
            wallet_top_up(
                team=demo.team(past.team),
                amount_cents=past.top_up_cents,
                reference=past.task,
                actor=demo.user(past.who),
                idempotency_key=key,
            )
            shift(Transfer.objects.filter(idempotency_key=f"topup:{key}"), when - timezone.now())
            continue
        run = launch(demo, past.team, past.who, past.task, past.max_steps)
        without_markers(run)
        if past.note:
            until(run, lambda r: r.status == RunStatus.AWAITING_HUMAN, "a pause")
            services.run_request_resume(run=run, user=demo.user(past.who), note=past.note)
        if past.cancel_after:
            until(run, lambda r, n=past.cancel_after: r.steps_completed >= n, "some steps")
            services.run_request_cancel(run=run, user=demo.user(past.who))
        until(run, lambda r: r.settled_at, "the run to settle")
        backdate_run(run, when)
    # The demo credit came first of all.
    shift(Transfer.objects.filter(reference="Demo credit"), moment(20, "09:00") - timezone.now())
    sim.configure(speed=20)


@pytest.fixture
def shots_dir():
    target = DOCS if os.environ.get("SCREENSHOTS") == "1" else ARTIFACTS
    target.mkdir(parents=True, exist_ok=True)
    return target


def test_screenshots_of_the_main_pages(stack, demo, open_page, shots_dir):
    # given two weeks of use, a run waiting for a human and one running now
    make_history(demo, stack.sim)
    waiting = launch(
        demo,
        "research",
        "alice",
        "[pause] Book the large meeting room for the quarterly review",
        20,
    )
    stack.sim.configure(slow_step_seconds=10)  # half a second a step at 20x: time for pictures
    running = launch(
        demo,
        "research",
        "bob",
        "[forever] [slow] Go through the support inbox and tag every message by product area",
        60,
    )
    for run in (waiting, running):
        without_markers(run)
    until(waiting, lambda r: r.status == RunStatus.AWAITING_HUMAN, "a pause")

    def shoot(page, name):
        page.screenshot(path=str(shots_dir / f"{name}.png"), animations="disabled", caret="hide")

    # the live run page, mid-run
    bob = open_page("bob", viewport=WINDOW, timezone_id="Europe/London")
    bob.goto(f"/runs/{running.pk}/")
    wait_for_steps(bob, 6)
    expect(bob.get_by_role("region", name="Timeline").get_by_role("listitem").first).to_be_visible()
    shoot(bob, "run-live")

    # the team's dashboard: money, what runs now, what finished
    bob.goto("/teams/research/")
    expect(bob.get_by_role("region", name="Running now").get_by_role("row")).to_have_count(3)
    expect(bob.get_by_role("region", name="Recently finished").get_by_role("row")).to_have_count(9)
    expect(bob.get_by_role("img", name=re.compile("Spend per day"))).to_be_visible()
    shoot(bob, "dashboard")

    # the runs list
    bob.goto("/teams/research/runs/")
    expect(bob.get_by_role("table").get_by_role("row")).to_have_count(14)
    shoot(bob, "runs")

    # the launch form, filled in
    bob.goto("/teams/research/runs/new/")
    bob.get_by_label("Machine", exact=True).fill("vm-linux-1")
    bob.get_by_label("Task", exact=True).fill(
        "Open the CRM, export last week's new leads as CSV and upload the file to the sales drive"
    )
    bob.get_by_label("Maximum steps").fill("40")
    expect(bob.locator("#cost-max")).to_have_text("$2.00 (40 × $0.05)")
    bob.get_by_label("Maximum steps").blur()
    shoot(bob, "launch")

    # the wallet: balance, spend per day, ledger
    bob.goto("/teams/research/wallet/")
    expect(bob.get_by_role("table", name="Ledger of Research").get_by_role("row")).to_have_count(
        51
    )  # a full page
    shoot(bob, "wallet")

    # the billing admin's overview of every wallet
    admin = open_page("admin", viewport=WINDOW, timezone_id="Europe/London")
    admin.goto("/billing/")
    expect(admin.get_by_role("region", name="Wallets").get_by_role("row")).to_have_count(3)
    shoot(admin, "billing")

    # on a 390 px phone: the runs list as stacked cards
    phone = open_page("bob", viewport=PHONE, timezone_id="Europe/London")
    phone.goto("/teams/research/runs/")
    first = phone.locator("table.data tbody tr").first
    expect(first).to_be_visible()
    assert first.evaluate("r => getComputedStyle(r).display") in ("block", "grid")
    # past the filters, to the cards
    first.evaluate(
        "r => { (r.closest('.card') || r).scrollIntoView({block: 'start'}); "
        "window.scrollBy(0, -8); }"
    )
    shoot(phone, "phone-runs")

    # a paused run: the resume box right under the banner, on the first screen
    phone.goto(f"/runs/{waiting.pk}/")
    expect(phone.get_by_role("button", name="Resume")).to_be_in_viewport()
    shoot(phone, "phone-run-paused")

    # the launch form, filled in, scrolled to its end: the cost box above the Launch button
    phone.goto("/teams/research/runs/new/")
    phone.get_by_label("Machine", exact=True).fill("vm-linux-1")
    phone.get_by_label("Task", exact=True).fill("Export last week's new leads as CSV")
    phone.get_by_label("Maximum steps").fill("40")
    expect(phone.locator("#cost-max")).to_have_text("$2.00 (40 × $0.05)")
    phone.get_by_label("Maximum steps").blur()
    launch_button = phone.get_by_role("button", name="Launch run")
    launch_button.evaluate("b => { b.scrollIntoView({block: 'end'}); window.scrollBy(0, 24); }")
    expect(phone.locator("#cost-box")).to_be_in_viewport()
    expect(launch_button).to_be_in_viewport()
    shoot(phone, "phone-launch")

    # the wallet
    phone.goto("/teams/research/wallet/")
    expect(phone.get_by_role("table", name="Ledger of Research")).to_be_attached()
    shoot(phone, "phone-wallet")

    assert Run.objects.get(pk=running.pk).status == RunStatus.RUNNING, "the live run ended early"
    assert {p.name for p in shots_dir.glob("*.png")} >= {
        f"{n}.png"
        for n in (
            "billing",
            "dashboard",
            "launch",
            "run-live",
            "runs",
            "wallet",
            "phone-runs",
            "phone-run-paused",
            "phone-launch",
            "phone-wallet",
        )
    }
