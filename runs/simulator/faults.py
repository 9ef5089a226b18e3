"""Fault injection: what can go wrong, how often, and a seeded RNG so a chaos run repeats.

A fault is set with a probability and/or a count::

    {"lost_response": {"probability": 0.3}}          # each eligible request, 30 %
    {"rate_limit": {"count": 2}}                     # the next 2 eligible requests, for sure
    {"server_error": {"count": 1, "probability": 0.1, "limit": 5}}
    {"lost_response": 0.3}                           # shorthand for {"probability": 0.3}

``count`` forces the next N eligible occurrences; once spent, ``probability`` applies; ``limit``
caps the total number of firings (None = no cap). ``only`` narrows the operations a request
fault applies to (operation ids: create_run, list_runs, get_run, cancel_run, resume_run,
stream_events, idempotency_lookup, list_machines).

Each fault also takes its own options, listed in ``FAULTS`` below.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

API_OPERATIONS = (
    "create_run",
    "list_runs",
    "get_run",
    "cancel_run",
    "resume_run",
    "stream_events",
    "idempotency_lookup",
    "list_machines",
)

LOST_RESPONSE_MODES = ("drop", "502", "504", "html", "empty", "truncated", "text")

# name -> (operations it applies to by default, {option: (type, allowed values or None)})
FAULTS: dict[str, tuple[tuple[str, ...], dict[str, tuple[type, tuple[Any, ...] | None]]]] = {
    # The run is created (and the key completed), then the client never sees the answer:
    # "drop" cuts the connection mid-response, "502"/"504" answer a JSON gateway error,
    # "html" answers an edge proxy's HTML 502; "empty", "truncated" (cut JSON, complete HTTP
    # message) and "text" (text/plain) are 200s a client cannot read. "random" picks any.
    "lost_response": (
        ("create_run",),
        {"mode": (str, ("random", *LOST_RESPONSE_MODES))},
    ),
    # 5xx before doing anything (500 INTERNAL_ERROR or 503 SERVICE_UNAVAILABLE).
    "server_error": (API_OPERATIONS, {"status": (int, (500, 503))}),
    # 429 RATE_LIMITED with Retry-After (default from retry_after_seconds, scaled by speed).
    "rate_limit": (API_OPERATIONS, {"retry_after": (int, None)}),
    # 409 IDEMPOTENCY_IN_FLIGHT on POST /v1/runs with an Idempotency-Key. If the key's original
    # is done, the 409 comes anyway; if the key is new, the run IS created but the key stays
    # "processing" for in_flight_hold_seconds (or hold_seconds) and this request gets the 409.
    "in_flight": (("create_run",), {"hold_seconds": (float, None)}),
    # The SSE connection is dropped abruptly after `after_events` events (default 1-3, random).
    "cut_stream": (("stream_events",), {"after_events": (int, None)}),
    # Webhook faults, decided per delivery.
    "webhook_duplicate": (("webhook",), {}),  # the same delivery is sent twice
    "webhook_reorder": (("webhook",), {}),  # held until the run's next delivery went out
    "webhook_late": (("webhook",), {"delay_seconds": (float, None)}),  # sent late
    "webhook_forged": (("webhook",), {}),  # plus an extra delivery with a bad signature
    "webhook_stale": (("webhook",), {}),  # plus an extra one signed with t > 300 s ago
    # Data faults (runs/simulator/data_faults.py), decided per event as it is emitted, and for
    # nan_values also per run result (operation get_run).
    "nan_values": (("stream_events", "get_run"), {}),
    "step_event_shape": (
        ("stream_events",),
        {"shape": (str, ("step_only", "steps_completed_only", "random"))},
    ),
    "envelope_data": (("stream_events",), {}),
    "tool_field_names": (
        ("stream_events",),
        {"names": (str, ("name_args", "action_type_params", "random"))},
    ),
    # Convergence faults (issue 12), decided per run or per key, not per request:
    # Coasty forgets a run `after_seconds` (simulated, default 0) after it ends: GET, cancel and
    # the stream answer 404 (purged, or the key switched between test and live).
    "forget_run": (("run_end",), {"after_seconds": (float, None)}),
    # An extra `step` event with a stray high step number (not a step Coasty counts).
    "stray_step": (("step",), {}),
    # POST /v1/runs answers 500 retryable but retry_with_same_idempotency_key false: the key is
    # spent (Coasty refunded the failed start); the answer is stored under the key, no run made.
    "spent_key": (("create_run",), {}),
    # Coasty forgets this key `after_seconds` (REAL seconds, default 10) after it was first
    # used, instead of after idempotency_ttl_seconds: the lookup answers 404 and the key is new.
    "key_expiry": (("create_run",), {"after_seconds": (float, None)}),
}

FAULT_NAMES = tuple(FAULTS)


@dataclass
class FaultSpec:
    name: str
    probability: float = 0.0
    count: int = 0
    limit: int | None = None
    only: tuple[str, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    fired: int = 0

    def applies_to(self, operation: str) -> bool:
        allowed = self.only if self.only is not None else FAULTS[self.name][0]
        return operation in allowed

    def describe(self) -> dict[str, Any]:
        return {
            "probability": self.probability,
            "count": self.count,
            "limit": self.limit,
            "only": list(self.only) if self.only is not None else None,
            "fired": self.fired,
            **self.options,
        }


def parse_fault(name: str, value: Any) -> FaultSpec:
    """One fault from its JSON form; raises ValueError with a message a person can act on."""
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")
    if isinstance(value, bool):
        value = {"probability": 1.0 if value else 0.0}
    elif isinstance(value, int | float):
        value = {"probability": value}
    elif value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValueError(f"{name}: expected a probability or an object")
    spec = FaultSpec(name=name)
    options = FAULTS[name][1]
    for key, raw in value.items():
        if key == "probability":
            if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= 1:
                raise ValueError(f"{name}.probability must be a number from 0 to 1")
            spec.probability = float(raw)
        elif key in ("count", "limit"):
            if raw is None and key == "limit":
                continue
            if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
                raise ValueError(f"{name}.{key} must be an integer >= 0")
            setattr(spec, key, raw)
        elif key == "only":
            if raw is None:
                continue
            ops = [raw] if isinstance(raw, str) else raw
            allowed = (*API_OPERATIONS, "webhook")
            if not isinstance(ops, list) or any(op not in allowed for op in ops):
                raise ValueError(f"{name}.only must list operations from: {', '.join(allowed)}")
            spec.only = tuple(ops)
        elif key in options:
            kind, choices = options[key]
            try:
                converted = kind(raw)
            except (TypeError, ValueError):
                raise ValueError(f"{name}.{key} must be a {kind.__name__}") from None
            if choices is not None and converted not in choices:
                raise ValueError(f"{name}.{key} must be one of {list(choices)}")
            if isinstance(converted, int | float) and converted < 0:
                raise ValueError(f"{name}.{key} must be >= 0")
            spec.options[key] = converted
        else:
            known = ["probability", "count", "limit", "only", *options]
            raise ValueError(f"{name}: unknown option {key!r}; known: {', '.join(known)}")
    return spec


def parse_spec_string(name: str, text: str) -> FaultSpec:
    """Command-line form: "0.3", "count:2", "0.2,count:1,mode:drop", "p:0.5,only:get_run"."""
    value: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if ":" not in part and "=" not in part:
            value["probability"] = _number(part)
            continue
        key, raw = part.split(":", 1) if ":" in part else part.split("=", 1)
        key = {"p": "probability", "n": "count"}.get(key.strip(), key.strip())
        raw = raw.strip()
        if key == "only":
            value["only"] = raw.split("+")
        elif key in ("mode", "shape", "names"):
            value[key] = raw
        else:
            value[key] = _number(raw)
    return parse_fault(name, value)


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"not a number: {text!r}") from None


class FaultBoard:
    """The faults in force and the seeded RNG that decides them.

    Lives on the simulator's event loop: decisions are made without awaiting, so concurrent
    requests never see a count spent twice.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = 0 if seed is None else seed
        self.rng = random.Random(self.seed)
        self.specs: dict[str, FaultSpec] = {}

    def set(self, faults: dict[str, Any], *, seed: int | None = None) -> None:
        specs = {}
        for name, value in faults.items():
            spec = value if isinstance(value, FaultSpec) else parse_fault(name, value)
            specs[name] = spec
        self.specs = specs
        if seed is not None:
            self.seed = seed
            self.rng = random.Random(seed)

    def clear(self) -> None:
        self.specs = {}
        self.rng = random.Random(self.seed)

    def fire(self, name: str, operation: str) -> FaultSpec | None:
        """The fault's spec if it fires for this occurrence, else None."""
        spec = self.specs.get(name)
        if spec is None or not spec.applies_to(operation):
            return None
        if spec.limit is not None and spec.fired >= spec.limit:
            return None
        if spec.count > 0:
            spec.count -= 1
        elif spec.probability <= 0 or self.rng.random() >= spec.probability:
            return None
        spec.fired += 1
        return spec

    def describe(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "faults": {name: spec.describe() for name, spec in self.specs.items()},
        }
