"""The timeline per agent step (runs.presenters.present_timeline): a step's events together
under its heading with the ledger's cost, everything else alone and in order, and the rows
about money left out on request while the costs stay."""

import datetime as dt
from types import SimpleNamespace

from runs.presenters import StepGroup, present_event, present_timeline

AT = dt.datetime(2026, 1, 5, 9, 30, tzinfo=dt.UTC)


def event(seq, type_, data=None, source="coasty"):
    return present_event(
        SimpleNamespace(seq=seq, type=type_, data=data or {}, created_at=AT, source=source)
    )


def step_events(first_seq, step):
    return [
        event(first_seq, "reasoning", {"step": step, "text": "look"}),
        event(first_seq + 1, "tool_call", {"step": step, "tool": "click"}),
        event(first_seq + 2, "tool_result", {"step": step, "ok": True, "output": "ok"}),
        event(first_seq + 3, "step", {"step": step, "steps_completed": step}),
        event(first_seq + 4, "billing", {"step": step, "credits_charged": 5}),
    ]


def transfer(kind, amount, step=None, memo=""):
    return SimpleNamespace(kind=kind, amount_cents=amount, step=step, created_at=AT, memo=memo)


def shape(entries):
    """("Step N", cost, [row types]) for a group, the row's type for a row alone."""
    return [
        (f"Step {e.step}", e.cost, [row.type for row in e.rows])
        if isinstance(e, StepGroup)
        else e.type
        for e in entries
    ]


STEP_ROWS = ["reasoning", "tool_call", "tool_result", "step", "billing", "capture"]


def test_a_steps_events_and_its_capture_sit_under_its_heading_with_its_cost():
    # given a run's events: started, two steps, a pause and a resume, a third step, the end
    rows = [
        event(1, "status", {"status": "running"}),
        *step_events(2, 1),
        *step_events(7, 2),
        event(12, "awaiting_human", {"reason": "captcha", "step": 2}),
        event(13, "resumed", {"note": "done"}),
        *step_events(14, 3),
        event(19, "done", {"status": "succeeded"}),
    ]
    money = [
        transfer("hold", 50),
        transfer("capture", 5, step=1),
        transfer("capture", 5, step=2),
        transfer("capture", 7, step=3),
        transfer("release", 33),
    ]

    # when the timeline is presented
    entries = present_timeline(rows, money)

    # then each step is one group with its ledger cost; the rest stand alone, in order
    assert shape(entries) == [
        "hold",
        "status",
        ("Step 1", "$0.05", STEP_ROWS),
        ("Step 2", "$0.05", STEP_ROWS),
        "awaiting_human",
        "resumed",
        ("Step 3", "$0.07", STEP_ROWS),
        "done",
        "release",
    ]
    charge = entries[2].rows[-1]
    assert (charge.label, charge.text, charge.billing) == (
        "Charge",
        "$0.05 charged for step 1",
        True,
    )
    assert entries[0].text == "$0.50 held from the team's wallet for the run"
    assert entries[-1].text == "$0.33 returned to the team's wallet"


def test_hiding_billing_rows_keeps_the_costs_in_the_headings():
    rows = [*step_events(1, 1), event(6, "done", {"status": "succeeded"})]
    money = [transfer("hold", 50), transfer("capture", 5, step=1), transfer("release", 45)]

    entries = present_timeline(rows, money, hide_billing=True)

    assert shape(entries) == [
        ("Step 1", "$0.05", ["reasoning", "tool_call", "tool_result", "step"]),
        "done",
    ]


def test_a_step_with_no_capture_says_so_and_an_unfinished_step_shows_no_cost():
    # given step 4 ended without a charge (beyond the hold), and step 5 is still going
    rows = [*step_events(1, 4), event(6, "reasoning", {"step": 5, "text": "thinking"})]

    entries = present_timeline(rows, [])

    assert shape(entries) == [
        ("Step 4", "not charged", ["reasoning", "tool_call", "tool_result", "step", "billing"]),
        ("Step 5", "", ["reasoning"]),
    ]


def test_a_step_interrupted_by_another_row_goes_on_under_a_continued_heading():
    rows = [
        event(1, "reasoning", {"step": 1, "text": "a"}),
        event(2, "status", {"status": "running"}),
        event(3, "step", {"step": 1}),
    ]

    entries = present_timeline(rows, [transfer("capture", 5, step=1)])

    assert shape(entries) == [
        ("Step 1", "", ["reasoning"]),
        "status",
        ("Step 1", "$0.05", ["step", "capture"]),
    ]
    assert [e.continued for e in entries if isinstance(e, StepGroup)] == [False, True]


def test_the_hold_opens_the_first_page_and_the_release_closes_the_latest_only():
    rows = step_events(1, 7)
    money = [transfer("hold", 50), transfer("capture", 5, step=7), transfer("release", 10)]

    middle = present_timeline(rows, money, first_page=False, latest_page=False)

    assert shape(middle) == [("Step 7", "$0.05", STEP_ROWS)]


def test_events_without_a_step_a_persons_records_and_odd_step_numbers_stand_alone():
    rows = [
        event(1, "reasoning", {"text": "no step named"}),
        event(2, "tool_call", {"step": 0, "tool": "click"}),
        event(3, "tool_call", {"step": "2", "tool": "click"}),
        event(4, "tool_call", {"step": True, "tool": "click"}),
        event(5, "error", {"step": 3, "message": "boom"}),
        event(5, "cancel_requested", {"step": 3}, source="portal"),
    ]

    entries = present_timeline(rows, [])

    assert shape(entries) == [
        "reasoning",
        "tool_call",
        "tool_call",
        "tool_call",
        "error",
        "cancel_requested",
    ]
