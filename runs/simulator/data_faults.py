"""Faults in the data the simulator sends, not in how it answers: the shapes of events and
results that the published spec allows or that a real service shows (issue 12, cases 4-5).

Decided per event when it is emitted (so every replay of the stream sends the same bytes) and
per run when it ends, with the simulator's seeded `FaultBoard`:

- ``nan_values``: a tool result carries ``"score": NaN`` and ``"confidence": Infinity``; a
  run's result carries ``"score": NaN`` (Python's ``json`` writes them; no JSON store reads them).
- ``step_event_shape``: a ``step`` event carries only ``step`` (``shape: step_only``, the
  default) or only ``steps_completed``.
- ``envelope_data``: an event's data field holds the whole event, ``{seq, type, data}``.
- ``tool_field_names``: tool events name their fields ``name``/``args``/``success``/``result``
  (``names: name_args``, the default) or ``action_type``/``params`` (``action_type_params``),
  or either at random per event (``random``; ``shape: random`` likewise).
"""

from __future__ import annotations

from typing import Any

from .faults import FaultBoard

OPERATION = "stream_events"


def shape_event(faults: FaultBoard, seq: int, type_: str, data: dict[str, Any]) -> dict[str, Any]:
    """The data of event `seq` as the faults in force send it."""
    if not faults.specs:
        return data
    if type_ in ("tool_call", "tool_result") and (
        spec := faults.fire("tool_field_names", OPERATION)
    ):
        names = spec.options.get("names", "name_args")
        if names == "random":
            names = faults.rng.choice(("name_args", "action_type_params"))
        data = _renamed_tool_fields(type_, data, names)
    if type_ == "tool_result" and faults.fire("nan_values", OPERATION):
        data = {**data, "score": float("nan"), "confidence": float("inf")}
    if type_ == "step" and (spec := faults.fire("step_event_shape", OPERATION)):
        shape = spec.options.get("shape", "step_only")
        if shape == "random":
            shape = faults.rng.choice(("step_only", "steps_completed_only"))
        keep = "steps_completed" if shape == "steps_completed_only" else "step"
        data = {k: v for k, v in data.items() if k not in ("step", "steps_completed") or k == keep}
    if faults.fire("envelope_data", OPERATION):
        data = {"seq": seq, "type": type_, "data": data}
    return data


def shape_result(faults: FaultBoard, result: dict[str, Any] | None) -> dict[str, Any] | None:
    """A run's final result as the faults in force send it (in GET /v1/runs/{id} and webhooks)."""
    if result is not None and faults.specs and faults.fire("nan_values", "get_run"):
        return {**result, "score": float("nan")}
    return result


def _renamed_tool_fields(type_: str, data: dict[str, Any], names: str) -> dict[str, Any]:
    renamed = {k: v for k, v in data.items() if k not in ("tool", "input", "ok", "output")}
    if names == "action_type_params":
        renamed["action_type"] = data.get("tool")
        if type_ == "tool_call":
            renamed["params"] = data.get("input")
        else:
            renamed["success"] = data.get("ok")
            renamed["result"] = data.get("output")
        return renamed
    renamed["name"] = data.get("tool")
    if type_ == "tool_call":
        renamed["args"] = data.get("input")
    else:
        renamed["success"] = data.get("ok")
        renamed["result"] = data.get("output")
    return renamed
