"""The simulator's data faults (issue 12): NaN in results and events, both step-event shapes,
envelope-shaped data and other tool field names; and the portal's reader and presenter read
each of them."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from runs.coasty import CoastyClient, iter_events
from runs.coasty.strict_json import PORTAL_KEY
from runs.presenters import present_event
from runs.simulator.data_faults import shape_event, shape_result
from runs.simulator.faults import FaultBoard, parse_spec_string
from runs.simulator.testing import run_simulator
from tests.sim_support import LIVE_KEY, run_body

pytestmark = pytest.mark.timeout(60)


def board(**faults):
    b = FaultBoard(seed=1)
    b.set(faults)
    return b


def test_no_faults_leave_data_alone():
    data = {"step": 1, "steps_completed": 1}
    assert shape_event(board(), 4, "step", data) is data
    assert shape_result(board(), {"text": "ok"}) == {"text": "ok"}


def test_each_data_fault_reshapes_what_it_names():
    assert shape_event(
        board(step_event_shape=1.0), 4, "step", {"step": 2, "steps_completed": 2}
    ) == {"step": 2}
    only_count = board(step_event_shape={"probability": 1, "shape": "steps_completed_only"})
    assert shape_event(only_count, 4, "step", {"step": 2, "steps_completed": 2}) == {
        "steps_completed": 2
    }
    call = {"step": 1, "tool": "click", "input": {"x": 1}}
    assert shape_event(board(tool_field_names=1.0), 2, "tool_call", call) == {
        "step": 1,
        "name": "click",
        "args": {"x": 1},
    }
    by_action = board(tool_field_names={"probability": 1, "names": "action_type_params"})
    assert shape_event(by_action, 2, "tool_call", call) == {
        "step": 1,
        "action_type": "click",
        "params": {"x": 1},
    }
    result = shape_event(
        board(nan_values=1.0), 3, "tool_result", {"tool": "t", "ok": True, "output": "o"}
    )
    assert math.isnan(result["score"]) and math.isinf(result["confidence"])
    assert math.isnan(shape_result(board(nan_values=1.0), {"text": "t"})["score"])
    assert shape_event(board(envelope_data=1.0), 7, "text", {"text": "hi"}) == {
        "seq": 7,
        "type": "text",
        "data": {"text": "hi"},
    }


def test_the_command_line_form_takes_the_string_options():
    assert parse_spec_string("step_event_shape", "1,shape:steps_completed_only").options == {
        "shape": "steps_completed_only"
    }


def test_the_portal_reads_a_run_with_every_data_fault_on():
    with run_simulator(speed=50) as sim:
        sim.set_faults(
            nan_values=1.0, envelope_data=1.0, tool_field_names=1.0, step_event_shape=1.0
        )
        with CoastyClient(sim.base_url, LIVE_KEY) as client:
            run = client.create_run(run_body("Open the dashboard"), idempotency_key="k-data-1").run
            events = list(iter_events(client, run["id"], budget_seconds=30))
            record = client.get_run(run["id"])

    # the stream's envelopes were unwrapped, NaN refused and noted, and the run ended
    types = [e.type for e in events]
    assert types[-1] == "done" and "step" in types
    assert all(set(e.data) != {"seq", "type", "data"} for e in events)
    results = [e.data for e in events if e.type == "tool_result"]
    assert results and all(r["score"] is None and PORTAL_KEY in r for r in results)
    steps = [e.data for e in events if e.type == "step"]
    assert steps and all("steps_completed" not in s and s["step"] >= 1 for s in steps)
    assert record["result"]["score"] is None and PORTAL_KEY in record

    # and the presenter names every tool and step, whatever the fields were called
    for event in events:
        shown = present_event(SimpleNamespace(seq=event.seq, type=event.type, data=event.data))
        if event.type in ("tool_call", "tool_result"):
            assert shown.title, event
        if event.type == "step":
            assert shown.text == f"Step {event.data['step']} completed"
